"""``/api/readings``: one metric of a device, or of every device of a
building, over a time range, aggregated into intervals.

Every value that reaches InfluxQL is checked first and then quoted: the device
and building must be in the registry, the metric one of theirs, the
aggregation one of six names, the times parsed into integers and the interval
into whole seconds; identifiers go through ``quote_ident`` and the one string
literal through ``quote_literal``. Nothing a caller typed is pasted into a
query.

A query answers at most ``MAX_POINTS`` (10 000) points: without ``interval``
one is chosen that gives about ``TARGET_POINTS`` (1 500) per device and no
fewer seconds than the devices report at; a given interval that would give
more is refused with 422.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import BaseModel, Field

from api.deps import PrincipalDep
from api.schemas import Problem
from campus.errors import SinkError
from campus.influx import InfluxClient
from campus.influxql import quote_ident, quote_literal
from campus.registry import Campus, Device
from campus.timeparse import parse_duration, parse_time

log = logging.getLogger("campus.api.readings")

router = APIRouter(prefix="/api/readings", tags=["readings"])

ID = r"^[A-Za-z0-9_.-]{1,64}$"
METRIC = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
KIND = r"^[a-z][a-z0-9_]{0,31}$"
MAX_POINTS = 10_000  # per answer, all devices together
TARGET_POINTS = 1_500  # per device, when the interval is chosen
MAX_INTERVAL_S = 7 * 86_400
# intervals chosen when none is given (seconds)
NICE = (
    1,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10_800,
    21_600,
    43_200,
    86_400,
    604_800,
)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)  # InfluxDB keeps 1677-2262; this is plenty
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
RETRY_AFTER_S = 5

Agg = Literal["mean", "min", "max", "sum", "last", "count"]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No valid bearer token."},
    404: {"model": Problem, "description": "No such device or building."},
    422: {"description": "A parameter is not valid (the answer names it)."},
    503: {"model": Problem, "description": "InfluxDB is not answering; try again."},
}


class Series(BaseModel):
    """One device's aggregated values: ``[epoch milliseconds, value]`` per interval
    that holds readings (intervals without any are left out)."""

    device: str
    kind: str
    points: list[tuple[int, float]]


class ReadingsOut(BaseModel):
    """A metric over a range, per device."""

    device: str | None
    building: str | None
    metric: str
    unit: str
    agg: Agg
    interval: str = Field(description="The interval used, e.g. 5m (chosen when not given).")
    interval_s: int
    start: datetime
    end: datetime
    series: list[Series]


def _refuse(field: str, message: str, status: int = 422) -> HTTPException:
    return HTTPException(status, f"{field}: {message}")


def _time(field: str, text: str, now: datetime) -> datetime:
    try:
        t = parse_time(text, now)
    except (ValueError, OverflowError) as exc:
        msg = str(exc) if isinstance(exc, ValueError) else f"{text!r} is out of range"
        raise _refuse(field, msg) from None
    if not EARLIEST <= t <= LATEST:
        raise _refuse(field, f"{text!r} is outside {EARLIEST.year}-{LATEST.year}")
    return t


def format_interval(seconds: int) -> str:
    """``90s``, ``5m``, ``2h``, ``1d``: the largest unit that divides it."""
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _interval(text: str | None, span_s: float, devices: list[Device]) -> int:
    """The interval in whole seconds: the given one if it keeps the answer
    within MAX_POINTS, else a chosen one."""
    n = max(1, len(devices))
    if text is not None:
        try:
            td = parse_duration(text)
        except (ValueError, OverflowError):
            raise _refuse("interval", f"cannot read {text!r}: use e.g. 1m, 15m, 1h, 1d") from None
        seconds = td.total_seconds()
        if seconds != int(seconds) or not 1 <= seconds <= MAX_INTERVAL_S:
            raise _refuse("interval", f"{text!r} must be whole seconds from 1s to 7d")
        points = math.ceil(span_s / seconds) * n
        if points > MAX_POINTS:
            raise _refuse(
                "interval",
                f"{text} over this range gives {points} points for {n} device(s), more than "
                f"{MAX_POINTS}: choose a longer interval or a shorter range",
            )
        return int(seconds)
    floor = max(
        span_s / TARGET_POINTS,
        span_s * n / MAX_POINTS,
        min((d.interval_s for d in devices), default=1.0),
    )
    for seconds in NICE:
        if seconds >= floor:
            return seconds
    raise _refuse(
        "start",
        f"the range is too long for {n} device(s) even at 7d intervals "
        f"(at most {MAX_POINTS} points): shorten it",
    )


def _select(
    campus: Campus, device: str | None, building: str | None, metric: str, kind: str | None
) -> list[Device]:
    """The devices asked for (checked against the registry)."""
    if (device is None) == (building is None):
        raise _refuse("device", "give exactly one of device or building")
    if device is not None:
        d = campus.get(device)
        if d is None:
            raise _refuse("device", f"no device {device!r}", 404)
        if kind is not None and kind != d.kind:
            raise _refuse("kind", f"device {device!r} is of kind {d.kind!r}, not {kind!r}")
        if metric not in d.metrics:
            raise _refuse(
                "metric",
                f"{metric!r} is not a metric of device {device!r} "
                f"(its metrics: {', '.join(sorted(d.metrics))})",
            )
        return [d]
    assert building is not None
    if building not in campus.buildings:
        raise _refuse("building", f"no building {building!r}", 404)
    if kind is not None and kind not in campus.kinds:
        raise _refuse("kind", f"unknown kind {kind!r} (known: {', '.join(sorted(campus.kinds))})")
    inside = [d for d in campus.devices_in(building) if kind is None or d.kind == kind]
    chosen = sorted((d for d in inside if metric in d.metrics), key=lambda d: d.id)
    if not chosen:
        known = sorted({m for d in inside for m in d.metrics})
        raise _refuse(
            "metric",
            f"no device of building {building!r} reports {metric!r} "
            f"(metrics there: {', '.join(known) or 'none'})",
        )
    return chosen


def build_query(
    campus: Campus,
    devices: list[Device],
    building: str | None,
    metric: str,
    agg: Agg,
    start: datetime,
    end: datetime,
    interval_s: int,
) -> str:
    """The InfluxQL of a readings query (every part checked or quoted)."""
    kinds = sorted({d.kind for d in devices})
    where = (
        f"{quote_ident('building')} = {quote_literal(building)}"
        if building is not None
        else f"{quote_ident('device')} = {quote_literal(devices[0].id)}"
    )
    start_ms = int(start.timestamp() * 1000)
    end_ms = int(end.timestamp() * 1000)
    q = (
        f"SELECT {agg}({quote_ident(metric)}) AS {quote_ident('value')} "
        f"FROM {', '.join(quote_ident(k) for k in kinds)} "
        f"WHERE {where} AND time >= {start_ms}ms AND time < {end_ms}ms "
        f"GROUP BY time({interval_s}s), {quote_ident('device')} fill(none)"
    )
    if interval_s % 86_400 == 0:  # whole days: the campus's days, not UTC's
        q += f" tz({quote_literal(campus.timezone)})"
    return q


def _run(influx: InfluxClient, q: str) -> list[dict[str, Any]]:
    try:
        return influx.query(q, epoch="ms")
    except SinkError as exc:
        if "database not found" in str(exc):
            return []  # nothing was ever written
        log.warning("readings query failed: %s", exc)
        raise HTTPException(
            503,
            "InfluxDB did not answer the readings query; try again",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        ) from None


@router.get("", response_model=ReadingsOut, responses=ERRORS)
def readings(
    request: Request,
    who: PrincipalDep,
    metric: Annotated[str, Query(pattern=METRIC, description="e.g. power_kw, flow_lpm")],
    device: Annotated[str | None, Query(pattern=ID)] = None,
    building: Annotated[
        str | None, Query(pattern=ID, description="Every device of it with this metric.")
    ] = None,
    kind: Annotated[
        str | None, Query(pattern=KIND, description="With building: one kind of device only.")
    ] = None,
    start: Annotated[
        str, Query(min_length=1, max_length=40, description="RFC 3339, now, or -24h, -7d...")
    ] = "-24h",
    end: Annotated[str, Query(min_length=1, max_length=40)] = "now",
    agg: Agg = "mean",
    interval: Annotated[
        str | None,
        Query(min_length=2, max_length=16, description="1m, 15m, 1h, 1d...; chosen if absent"),
    ] = None,
    format: Literal["json", "csv"] = "json",
) -> Any:
    """One metric over a range, aggregated per interval (``format=csv`` for a file)."""
    campus: Campus = request.app.state.campus
    chosen = _select(campus, device, building, metric, kind)
    now = datetime.now(UTC)
    t0, t1 = _time("start", start, now), _time("end", end, now)
    if t0 >= t1:
        raise _refuse("start", f"must be before end ({t0.isoformat()} >= {t1.isoformat()})")
    interval_s = _interval(interval, (t1 - t0).total_seconds(), chosen)
    q = build_query(campus, chosen, building, metric, agg, t0, t1, interval_s)
    found: dict[str, list[tuple[int, float]]] = {}
    for s in _run(request.app.state.influx, q):
        dev = (s.get("tags") or {}).get("device")
        if dev is None:
            continue
        pts = found.setdefault(dev, [])
        pts.extend((int(t), float(v)) for t, v in s.get("values", []) if v is not None)
    series = [Series(device=d.id, kind=d.kind, points=sorted(found.get(d.id, []))) for d in chosen]
    out = ReadingsOut(
        device=device,
        building=building,
        metric=metric,
        unit=chosen[0].metrics[metric].unit,
        agg=agg,
        interval=format_interval(interval_s),
        interval_s=interval_s,
        start=t0,
        end=t1,
        series=series,
    )
    if format == "csv":
        return _csv(out)
    return out


def _csv(out: ReadingsOut) -> Response:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["device", "time", "ts_ms", out.metric])
    for s in out.series:
        for ts, v in s.points:
            when = datetime.fromtimestamp(ts / 1000, UTC)
            w.writerow([s.device, when.isoformat(timespec="milliseconds"), ts, repr(v)])
    name = f"readings-{out.device or out.building}-{out.metric}.csv"
    return Response(
        buf.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
