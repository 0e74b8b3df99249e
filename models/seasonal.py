"""The seasonal baseline: what this meter usually reads at this hour of this week.

Campus loads repeat by the week and change with the academic period (lectures,
exam weeks, empty dorms in the break). The baseline keeps, for every academic
period and local hour of week, the median of the history and a robust spread
(1.4826 * MAD). A cell with too few samples borrows from a coarser one: hour of
week over all periods, then hour of day, then the whole series. Small cells are
also pulled towards the typical within-cell spread, because the MAD of a
handful of samples is often far too small, and every spread has a floor so a
constant series gets a narrow band instead of a zero-width one.

The band is ``expected +/- k * spread`` and the score is
:func:`models.base.band_score`, so 0.5 means "k spreads off". It is cheap,
explainable ("Mon 03:00 in term, 5.2 spreads above") and it is also the
reference the residual forest (:mod:`models.forest`) works from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, cast

import numpy as np
import pandas as pd

from campus.calendar import AcademicCalendar
from models.base import SCORE_COLUMNS, Detector, ModelError, band_score
from models.features import (
    HOURS_PER_WEEK,
    HOW_LABELS,
    N_PERIODS,
    PERIOD_NAMES,
    calendar_columns,
    calendar_frame,
    check_frame,
    check_state,
    records,
    require_history,
    restored,
    robust_location_spread,
    saved,
    score_columns,
    signed,
    spread_floor,
)

D = TypeVar("D", bound=Detector)

LEVELS: tuple[str, ...] = ("period+hour_of_week", "hour_of_week", "hour", "global")


def _cells(x: np.ndarray, codes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median, robust spread and count of ``x`` in each of ``n`` cells."""
    counts = np.bincount(codes, minlength=n).astype(np.int64)
    med = np.full(n, np.nan)
    spread = np.full(n, np.nan)
    grouped = pd.Series(x).groupby(codes)
    m = grouped.median()
    med[m.index.to_numpy()] = m.to_numpy()
    dev = pd.Series(np.abs(x - med[codes])).groupby(codes).median()
    spread[dev.index.to_numpy()] = 1.4826 * dev.to_numpy()
    return med, spread, counts


class SeasonalBaseline(Detector):
    """Median and robust spread by (academic period, local hour of week).

    Parameters (keyword only):

    * ``calendar``: academic calendar (periods and its time zone); without one
      every reading counts as term and ``tz`` sets the local clock;
    * ``tz``: time zone of the local clock when there is no calendar;
    * ``k``: half-width of the band in spreads (score 0.5 at ``k`` spreads);
    * ``min_count``: samples a cell needs before it is used instead of its
      coarser fallback;
    * ``prior_count``: weight, in samples, of the typical within-cell spread
      that each cell's own spread is pulled towards;
    * ``floor_fraction`` / ``epsilon``: spread floor, a fraction of the
      series' global spread and an absolute minimum (see
      :func:`models.features.spread_floor`);
    * ``min_history``: non-missing readings :meth:`fit` needs (default 50).
    """

    name: ClassVar[str] = "seasonal"

    def lookback(self) -> pd.Timedelta:
        """None: a reading is judged by its own time alone."""
        return pd.Timedelta(0)

    version: ClassVar[int] = 1

    def __init__(
        self,
        *,
        calendar: AcademicCalendar | None = None,
        tz: str = "UTC",
        k: float = 4.0,
        min_count: int = 3,
        prior_count: float = 3.0,
        floor_fraction: float = 0.05,
        epsilon: float = 1e-6,
        min_history: int = 50,
    ) -> None:
        if k <= 0 or min_count < 1 or prior_count < 0 or min_history < 2:
            raise ModelError("seasonal: k > 0, min_count >= 1, prior_count >= 0, min_history >= 2")
        self.calendar = calendar
        self.tz = tz
        self.k = float(k)
        self.min_count = int(min_count)
        self.prior_count = float(prior_count)
        self.floor_fraction = float(floor_fraction)
        self.epsilon = float(epsilon)
        self.min_history = int(min_history)
        self._fit: dict[str, Any] | None = None

    PARAMS: ClassVar[tuple[str, ...]] = (
        "k",
        "min_count",
        "prior_count",
        "floor_fraction",
        "epsilon",
        "min_history",
    )

    def fit(self, history: pd.DataFrame) -> SeasonalBaseline:
        """Learn the median and spread of every (period, hour of week) cell."""
        v = check_frame(history)
        ok = ~np.isnan(v)
        require_history(int(ok.sum()), self.min_history, self.name)
        cal = calendar_frame(history.index, self.calendar, self.tz)
        x = v[ok]
        period = cal["period"].to_numpy()[ok]
        how = cal["hour_of_week"].to_numpy()[ok]

        g_med, g_spread = robust_location_spread(x)
        floor = spread_floor(g_med, g_spread, fraction=self.floor_fraction, epsilon=self.epsilon)
        shape = (N_PERIODS, HOURS_PER_WEEK)
        expected = np.full(shape, g_med)
        raw = np.full(shape, g_spread)
        count = np.full(shape, len(x), dtype=np.int64)
        level = np.full(shape, len(LEVELS) - 1, dtype=np.int64)

        hour_of = np.arange(HOURS_PER_WEEK) % 24
        by_hour = _cells(x, how % 24, 24)
        by_how = _cells(x, how, HOURS_PER_WEEK)
        by_cell = _cells(x, period * HOURS_PER_WEEK + how, N_PERIODS * HOURS_PER_WEEK)
        candidates = (
            (2, tuple(np.broadcast_to(a[hour_of], shape) for a in by_hour)),
            (1, tuple(np.broadcast_to(a, shape) for a in by_how)),
            (0, tuple(a.reshape(shape) for a in by_cell)),
        )
        for lvl, (med, spr, cnt) in candidates:
            use = cnt >= self.min_count
            expected = np.where(use, med, expected)
            raw = np.where(use, spr, raw)
            count = np.where(use, cnt, count)
            level = np.where(use, lvl, level)

        cells = level < len(LEVELS) - 1
        pooled = float(np.median(raw[cells])) if cells.any() else g_spread
        n0 = self.prior_count
        shrunk = np.sqrt((count * raw**2 + n0 * pooled**2) / (count + n0))
        spread = np.maximum(shrunk, floor)
        self._fit = {
            "expected": expected.astype(float),
            "spread": spread.astype(float),
            "count": count,
            "level": level,
            "global_median": g_med,
            "global_spread": g_spread,
            "floor": floor,
        }
        return self

    @property
    def global_median(self) -> float:
        """Median of the whole history."""
        return float(self._fitted()["global_median"])

    @property
    def global_spread(self) -> float:
        """Robust spread of the whole history."""
        return float(self._fitted()["global_spread"])

    @property
    def floor(self) -> float:
        """Smallest spread any cell may have."""
        return float(self._fitted()["floor"])

    def profile(self, index: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray, pd.DataFrame]:
        """Expected value and spread of every timestamp of ``index``, with the
        calendar features they were looked up by."""
        fit = self._fitted()
        cal = calendar_frame(index, self.calendar, self.tz)
        p = cal["period"].to_numpy()
        h = cal["hour_of_week"].to_numpy()
        return fit["expected"][p, h], fit["spread"][p, h], cal

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Band ``expected +/- k * spread`` of each row's cell and its band score."""
        v = check_frame(frame)
        ns = np.asarray(frame.index.as_unit("ns").asi8, dtype=np.int64)
        return pd.DataFrame(self._columns(ns, v), index=frame.index)[list(SCORE_COLUMNS)]

    def score_records(self, ns: np.ndarray, values: np.ndarray, n: int) -> list[dict[str, Any]]:
        """:meth:`score` of the last ``n`` readings without pandas (each row is
        judged by its own time alone, so no context is needed)."""
        if n <= 0:
            return []
        v = np.asarray(values, dtype=float)[-n:]
        return records(
            self._columns(np.asarray(ns, dtype=np.int64)[-n:], np.where(np.isfinite(v), v, np.nan))
        )

    def _columns(self, ns: np.ndarray, v: np.ndarray) -> dict[str, np.ndarray]:
        fit = self._fitted()
        cal = calendar_columns(ns, self.calendar, self.tz)
        p, h = cal["period"], cal["hour_of_week"]
        expected, spread = fit["expected"][p, h], fit["spread"][p, h]
        lower = expected - self.k * spread
        upper = expected + self.k * spread
        score = band_score(v, lower, upper)
        residual = np.nan_to_num((v - expected) / spread)
        drivers = np.strings.add("hour_of_week=", np.asarray(HOW_LABELS)[h])
        if self.calendar is not None:
            period = np.asarray(PERIOD_NAMES)[p]
            drivers = np.strings.add(np.strings.add(drivers, "; period="), period)
        drivers = np.strings.add(np.strings.add(drivers, "; residual="), signed(residual, 1))
        drivers = np.strings.add(drivers, " sd")
        return score_columns(v, expected, lower, upper, score, drivers)

    def state(self) -> dict[str, Any]:
        """Parameters, calendar and the per-cell tables."""
        fit = self._fitted()
        return saved(
            self, **{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in fit.items()}
        )

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SeasonalBaseline:
        """The fitted baseline saved by :meth:`state`."""
        det = restored(
            cls,
            state,
            lambda s: {
                "expected": np.asarray(s["expected"], dtype=float),
                "spread": np.asarray(s["spread"], dtype=float),
                "count": np.asarray(s["count"], dtype=np.int64),
                "level": np.asarray(s["level"], dtype=np.int64),
                "global_median": float(s["global_median"]),
                "global_spread": float(s["global_spread"]),
                "floor": float(s["floor"]),
            },
        )
        fit = det._fitted()
        shape = (N_PERIODS, HOURS_PER_WEEK)
        if fit["expected"].shape != shape or fit["spread"].shape != shape:
            raise ModelError(f"{cls.name} state tables are not {shape}")
        return det


def cross_fitted(
    history: pd.DataFrame,
    v: np.ndarray,
    folds: int,
    baseline: Callable[[], SeasonalBaseline],
    describe: Callable[[SeasonalBaseline], np.ndarray],
) -> np.ndarray:
    """``describe(fitted baseline)`` (rows of the history first) for every row,
    each day's rows from a baseline fitted without that day (days dealt into
    ``folds`` folds), so that what is described of the history spreads as
    much as it will for unseen data. Rows of a fold that cannot be fitted
    stay NaN."""
    days = np.asarray(history.index.as_unit("ns").asi8 // (86_400 * 10**9))
    fold = (days - days[0]) % folds
    out: np.ndarray | None = None
    for f in range(folds):
        held = fold == f
        rest = ~held & ~np.isnan(v)
        if not held.any() or rest.sum() < 2:
            continue
        part = describe(baseline().fit(history[rest]))
        if out is None:
            out = np.full(part.shape, np.nan)
        out[held] = part[held]
    return np.full(len(v), np.nan) if out is None else out


def saved_with_baseline(
    detector: Detector, baseline: SeasonalBaseline, **fitted: Any
) -> dict[str, Any]:
    """The ``state()`` of a detector built on a seasonal baseline: its name,
    version and parameters, the baseline's own state (with the calendar) and
    what it learned on top (``fitted``)."""
    return {
        "detector": detector.name,
        "version": detector.version,
        "params": detector._params(),
        "baseline": baseline.state(),
        **fitted,
    }


def restored_with_baseline(
    cls: type[D], state: dict[str, Any], fitted: Callable[[dict[str, Any]], dict[str, Any]]
) -> D:
    """The detector :func:`saved_with_baseline` made ``state`` of, its baseline
    under ``"baseline"`` and ``fitted(state)`` beside it; :class:`ModelError`
    for another detector, another version or a state that is incomplete."""
    check_state(state, cls.name, cls.version)
    try:
        baseline = SeasonalBaseline.from_state(state["baseline"])
        detector: D = cast(Any, cls)(calendar=baseline.calendar, **state["params"])
        detector._fit = {"baseline": baseline, **fitted(state)}
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{cls.name} state is incomplete or malformed: {exc}") from exc
    return detector
