"""Isolation forest on the residuals of the seasonal baseline.

The seasonal baseline (:mod:`models.seasonal`) says how far each reading is
from its usual value; that one number misses anomalies of shape. A meter that
starts to jitter, or jumps between two plausible values, stays inside its
band. The residual forest describes every reading by four features, all from
the reading and the ones before it:

* ``residual``: distance from the baseline's expected value, in spreads;
* ``residual_change``: change of the residual since the previous reading;
* ``residual_std``: standard deviation of the residuals over the last
  ``window`` (default one hour), the reading included;
* ``level``: the reading against the whole history (robust z).

A scikit-learn ``IsolationForest`` learns which combinations are usual. It is
trained on cross-fitted residuals (each day's from a baseline fitted without
that day), which spread as widely as the residuals of new data will, and its
anomaly score is calibrated on them so that their ``calibration_quantile``
(99.5th percentile) maps to 0.5, through a logistic that sends their median
to 0.05.

An isolation tree cannot tell a reading just past the edge of what it saw
from one far beyond it (both land in the same outermost leaf), so the forest
alone would give a 10-spread and a 100-spread jump the same score. The score
is therefore never below the baseline's band score: the forest adds the
unusual combinations, the band keeps the magnitude. This also covers a
history the forest cannot split at all (a constant series). Expected value
and band are the baseline's; the drivers are the features furthest from
their training median (robust z).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest

from campus.calendar import AcademicCalendar
from models.base import Detector, ModelError, band_score
from models.features import (
    check_frame,
    join_drivers,
    require_history,
    scores_frame,
)
from models.seasonal import (
    SeasonalBaseline,
    cross_fitted,
    restored_with_baseline,
    saved_with_baseline,
)

RESIDUAL_FEATURES: tuple[str, ...] = ("residual", "residual_change", "residual_std", "level")
_MEDIAN_SCORE = 0.05


class ResidualForest(Detector):
    """Isolation forest on residual features of an internal seasonal baseline.

    Parameters (keyword only):

    * ``calendar`` / ``tz``: academic calendar, or the local time zone without one;
    * ``k``, ``min_count``: passed to the internal
      :class:`~models.seasonal.SeasonalBaseline` (its band is the band shown);
    * ``window``: span of the rolling standard deviation of the residuals;
    * ``n_estimators``, ``max_samples``: passed to ``IsolationForest``;
    * ``max_train``: most recent non-missing rows the forest is trained on;
    * ``calibration_quantile``: quantile of the training scores mapped to 0.5;
    * ``folds``: the training residuals are cross-fitted: the days are dealt
      into ``folds`` groups and each group's residuals come from a baseline
      fitted without it (1: in-sample residuals);
    * ``top_k``: features named as drivers;
    * ``min_history``: non-missing readings :meth:`fit` needs (default 50);
    * ``random_state``: seed of the forest.
    """

    name: ClassVar[str] = "forest"

    def lookback(self) -> pd.Timedelta:
        """The residual spread's window (the previous reading is inside it)."""
        return pd.Timedelta(self.window)

    version: ClassVar[int] = 1

    def __init__(
        self,
        *,
        calendar: AcademicCalendar | None = None,
        tz: str = "UTC",
        k: float = 4.0,
        min_count: int = 3,
        window: str = "1h",
        n_estimators: int = 100,
        max_samples: int = 256,
        max_train: int = 20_000,
        calibration_quantile: float = 0.995,
        folds: int = 4,
        top_k: int = 2,
        min_history: int = 50,
        random_state: int = 0,
    ) -> None:
        if not 0.5 < calibration_quantile < 1:
            raise ModelError("forest: calibration_quantile must be in (0.5, 1)")
        if n_estimators < 1 or max_samples < 2 or max_train < 2 or min_history < 2 or folds < 1:
            raise ModelError(
                "forest: n_estimators >= 1, max_samples >= 2, max_train >= 2, min_history >= 2,"
                " folds >= 1"
            )
        try:
            span = pd.Timedelta(window)
        except ValueError as exc:
            raise ModelError(f"forest: window {window!r} is not a duration") from exc
        if span <= pd.Timedelta(0):
            raise ModelError("forest: window must be positive")
        self.calendar = calendar
        self.tz = tz
        self.k = float(k)
        self.min_count = int(min_count)
        self.window = str(window)
        self.n_estimators = int(n_estimators)
        self.max_samples = int(max_samples)
        self.max_train = int(max_train)
        self.calibration_quantile = float(calibration_quantile)
        self.folds = int(folds)
        self.top_k = int(top_k)
        self.min_history = int(min_history)
        self.random_state = int(random_state)
        self._fit: dict[str, Any] | None = None

    PARAMS: ClassVar[tuple[str, ...]] = (
        "k",
        "min_count",
        "window",
        "n_estimators",
        "max_samples",
        "max_train",
        "calibration_quantile",
        "folds",
        "top_k",
        "min_history",
        "random_state",
    )

    def _residuals(
        self, frame: pd.DataFrame, v: np.ndarray, baseline: SeasonalBaseline
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Residual features (rows x 4, NaN on missing readings), expected and spread."""
        expected, spread, _ = baseline.profile(frame.index)
        ok = ~np.isnan(v)
        feats = np.full((len(v), len(RESIDUAL_FEATURES)), np.nan)
        if ok.any():
            r = (v[ok] - expected[ok]) / spread[ok]
            change = np.diff(r, prepend=r[0])
            rolled = pd.Series(r, index=frame.index[ok]).rolling(pd.Timedelta(self.window))
            std = np.nan_to_num(rolled.std(ddof=0).to_numpy(dtype=float))
            level = (v[ok] - baseline.global_median) / max(baseline.global_spread, baseline.floor)
            feats[ok] = np.column_stack([r, change, std, level])
        return feats, expected, spread

    def _baseline(self) -> SeasonalBaseline:
        return SeasonalBaseline(
            calendar=self.calendar,
            tz=self.tz,
            k=self.k,
            min_count=self.min_count,
            min_history=2,
        )

    def _cross_fitted(self, history: pd.DataFrame, v: np.ndarray) -> np.ndarray:
        """Residual features of the history, each day's from a baseline fitted
        without it (so they spread as much as residuals of unseen data do)."""
        feats = cross_fitted(
            history, v, self.folds, self._baseline, lambda b: self._residuals(history, v, b)[0]
        )
        if feats.ndim == 1:  # no fold could be fitted
            feats = np.full((len(v), len(RESIDUAL_FEATURES)), np.nan)
        return feats

    def fit(self, history: pd.DataFrame) -> ResidualForest:
        """Fit the baseline, then the forest on cross-fitted residual features,
        then calibrate its score on them."""
        v = check_frame(history)
        ok = ~np.isnan(v)
        require_history(int(ok.sum()), self.min_history, self.name)
        baseline = self._baseline().fit(history)
        if self.folds > 1:
            feats = self._cross_fitted(history, v)
            missing = ok & np.isnan(feats).any(axis=1)
            if missing.any():
                feats[missing] = self._residuals(history, v, baseline)[0][missing]
        else:
            feats = self._residuals(history, v, baseline)[0]
        x = feats[ok][-self.max_train :]
        forest = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, len(x)),
            random_state=self.random_state,
        ).fit(x)
        raw = -forest.score_samples(x)
        threshold = float(np.quantile(raw, self.calibration_quantile))
        scale = (threshold - float(np.median(raw))) / math.log(1 / _MEDIAN_SCORE - 1)
        centre = np.median(x, axis=0)
        mad = 1.4826 * np.median(np.abs(x - centre), axis=0)
        std = np.std(x, axis=0)
        spread = np.where(mad > 0, mad, np.where(std > 0, std, 1.0))
        self._fit = {
            "baseline": baseline,
            "forest": forest,
            "threshold": threshold,
            "scale": float(scale),
            "degenerate": bool(scale <= 1e-9),
            "centre": centre.astype(float),
            "spread": spread.astype(float),
        }
        return self

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Calibrated isolation score, the baseline's band and the most unusual features."""
        v = check_frame(frame)
        fit = self._fitted()
        baseline: SeasonalBaseline = fit["baseline"]
        feats, expected, spread = self._residuals(frame, v, baseline)
        lower = expected - self.k * spread
        upper = expected + self.k * spread
        ok = ~np.isnan(v)
        score = np.zeros(len(v))
        if not fit["degenerate"] and ok.any():
            raw = -fit["forest"].score_samples(feats[ok])
            z = np.clip((raw - fit["threshold"]) / fit["scale"], -50.0, 50.0)
            score[ok] = 1.0 / (1.0 + np.exp(-z))
        score = np.maximum(score, band_score(v, lower, upper))
        robust_z = (np.nan_to_num(feats) - fit["centre"]) / fit["spread"]
        drivers = join_drivers(RESIDUAL_FEATURES, robust_z, self.top_k)
        return scores_frame(frame.index, v, expected, lower, upper, score, drivers)

    def state(self) -> dict[str, Any]:
        """Parameters, the baseline's state, the fitted forest and its calibration."""
        fit = self._fitted()
        return saved_with_baseline(
            self,
            fit["baseline"],
            forest=fit["forest"],
            threshold=fit["threshold"],
            scale=fit["scale"],
            degenerate=fit["degenerate"],
            centre=fit["centre"].copy(),
            spread=fit["spread"].copy(),
        )

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ResidualForest:
        """The fitted forest saved by :meth:`state`."""
        det = restored_with_baseline(
            cls,
            state,
            lambda s: {
                "forest": s["forest"],
                "threshold": float(s["threshold"]),
                "scale": float(s["scale"]),
                "degenerate": bool(s["degenerate"]),
                "centre": np.asarray(s["centre"], dtype=float),
                "spread": np.asarray(s["spread"], dtype=float),
            },
        )
        if not isinstance(det._fitted()["forest"], IsolationForest):
            raise ModelError(f"{cls.name} state has no fitted IsolationForest")
        return det
