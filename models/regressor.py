"""Quantile regression of a meter on its calendar, its own past and the weather.

Gradient-boosted trees (scikit-learn's ``HistGradientBoostingRegressor`` with
the quantile loss) learn the low, median and high quantiles of the reading
from the calendar features (hour of week, period, ...), lags of the series
and the outdoor temperature when the history has it. This catches what a
fixed weekly profile cannot: a chiller's load should follow a hot afternoon,
and a dorm that was empty yesterday will likely be empty today.

By default only "long" lags are used (same time yesterday, same time last
week, mean of the last day). The short ones (previous reading, mean of the
last hour) are available through ``lags`` but let the model follow an
anomaly that persists: a level shift would be flagged on its first reading
only. Lags are computed inside the frame being scored, so its first day has
no "yesterday"; training hides each lag at random on a share of the rows
(``lag_dropout``) so the trees learn to predict without them too (they take
NaN natively).

The band is ``[q_low, q_high]`` widened on both sides by ``widen`` times its
width, and the score is :func:`models.base.band_score`. Drivers are the
features whose replacement by their training median moves the median
prediction most for that row, among the ``driver_features`` most important
features (permutation importance measured once, at fit, on a sample).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.inspection import permutation_importance
from threadpoolctl import threadpool_limits

from campus.calendar import AcademicCalendar
from models.base import Detector, ModelError, band_score
from models.features import (
    LAG_COLUMNS,
    check_frame,
    feature_frame,
    has_outdoor,
    join_drivers,
    require_history,
    restored,
    robust_location_spread,
    saved,
    scores_frame,
    spread_floor,
)

DEFAULT_LAGS: tuple[str, ...] = ("mean_1d",)


class QuantileRegressor(Detector):
    """Band from boosted-tree quantile regression on calendar, lag and weather features.

    Parameters (keyword only):

    * ``calendar`` / ``tz``: academic calendar, or the local time zone without one;
    * ``quantiles``: low, median and high quantile (default 0.02, 0.5, 0.98);
    * ``widen``: each side of the band is moved out by this fraction of its width;
    * ``lags``: lag features to use (names from :data:`models.features.LAG_COLUMNS`);
    * ``lag_dropout``: share of training rows on which each lag is hidden;
    * ``max_train``: most recent non-missing rows trained on (default 20,000);
    * ``max_iter``, ``learning_rate``, ``max_leaf_nodes``, ``min_samples_leaf``:
      passed to ``HistGradientBoostingRegressor``;
    * ``driver_features``: most important features (by permutation importance)
      tried as drivers of each row; ``top_k`` of them are named;
    * ``importance_rows``: rows sampled for the permutation importance;
    * ``floor_fraction`` / ``epsilon``: smallest half-width of the band (see
      :func:`models.features.spread_floor`);
    * ``min_history``: non-missing readings :meth:`fit` needs (default 50);
    * ``random_state``: seed of the trees, the lag dropout and the sampling.
    """

    name: ClassVar[str] = "regressor"

    def lookback(self) -> pd.Timedelta:
        """A week and an hour with the week lag, else a day and an hour."""
        return pd.Timedelta(days=7 if "lag_1w" in self.lags else 1, hours=1)

    version: ClassVar[int] = 1

    def __init__(
        self,
        *,
        calendar: AcademicCalendar | None = None,
        tz: str = "UTC",
        quantiles: Sequence[float] = (0.02, 0.5, 0.98),
        widen: float = 0.25,
        lags: Sequence[str] = DEFAULT_LAGS,
        lag_dropout: float = 0.25,
        max_train: int = 20_000,
        max_iter: int = 100,
        learning_rate: float = 0.1,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 20,
        top_k: int = 3,
        driver_features: int = 6,
        importance_rows: int = 2_000,
        floor_fraction: float = 0.05,
        epsilon: float = 1e-6,
        min_history: int = 50,
        random_state: int = 0,
    ) -> None:
        q = tuple(float(x) for x in quantiles)
        if len(q) != 3 or not 0 < q[0] < q[1] < q[2] < 1:
            raise ModelError(f"regressor: quantiles must be low < median < high in (0, 1), got {q}")
        unknown = sorted(set(lags) - set(LAG_COLUMNS))
        if unknown:
            raise ModelError(f"regressor: unknown lags {unknown}; known: {list(LAG_COLUMNS)}")
        if widen < 0 or not 0 <= lag_dropout < 1 or max_train < 2 or min_history < 2:
            raise ModelError(
                "regressor: widen >= 0, 0 <= lag_dropout < 1, max_train >= 2, min_history >= 2"
            )
        self.calendar = calendar
        self.tz = tz
        self.quantiles = q
        self.widen = float(widen)
        self.lags = tuple(lags)
        self.lag_dropout = float(lag_dropout)
        self.max_train = int(max_train)
        self.max_iter = int(max_iter)
        self.learning_rate = float(learning_rate)
        self.max_leaf_nodes = int(max_leaf_nodes)
        self.min_samples_leaf = int(min_samples_leaf)
        self.top_k = int(top_k)
        self.driver_features = int(driver_features)
        self.importance_rows = int(importance_rows)
        self.floor_fraction = float(floor_fraction)
        self.epsilon = float(epsilon)
        self.min_history = int(min_history)
        self.random_state = int(random_state)
        self._fit: dict[str, Any] | None = None

    def _params(self) -> dict[str, Any]:
        return {
            "tz": self.tz,
            "quantiles": list(self.quantiles),
            "widen": self.widen,
            "lags": list(self.lags),
            "lag_dropout": self.lag_dropout,
            "max_train": self.max_train,
            "max_iter": self.max_iter,
            "learning_rate": self.learning_rate,
            "max_leaf_nodes": self.max_leaf_nodes,
            "min_samples_leaf": self.min_samples_leaf,
            "top_k": self.top_k,
            "driver_features": self.driver_features,
            "importance_rows": self.importance_rows,
            "floor_fraction": self.floor_fraction,
            "epsilon": self.epsilon,
            "min_history": self.min_history,
            "random_state": self.random_state,
        }

    def _features(self, frame: pd.DataFrame, outdoor: bool) -> pd.DataFrame:
        return feature_frame(
            frame, calendar=self.calendar, tz=self.tz, lags=self.lags, outdoor=outdoor
        )

    def fit(self, history: pd.DataFrame) -> QuantileRegressor:
        """Train the three quantile models on the most recent ``max_train`` rows."""
        v = check_frame(history)
        ok = ~np.isnan(v)
        require_history(int(ok.sum()), self.min_history, self.name)
        outdoor = has_outdoor(history)
        feats = self._features(history, outdoor)
        names = list(feats.columns)
        x_all = feats.to_numpy(dtype=float)[ok][-self.max_train :]
        y = v[ok][-self.max_train :]
        rng = np.random.default_rng(self.random_state)
        with threadpool_limits(limits=1, user_api="openmp"):
            return self._train(names, x_all, y, outdoor, rng)

    def _train(
        self,
        names: list[str],
        x_all: np.ndarray,
        y: np.ndarray,
        outdoor: bool,
        rng: np.random.Generator,
    ) -> QuantileRegressor:
        x_train = x_all.copy()
        for j, col in enumerate(names):
            if col in self.lags and self.lag_dropout > 0:
                x_train[rng.random(len(y)) < self.lag_dropout, j] = np.nan
            if not np.isfinite(x_train[:, j]).any():
                # a history shorter than the lag (a day of NAB rows): a constant
                # column, which no tree splits on, instead of one sklearn cannot bin
                x_train[:, j] = 0.0
        models = [
            HistGradientBoostingRegressor(
                loss="quantile",
                quantile=q,
                max_iter=self.max_iter,
                learning_rate=self.learning_rate,
                max_leaf_nodes=self.max_leaf_nodes,
                min_samples_leaf=self.min_samples_leaf,
                early_stopping=False,
                random_state=self.random_state,
            ).fit(x_train, y)
            for q in self.quantiles
        ]

        sample = np.sort(rng.choice(len(y), size=min(len(y), self.importance_rows), replace=False))
        importance = permutation_importance(
            models[1],
            x_all[sample],
            y[sample],
            n_repeats=3,
            random_state=self.random_state,
        ).importances_mean
        top = np.argsort(-importance, kind="stable")[: max(self.driver_features, 0)]
        with np.errstate(all="ignore"):
            fill = np.array([np.nanmedian(c) if np.isfinite(c).any() else np.nan for c in x_all.T])
        g_med, g_spread = robust_location_spread(y)
        self._fit = {
            "features": names,
            "outdoor": outdoor,
            "models": models,
            "fill": fill,
            "importance": np.asarray(importance, dtype=float),
            "top": top.astype(np.int64),
            "floor": spread_floor(
                g_med, g_spread, fraction=self.floor_fraction, epsilon=self.epsilon
            ),
        }
        return self

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Quantile band of every row, its band score and the features behind the median."""
        v = check_frame(frame)
        fit = self._fitted()
        n = len(frame)
        if n == 0:
            empty = np.zeros(0)
            return scores_frame(frame.index, empty, empty, empty, empty, empty, empty)
        x = self._features(frame, fit["outdoor"]).to_numpy(dtype=float)
        with threadpool_limits(limits=1, user_api="openmp"):
            return self._score(frame.index, v, x, fit)

    def score_last(self, frame: pd.DataFrame, n: int = 1) -> pd.DataFrame:
        """Features over the whole frame, predictions for its last ``n`` rows only."""
        v = check_frame(frame)
        fit = self._fitted()
        if len(frame) == 0 or n <= 0:
            return self.score(frame.iloc[:0])
        x = self._features(frame, fit["outdoor"]).to_numpy(dtype=float)
        tail = pd.DatetimeIndex(frame.index[-n:])
        with threadpool_limits(limits=1, user_api="openmp"):
            return self._score(tail, v[-n:], x[-n:], fit)

    def _score(
        self, index: pd.DatetimeIndex, v: np.ndarray, x: np.ndarray, fit: dict[str, Any]
    ) -> pd.DataFrame:
        n = len(v)
        low, mid, high = (m.predict(x) for m in fit["models"])
        width = np.maximum(high - low, 0.0)
        floor = fit["floor"]
        lower = np.minimum(low - self.widen * width, mid - floor)
        upper = np.maximum(high + self.widen * width, mid + floor)
        score = band_score(v, lower, upper)

        top = fit["top"]
        names = [fit["features"][j] for j in top]
        moved = np.empty((n, len(top)))
        for i, j in enumerate(top):
            swapped = x.copy()
            swapped[:, j] = fit["fill"][j]
            moved[:, i] = mid - fit["models"][1].predict(swapped)
        drivers = join_drivers(names, moved, self.top_k)
        return scores_frame(index, v, mid, lower, upper, score, drivers)

    def feature_importance(self) -> dict[str, float]:
        """Permutation importance of every feature, measured at fit."""
        fit = self._fitted()
        return dict(zip(fit["features"], map(float, fit["importance"]), strict=True))

    def state(self) -> dict[str, Any]:
        """Parameters, calendar and the fitted quantile models."""
        fit = self._fitted()
        return saved(
            self,
            features=list(fit["features"]),
            outdoor=bool(fit["outdoor"]),
            models=list(fit["models"]),
            fill=fit["fill"].copy(),
            importance=fit["importance"].copy(),
            top=fit["top"].copy(),
            floor=float(fit["floor"]),
        )

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> QuantileRegressor:
        """The fitted regressor saved by :meth:`state`."""
        det = restored(
            cls,
            state,
            lambda s: {
                "features": [str(f) for f in s["features"]],
                "outdoor": bool(s["outdoor"]),
                "models": list(s["models"]),
                "fill": np.asarray(s["fill"], dtype=float),
                "importance": np.asarray(s["importance"], dtype=float),
                "top": np.asarray(s["top"], dtype=np.int64),
                "floor": float(s["floor"]),
            },
        )
        models = det._fitted()["models"]
        if len(models) != 3 or not all(
            isinstance(m, HistGradientBoostingRegressor) for m in models
        ):
            raise ModelError(f"{cls.name} state needs three HistGradientBoostingRegressor models")
        return det
