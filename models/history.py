"""History for training: one metric of one device read from InfluxDB into
pandas, and repaired or refused with a logged reason.

Real meter histories are untidy. What :func:`clean` does about each problem:

* duplicates (a redelivered reading): the last one of a timestamp is kept;
* NaN or infinite values: dropped;
* a cumulative counter: turned into a rate per hour; a counter reset (the
  counter going down) leaves that step out instead of a huge negative rate;
* a unit change (a meter reconfigured from kWh to Wh, a factor of about 1000
  between the medians before and after a day): the earlier part is rescaled;
* gaps: kept as gaps (detectors work on irregular time), counted;
* a constant series or one shorter than ``min_days``: refused (nothing to
  learn), with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from campus.influx import InfluxClient
from campus.influxql import quote_ident, quote_literal

log = logging.getLogger("campus.models")

UNIT_FACTORS = (1000.0, 0.001)  # kWh <-> Wh, m3 <-> L


@dataclass
class Cleaned:
    """A cleaned history and what was done to it (``refused``: not trainable)."""

    frame: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    refused: str | None = None


def read_history(
    influx: InfluxClient, kind: str, device: str, metric: str, start: datetime, end: datetime
) -> pd.DataFrame:
    """``metric`` of ``device`` between ``start`` and ``end``, as a ``value``
    column on a UTC DatetimeIndex (read a week at a time)."""
    parts: list[list[Any]] = []
    t = start
    while t < end:
        stop = min(t + timedelta(days=7), end)
        q = (
            f"SELECT {quote_ident(metric)} FROM {quote_ident(kind)} "
            f'WHERE "device" = {quote_literal(device)} '
            f"AND time >= {int(t.timestamp() * 1000)}ms AND time < {int(stop.timestamp() * 1000)}ms"
        )
        for series in influx.query(q, epoch="ms"):
            parts.extend(series.get("values") or [])
        t = stop
    if not parts:
        return pd.DataFrame({"value": pd.Series(dtype=float)}, index=pd.DatetimeIndex([], tz="UTC"))
    arr = np.array(
        [(row[0], np.nan if row[1] is None else row[1]) for row in parts], dtype=np.float64
    )
    index = pd.to_datetime(arr[:, 0].astype("int64"), unit="ms", utc=True)
    return pd.DataFrame({"value": arr[:, 1]}, index=index)


def clean(frame: pd.DataFrame, *, counter: bool = False, min_days: float = 7.0) -> Cleaned:
    """Repair what can be repaired, refuse what cannot; every step is noted."""
    notes: list[str] = []
    f = frame[["value"]].sort_index()
    dups = int(f.index.duplicated(keep="last").sum())
    if dups:
        f = f[~f.index.duplicated(keep="last")]
        notes.append(f"{dups} duplicate timestamps: the last reading of each kept")
    bad = ~np.isfinite(f["value"].to_numpy(dtype=float))
    if bad.any():
        f = f[~bad]
        notes.append(f"{int(bad.sum())} NaN or infinite values dropped")
    if counter and len(f) > 1:
        values = f["value"].to_numpy(dtype=float)
        hours = np.diff(f.index.as_unit("ns").asi8) / 3.6e12
        step = np.diff(values)
        resets = int((step < 0).sum())
        rate = np.where((step >= 0) & (hours > 0), step / np.where(hours > 0, hours, 1), np.nan)
        f = pd.DataFrame({"value": rate}, index=f.index[1:]).dropna()
        if resets:
            notes.append(f"{resets} counter resets: those steps left out")
        notes.append("cumulative counter turned into a rate per hour")
    f, unit_note = _unit_change(f)
    if unit_note:
        notes.append(unit_note)
    if len(f) > 1:
        gaps = int((np.diff(f.index.as_unit("ns").asi8) > 3.6e12).sum())
        if gaps:
            notes.append(f"{gaps} gaps longer than an hour (kept as gaps)")
    span = (f.index[-1] - f.index[0]).total_seconds() / 86400 if len(f) > 1 else 0.0
    if span < min_days:
        return Cleaned(f, notes, f"only {span:.1f} days of history (at least {min_days:g} needed)")
    if float(np.nanstd(f["value"].to_numpy())) == 0.0:
        return Cleaned(f, notes, f"constant at {f['value'].iloc[0]:g}: nothing to learn")
    return Cleaned(f, notes)


def _unit_change(f: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """Rescale the part before a day-to-day jump by a unit factor (x1000 or /1000)."""
    if len(f) < 2:
        return f, None
    daily = f["value"].resample("1D").median().dropna()
    daily = daily[daily.abs() > 1e-9]
    if len(daily) < 2:
        return f, None
    ratio = (daily / daily.shift(1)).dropna()
    for day, r in ratio.items():
        for factor in UNIT_FACTORS:
            if abs(r / factor - 1) < 0.2:
                before = f.index < day
                out = f.copy()
                out.loc[before, "value"] = out.loc[before, "value"] * factor
                return out, (
                    f"unit change on {day.date()} (values x{r:.4g}): the earlier "
                    f"{int(before.sum())} readings rescaled by {factor:g}"
                )
    return f, None
