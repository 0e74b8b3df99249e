"""Context features for the anomaly detectors, and the frame plumbing they share.

Campus meters follow the clock and the academic calendar: a lecture building at
10:00 on a term Tuesday is nothing like the same hour in the winter break. Every
detector therefore sees the same calendar features, computed in the campus
time zone (the calendar's, or ``tz`` when there is none, as for NAB series):
local hour of week, hour of day, day of week, weekend flag and academic period.

The lag features describe the recent past of the series itself. Each one is
built only from rows strictly before the row it describes, inside the frame it
is computed on, so scoring a frame never looks ahead and scoring a prefix of a
frame gives the same rows as scoring the whole frame. Where the frame does not
reach far enough back (its first day has no "same time yesterday") the lag is
NaN rather than a guess from a partial window.

The helpers at the end (input checks, robust spread, the output frame, driver
strings, calendar round trip through ``state()``) are what the detectors in
this package share.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any, TypeVar, cast
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from campus.calendar import AcademicCalendar, CalendarConfig, Period
from models.base import SCORE_COLUMNS, Detector, ModelError, check_history

D = TypeVar("D", bound=Detector)

PERIOD_CODES: dict[Period, int] = {Period.term: 0, Period.exams: 1, Period.holidays: 2}
PERIOD_NAMES: tuple[str, ...] = ("term", "exams", "holidays")
N_PERIODS = len(PERIOD_NAMES)
HOURS_PER_WEEK = 168

_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
HOW_LABELS: tuple[str, ...] = tuple(f"{d} {h:02d}:00" for d in _DAY_NAMES for h in range(24))

CALENDAR_COLUMNS: tuple[str, ...] = (
    "hour_of_week",
    "hour",
    "time_of_day",
    "day_of_week",
    "weekend",
    "period",
)
LAG_COLUMNS: tuple[str, ...] = ("lag_1", "lag_1d", "lag_1w", "mean_1h", "mean_1d")
LAG_TOLERANCE = pd.Timedelta(hours=1)

_NS_PER_DAY = 86_400 * 10**9
_EPOCH = date(1970, 1, 1)


def resolve_tz(calendar: AcademicCalendar | None, tz: str) -> str:
    """The time zone local features are computed in: the calendar's when given."""
    return calendar.config.timezone if calendar is not None else tz


def calendar_frame(
    index: pd.DatetimeIndex, calendar: AcademicCalendar | None = None, tz: str = "UTC"
) -> pd.DataFrame:
    """Local clock and academic period of every timestamp of ``index``.

    Columns: ``hour_of_week`` (0 = Monday 00:00 local .. 167), ``hour``,
    ``time_of_day`` (local hours with their fraction, 7.75 at 07:45),
    ``day_of_week`` (0 = Monday), ``weekend`` (0/1) and ``period`` (term 0,
    exams 1, holidays 2; all 0 without a calendar). The period is looked up
    once per distinct local date, not per row.
    """
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None:
        raise ModelError("calendar features need a time-zone aware DatetimeIndex")
    ns = np.asarray(index.as_unit("ns").asi8, dtype=np.int64)
    return pd.DataFrame(calendar_columns(ns, calendar, tz), index=index)


SMALL = 16  # up to this many timestamps, the local clock is read row by row


def calendar_columns(
    ns: np.ndarray, calendar: AcademicCalendar | None = None, tz: str = "UTC"
) -> dict[str, np.ndarray]:
    """The columns of :func:`calendar_frame` for UTC epoch nanoseconds ``ns``.

    A few timestamps (online scoring: a reading or a short run) are converted
    one by one with :mod:`zoneinfo`, which costs microseconds where building a
    pandas index costs a tenth of a millisecond; more go through pandas."""
    zone = resolve_tz(calendar, tz)
    if len(ns) <= SMALL:
        # whole seconds, floored: the clock fields of a time never round up
        local = [datetime.fromtimestamp(int(t) // 10**9, ZoneInfo(zone)) for t in ns]
        hour = np.array([d.hour for d in local], dtype=np.int64)
        dow = np.array([d.weekday() for d in local], dtype=np.int64)
        minute = np.array([d.minute for d in local], dtype=float)
        dates = [d.date() for d in local]
    else:
        index = pd.DatetimeIndex(pd.to_datetime(ns, unit="ns", utc=True)).tz_convert(zone)
        hour = np.asarray(index.hour, dtype=np.int64)
        dow = np.asarray(index.day_of_week, dtype=np.int64)
        minute = np.asarray(index.minute, dtype=float)
        wall = np.asarray(index.tz_localize(None).as_unit("ns").asi8, dtype=np.int64)
        days, inverse = np.unique(np.floor_divide(wall, _NS_PER_DAY), return_inverse=True)
        dates = [_EPOCH + timedelta(days=int(d)) for d in days]
    period = np.zeros(len(ns), dtype=np.int64)
    if calendar is not None and len(ns):
        codes = np.array([PERIOD_CODES[calendar.day(d)[0]] for d in dates], dtype=np.int64)
        period = codes if len(ns) <= SMALL else codes[inverse.reshape(-1)]
    return {
        "hour_of_week": dow * 24 + hour,
        "hour": hour,
        "time_of_day": hour + minute / 60,
        "day_of_week": dow,
        "weekend": (dow >= 5).astype(np.int64),
        "period": period,
    }


def _at_or_before(
    times: np.ndarray, valid_times: np.ndarray, valid_values: np.ndarray, back: int, tol: int
) -> np.ndarray:
    """Value of the latest valid row at or before ``times - back``, within ``tol``."""
    target = times - back
    j = np.searchsorted(valid_times, target, side="right") - 1
    found = j >= 0
    jj = np.where(found, j, 0)
    if len(valid_times):
        found &= target - valid_times[jj] <= tol
        return np.where(found, valid_values[jj], np.nan)
    return np.full(len(times), np.nan)


def lag_frame(values: pd.Series, *, tolerance: pd.Timedelta = LAG_TOLERANCE) -> pd.DataFrame:
    """Features of the past of ``values`` (a float series on a sorted DatetimeIndex).

    * ``lag_1``: the value one row earlier;
    * ``lag_1d`` / ``lag_1w``: the latest non-missing value at or before the
      same time one day / one week earlier, if no more than ``tolerance``
      before it;
    * ``mean_1h`` / ``mean_1d``: mean of the values in the hour / day before
      the row (the row itself excluded), NaN until the frame covers the whole
      window.

    Every feature uses rows strictly before the row it belongs to.
    """
    index = values.index
    if not isinstance(index, pd.DatetimeIndex):
        raise ModelError("lag features need a DatetimeIndex")
    v = values.to_numpy(dtype=float, na_value=np.nan)
    times = np.asarray(index.as_unit("ns").asi8, dtype=np.int64)
    ok = ~np.isnan(v)
    tol = int(tolerance.value)
    out: dict[str, Any] = {"lag_1": np.concatenate([[np.nan], v[:-1]]) if len(v) else v}
    for col, back in (("lag_1d", _NS_PER_DAY), ("lag_1w", 7 * _NS_PER_DAY)):
        out[col] = _at_or_before(times, times[ok], v[ok], back, tol)
    series = pd.Series(v, index=index)
    for col, span in (("mean_1h", pd.Timedelta(hours=1)), ("mean_1d", pd.Timedelta(days=1))):
        mean = series.rolling(span, closed="left").mean().to_numpy(dtype=float)
        if len(times):
            mean = np.where(times - int(span.value) >= times[0], mean, np.nan)
        out[col] = mean
    return pd.DataFrame(out, index=index)


def feature_frame(
    frame: pd.DataFrame,
    *,
    calendar: AcademicCalendar | None = None,
    tz: str = "UTC",
    lags: Sequence[str] = LAG_COLUMNS,
    outdoor: bool = False,
) -> pd.DataFrame:
    """Calendar features, the chosen ``lags`` of ``value`` and, when ``outdoor``,
    the ``outdoor_c`` column (NaN where the frame has none)."""
    parts = [calendar_frame(frame.index, calendar, tz)]
    if lags:
        values = pd.Series(column_values(frame, "value"), index=frame.index)
        parts.append(lag_frame(values)[list(lags)])
    out = pd.concat(parts, axis=1)
    if outdoor:
        if "outdoor_c" in frame.columns:
            out["outdoor_c"] = column_values(frame, "outdoor_c")
        else:
            out["outdoor_c"] = np.nan
    return out


def has_outdoor(frame: pd.DataFrame) -> bool:
    """Whether ``frame`` has an ``outdoor_c`` column with at least one reading."""
    return "outdoor_c" in frame.columns and bool(
        np.isfinite(column_values(frame, "outdoor_c")).any()
    )


def column_values(frame: pd.DataFrame, column: str) -> np.ndarray:
    """``frame[column]`` as floats, missing (NA, NaN, +/-inf) as NaN."""
    try:
        values = frame[column].to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{column!r} column is not numeric: {exc}") from exc
    out: np.ndarray = np.where(np.isfinite(values), values, np.nan)
    return out


def check_frame(frame: pd.DataFrame) -> np.ndarray:
    """Refuse a frame detectors cannot read; return its ``value`` column as
    floats, non-finite readings counted as missing."""
    check_history(frame)
    index = frame.index
    if not index.is_monotonic_increasing or not index.is_unique:
        raise ModelError("frame index must be sorted and unique")
    return column_values(frame, "value")


def require_history(n: int, min_history: int, name: str) -> None:
    """Refuse to fit on fewer than ``min_history`` non-missing readings."""
    if n < min_history:
        raise ModelError(
            f"{name}: history has {n} non-missing readings, at least {min_history} are needed"
        )


def robust_location_spread(x: np.ndarray) -> tuple[float, float]:
    """Median and 1.4826 * MAD of ``x`` (the standard deviation when MAD is 0)."""
    med = float(np.median(x))
    spread = 1.4826 * float(np.median(np.abs(x - med)))
    if spread <= 0:
        spread = float(np.std(x))
    return med, spread


def spread_floor(
    median: float, spread: float, *, fraction: float = 0.05, epsilon: float = 1e-6
) -> float:
    """Smallest spread a detector may use: a fraction of the series' global spread,
    a thousandth of its level and ``epsilon``, whichever is largest, so a constant
    series gets a narrow band instead of a zero-width one."""
    return max(fraction * spread, 1e-3 * abs(median), epsilon)


def signed(x: np.ndarray, decimals: int = 1) -> np.ndarray:
    """``x`` as strings with an explicit sign (``+1.2``, ``-0.4``), elementwise."""
    r = np.round(np.asarray(x, dtype=float), decimals) + 0.0
    text = r.astype(str)
    return np.where(r >= 0, np.strings.add("+", text), text)


def join_drivers(names: Sequence[str], values: np.ndarray, top: int) -> np.ndarray:
    """Driver strings ``"name=+1.2; name=-0.4"`` naming, for each row of
    ``values`` (rows x len(names)), the ``top`` columns with the largest
    absolute value, largest first."""
    n, m = values.shape
    top = min(top, m)
    if n == 0 or top == 0:
        return np.full(n, "", dtype=object)
    order = np.argsort(-np.abs(np.nan_to_num(values)), axis=1, kind="stable")[:, :top]
    rows = np.arange(n)[:, None]
    picked = values[rows, order]
    label = np.asarray(names, dtype=str)[order]
    parts = np.strings.add(np.strings.add(label, "="), signed(picked, 1))
    out = parts[:, 0]
    for j in range(1, top):
        out = np.strings.add(np.strings.add(out, "; "), parts[:, j])
    return out.astype(object)


def scores_frame(
    index: pd.DatetimeIndex,
    value: np.ndarray,
    expected: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    score: np.ndarray,
    drivers: np.ndarray,
) -> pd.DataFrame:
    """The :data:`~models.base.SCORE_COLUMNS` frame of :func:`score_columns`."""
    return pd.DataFrame(score_columns(value, expected, lower, upper, score, drivers), index=index)[
        list(SCORE_COLUMNS)
    ]


def score_columns(
    value: np.ndarray,
    expected: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    score: np.ndarray,
    drivers: np.ndarray,
) -> dict[str, np.ndarray]:
    """The :data:`~models.base.SCORE_COLUMNS`; rows whose value is missing get
    score 0, NaN expected and band, and no drivers."""
    missing = np.isnan(value)
    nan = np.float64("nan")
    return {
        "expected": np.where(missing, nan, expected).astype(float),
        "lower": np.where(missing, nan, lower).astype(float),
        "upper": np.where(missing, nan, upper).astype(float),
        "score": np.clip(np.where(missing, 0.0, np.nan_to_num(score)), 0.0, 1.0),
        "drivers": np.where(missing, "", drivers).astype(object),
    }


def records(columns: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """The rows of :func:`score_columns` as dicts of plain Python values."""
    names = list(SCORE_COLUMNS)
    lists = [columns[name].tolist() for name in names]
    return [dict(zip(names, row, strict=True)) for row in zip(*lists, strict=True)]


def calendar_state(calendar: AcademicCalendar | None) -> dict[str, Any] | None:
    """The calendar as plain data for ``state()``."""
    return None if calendar is None else calendar.config.model_dump(mode="json")


def calendar_from_state(data: dict[str, Any] | None) -> AcademicCalendar | None:
    """The calendar saved by :func:`calendar_state`."""
    return None if data is None else AcademicCalendar(CalendarConfig.model_validate(data))


def saved(detector: Detector, **fitted: Any) -> dict[str, Any]:
    """A detector's ``state()``: its name, version, parameters and calendar,
    and what it learned (``fitted``)."""
    return {
        "detector": detector.name,
        "version": detector.version,
        "params": detector._params(),
        "calendar": calendar_state(detector.calendar),
        **fitted,
    }


def restored(
    cls: type[D], state: dict[str, Any], fitted: Callable[[dict[str, Any]], dict[str, Any]]
) -> D:
    """The detector :func:`saved` made ``state`` of, with ``fitted(state)`` as
    what it learned; :class:`ModelError` for another detector, another version
    or a state that is incomplete."""
    check_state(state, cls.name, cls.version)
    try:
        detector: D = cast(Any, cls)(
            calendar=calendar_from_state(state["calendar"]), **state["params"]
        )
        detector._fit = fitted(state)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{cls.name} state is incomplete or malformed: {exc}") from exc
    return detector


def check_state(state: dict[str, Any], name: str, version: int) -> None:
    """Refuse a state saved by another detector or another version of this one."""
    if state.get("detector") != name:
        raise ModelError(f"state is for detector {state.get('detector')!r}, not {name!r}")
    if state.get("version") != version:
        raise ModelError(
            f"{name} state has version {state.get('version')!r}, this code reads {version}"
        )
