"""Drift: the seasonal baseline's residuals averaged over a window, against
how far such averages wander in normal weeks.

A slow creep (a base load rising a few percent a day) or a lasting change of
level stays inside the seasonal band for days: each reading is only a little
high, no more than on an ordinary warm afternoon. What gives it away is that
the readings stay on one side of the baseline, hour after hour. This detector
takes the median of each reading's residual (distance from the baseline's
expected value, in spreads) and those of the ``window`` before it, and
compares it with the same medians over the training history, cross-fitted (each day's
residuals from a baseline fitted without that day, so they wander as much as
residuals of unseen days will). The score is :func:`models.base.band_score`
of the median against ``centre +/- k * spread`` of those training medians,
so 0.5 means the recent readings sit ``k`` spreads of ordinary drift away
from the baseline. A median, not a mean: a two-hour spike does not move a
twelve-hour median (the seasonal band catches spikes), a level that holds
does.

The score is never below the seasonal baseline's own band score, so spikes
and stuck readings are flagged as the baseline flags them; the drift adds
what the band cannot see. Expected value and band are reported in the meter's unit: the baseline's
expected value and the readings' band implied by the drift band. The drivers
say how far the average has drifted and where the latest reading sits.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd

from campus.calendar import AcademicCalendar
from models.base import Detector, ModelError, band_score
from models.features import (
    check_frame,
    require_history,
    robust_location_spread,
    scores_frame,
    signed,
)
from models.seasonal import (
    SeasonalBaseline,
    cross_fitted,
    restored_with_baseline,
    saved_with_baseline,
)


class ResidualDrift(Detector):
    """Window median of the seasonal residuals against its cross-fitted spread.

    Parameters (keyword only): ``calendar`` / ``tz`` (as the seasonal
    baseline), ``window`` (the averaging span, default 12 hours), ``k`` (the
    drift band's half-width in spreads of the training averages; score 0.5 at
    ``k``), ``min_count`` (the baseline's), ``folds`` (days are dealt into
    this many folds for the cross-fitting) and ``min_history``.
    """

    name: ClassVar[str] = "drift"
    version: ClassVar[int] = 1

    def __init__(
        self,
        *,
        calendar: AcademicCalendar | None = None,
        tz: str = "UTC",
        window: str = "12h",
        k: float = 3.0,
        min_count: int = 3,
        folds: int = 4,
        min_history: int = 50,
    ) -> None:
        try:
            span = pd.Timedelta(window)
        except ValueError as exc:
            raise ModelError(f"drift: window {window!r} is not a duration") from exc
        if span <= pd.Timedelta(0) or k <= 0 or folds < 2 or min_history < 2:
            raise ModelError("drift: window > 0, k > 0, folds >= 2, min_history >= 2")
        self.calendar = calendar
        self.tz = tz
        self.window = str(window)
        self.k = float(k)
        self.min_count = int(min_count)
        self.folds = int(folds)
        self.min_history = int(min_history)
        self._fit: dict[str, Any] | None = None

    PARAMS: ClassVar[tuple[str, ...]] = ("window", "k", "min_count", "folds", "min_history")

    def lookback(self) -> pd.Timedelta:
        """The averaging window (the reading itself is its last row)."""
        return pd.Timedelta(self.window)

    def _baseline(self) -> SeasonalBaseline:
        return SeasonalBaseline(
            calendar=self.calendar, tz=self.tz, min_count=self.min_count, min_history=2
        )

    def _drift(
        self, index: pd.DatetimeIndex, residual: np.ndarray, min_periods: int = 1
    ) -> np.ndarray:
        """Median residual over the ``window`` up to and including each row
        (missing readings left out); NaN where the window holds fewer than
        ``min_periods``. The median, not the mean: a two-hour spike inside a
        twelve-hour window does not move it, a level that holds does."""
        rolled = pd.Series(residual, index=index).rolling(
            pd.Timedelta(self.window), min_periods=min_periods
        )
        return rolled.median().to_numpy(dtype=float)

    @staticmethod
    def _residual(
        frame: pd.DataFrame, v: np.ndarray, baseline: SeasonalBaseline
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        expected, spread, _ = baseline.profile(frame.index)
        return (v - expected) / spread, expected, spread

    def fit(self, history: pd.DataFrame) -> ResidualDrift:
        """Fit the baseline on the whole history and learn how far the window
        medians of its cross-fitted residuals wander."""
        v = check_frame(history)
        ok = ~np.isnan(v)
        require_history(int(ok.sum()), self.min_history, self.name)
        baseline = self._baseline().fit(history)
        residual = cross_fitted(
            history, v, self.folds, self._baseline, lambda b: self._residual(history, v, b)[0]
        )
        # a window's median is only judged when the window holds at least half
        # the readings it usually holds (the first rows after a gap or a start)
        counts = pd.Series(v, index=history.index).rolling(pd.Timedelta(self.window)).count()
        min_periods = max(2, int(0.5 * float(np.median(counts.to_numpy()))))
        drift = self._drift(history.index, residual, min_periods)
        usable = drift[~np.isnan(drift)]
        if len(usable) < 2:
            raise ModelError(f"{self.name}: history too short to learn its drift")
        centre, spread = robust_location_spread(usable)
        self._fit = {
            "baseline": baseline,
            "centre": centre,
            "spread": max(spread, 1e-3),
            "min_periods": min_periods,
        }
        return self

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The drift band of each row and its band score."""
        v = check_frame(frame)
        fit = self._fitted()
        residual, expected, spread = self._residual(frame, v, fit["baseline"])
        drift = self._drift(frame.index, residual, fit["min_periods"])
        low = fit["centre"] - self.k * fit["spread"]
        high = fit["centre"] + self.k * fit["spread"]
        # never below the baseline's own band score: drift adds the slow
        # changes, the band keeps spikes and stuck readings (as in the forest)
        seasonal = band_score(
            v, expected - fit["baseline"].k * spread, expected + fit["baseline"].k * spread
        )
        score = np.maximum(band_score(drift, np.full(len(v), low), np.full(len(v), high)), seasonal)
        z = np.nan_to_num((drift - fit["centre"]) / fit["spread"])
        drivers = np.strings.add(
            np.strings.add(f"drift_{self.window}=", signed(z, 1)),
            np.strings.add("; residual=", signed(np.nan_to_num(residual), 1)),
        )
        lower, upper = expected + low * spread, expected + high * spread
        return scores_frame(frame.index, v, expected, lower, upper, score, drivers)

    def state(self) -> dict[str, Any]:
        """Parameters, the baseline's state and the learned drift."""
        fit = self._fitted()
        return saved_with_baseline(
            self,
            fit["baseline"],
            centre=fit["centre"],
            spread=fit["spread"],
            min_periods=fit["min_periods"],
        )

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ResidualDrift:
        """The fitted detector saved by :meth:`state`."""
        return restored_with_baseline(
            cls,
            state,
            lambda s: {
                "centre": float(s["centre"]),
                "spread": float(s["spread"]),
                "min_periods": int(s["min_periods"]),
            },
        )
