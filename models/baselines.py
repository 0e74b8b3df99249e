"""Context-free reference detectors: a rolling z-score and a static threshold.

Neither knows the clock or the calendar; they are the yardsticks the
calendar-aware detectors are measured against (on NAB and on simulated
faults), and they are what a meter gets when nothing better can be trained.
They catch readings outside the series' recent (z-score) or usual (static)
range, not a night-time load that would be normal at noon.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pandas as pd

from campus.calendar import AcademicCalendar
from models.base import SCORE_COLUMNS, Detector, ModelError, band_score
from models.features import (
    check_frame,
    join_drivers,
    records,
    require_history,
    restored,
    robust_location_spread,
    saved,
    score_columns,
    scores_frame,
    spread_floor,
)


class RollingZScore(Detector):
    """Distance of each reading from the mean of the ``window`` readings before it.

    The mean and standard deviation are those of the previous ``window`` rows
    of the scored frame (the reading itself excluded); until ``min_periods``
    of them are non-missing, the training mean and standard deviation stand
    in. ``z = (value - mean) / std`` and ``score = 1 / (1 + exp(-slope *
    (|z| - k)))``, so ``|z| = k`` scores 0.5; the band is ``mean +/- k * std``.

    Parameters (keyword only):

    * ``calendar`` / ``tz``: accepted for a uniform interface and kept in the
      state, not used;
    * ``window``: rows in the rolling window (default 288: a day of 5-minute
      readings, three days of 15-minute ones);
    * ``min_periods``: non-missing rows the window needs (default ``window // 8``);
    * ``k``: ``|z|`` scoring 0.5; ``slope``: steepness of the logistic;
    * ``floor_fraction`` / ``epsilon``: smallest standard deviation used (see
      :func:`models.features.spread_floor`);
    * ``min_history``: non-missing readings :meth:`fit` needs (default 50).
    """

    name: ClassVar[str] = "zscore"
    version: ClassVar[int] = 1

    def __init__(
        self,
        *,
        calendar: AcademicCalendar | None = None,
        tz: str = "UTC",
        window: int = 288,
        min_periods: int | None = None,
        k: float = 4.0,
        slope: float = 1.5,
        floor_fraction: float = 0.05,
        epsilon: float = 1e-6,
        min_history: int = 50,
    ) -> None:
        mp = max(2, window // 8) if min_periods is None else int(min_periods)
        if window < 2 or not 2 <= mp <= window or k <= 0 or slope <= 0 or min_history < 2:
            raise ModelError(
                "zscore: window >= 2, 2 <= min_periods <= window, k > 0, slope > 0,"
                " min_history >= 2"
            )
        self.calendar = calendar
        self.tz = tz
        self.window = int(window)
        self.min_periods = mp
        self.k = float(k)
        self.slope = float(slope)
        self.floor_fraction = float(floor_fraction)
        self.epsilon = float(epsilon)
        self.min_history = int(min_history)
        self._fit: dict[str, float] | None = None

    PARAMS: ClassVar[tuple[str, ...]] = (
        "window",
        "min_periods",
        "k",
        "slope",
        "floor_fraction",
        "epsilon",
        "min_history",
    )

    def fit(self, history: pd.DataFrame) -> RollingZScore:
        """Learn the mean, standard deviation and spread floor of the history."""
        v = check_frame(history)
        x = v[~np.isnan(v)]
        require_history(len(x), self.min_history, self.name)
        med, spread = robust_location_spread(x)
        self._fit = {
            "mean": float(np.mean(x)),
            "std": float(np.std(x, ddof=1)),
            "floor": spread_floor(med, spread, fraction=self.floor_fraction, epsilon=self.epsilon),
        }
        return self

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Rolling mean +/- k rolling standard deviations and the logistic z score."""
        v = check_frame(frame)
        fit = self._fitted()
        past = pd.Series(v).shift(1).rolling(self.window, min_periods=self.min_periods)
        mean = past.mean().to_numpy(dtype=float)
        std = past.std(ddof=1).to_numpy(dtype=float)
        cold = np.isnan(mean) | np.isnan(std)
        mean = np.where(cold, fit["mean"], mean)
        std = np.maximum(np.where(cold, fit["std"], std), fit["floor"])
        z = (v - mean) / std
        with np.errstate(over="ignore"):
            score = 1.0 / (1.0 + np.exp(-self.slope * (np.abs(z) - self.k)))
        drivers = join_drivers(["z"], np.nan_to_num(z)[:, None], 1)
        return scores_frame(
            frame.index, v, mean, mean - self.k * std, mean + self.k * std, score, drivers
        )

    def state(self) -> dict[str, Any]:
        """Parameters and the training statistics."""
        return saved(self, **self._fitted())

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RollingZScore:
        """The fitted detector saved by :meth:`state`."""
        return restored(
            cls, state, lambda s: {key: float(s[key]) for key in ("mean", "std", "floor")}
        )


class StaticThreshold(Detector):
    """A fixed band from the extreme quantiles of the history.

    The band is the training ``[q_low, q_high]`` quantiles (default 0.001 and
    0.999) widened on each side by ``margin`` (default 10%) of their range,
    and at least ``2 * floor`` wide so a constant series does not get a
    zero-width band; the score is :func:`models.base.band_score` and the
    expected value the training median.

    Parameters (keyword only): ``calendar`` / ``tz`` (kept, not used),
    ``q_low``, ``q_high``, ``margin``, ``floor_fraction`` / ``epsilon`` (see
    :func:`models.features.spread_floor`) and ``min_history`` (non-missing
    readings :meth:`fit` needs, default 50).
    """

    name: ClassVar[str] = "static"

    def lookback(self) -> pd.Timedelta:
        """None: a reading is judged against the fixed band alone."""
        return pd.Timedelta(0)

    version: ClassVar[int] = 1

    def __init__(
        self,
        *,
        calendar: AcademicCalendar | None = None,
        tz: str = "UTC",
        q_low: float = 0.001,
        q_high: float = 0.999,
        margin: float = 0.1,
        floor_fraction: float = 0.05,
        epsilon: float = 1e-6,
        min_history: int = 50,
    ) -> None:
        if not 0 <= q_low < q_high <= 1 or margin < 0 or min_history < 2:
            raise ModelError("static: 0 <= q_low < q_high <= 1, margin >= 0, min_history >= 2")
        self.calendar = calendar
        self.tz = tz
        self.q_low = float(q_low)
        self.q_high = float(q_high)
        self.margin = float(margin)
        self.floor_fraction = float(floor_fraction)
        self.epsilon = float(epsilon)
        self.min_history = int(min_history)
        self._fit: dict[str, float] | None = None

    PARAMS: ClassVar[tuple[str, ...]] = (
        "q_low",
        "q_high",
        "margin",
        "floor_fraction",
        "epsilon",
        "min_history",
    )

    def fit(self, history: pd.DataFrame) -> StaticThreshold:
        """Learn the band from the history's extreme quantiles."""
        v = check_frame(history)
        x = v[~np.isnan(v)]
        require_history(len(x), self.min_history, self.name)
        lo, hi = (float(q) for q in np.quantile(x, [self.q_low, self.q_high]))
        pad = self.margin * (hi - lo)
        lower, upper = lo - pad, hi + pad
        med, spread = robust_location_spread(x)
        floor = spread_floor(med, spread, fraction=self.floor_fraction, epsilon=self.epsilon)
        centre = (lower + upper) / 2
        half = max((upper - lower) / 2, floor)
        self._fit = {
            "expected": med,
            "lower": centre - half,
            "upper": centre + half,
        }
        return self

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The fixed band and each reading's band score."""
        v = check_frame(frame)
        return pd.DataFrame(self._columns(v), index=frame.index)[list(SCORE_COLUMNS)]

    def score_records(self, ns: np.ndarray, values: np.ndarray, n: int) -> list[dict[str, Any]]:
        """:meth:`score` of the last ``n`` readings without pandas (the band
        is fixed, so no context is needed)."""
        if n <= 0:
            return []
        v = np.asarray(values, dtype=float)[-n:]
        return records(self._columns(np.where(np.isfinite(v), v, np.nan)))

    def _columns(self, v: np.ndarray) -> dict[str, np.ndarray]:
        fit = self._fitted()
        n = len(v)
        lower = np.full(n, fit["lower"])
        upper = np.full(n, fit["upper"])
        position = (v - (lower + upper) / 2) / ((upper - lower) / 2)
        drivers = join_drivers(["band_position"], np.nan_to_num(position)[:, None], 1)
        expected = np.full(n, fit["expected"])
        return score_columns(v, expected, lower, upper, band_score(v, lower, upper), drivers)

    def state(self) -> dict[str, Any]:
        """Parameters and the band."""
        return saved(self, **self._fitted())

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> StaticThreshold:
        """The fitted detector saved by :meth:`state`."""
        return restored(
            cls, state, lambda s: {key: float(s[key]) for key in ("expected", "lower", "upper")}
        )
