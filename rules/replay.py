"""Replay recorded data through the rules engine: a CSV file or InfluxDB.

The same :class:`~rules.engine.Engine` that runs live and in the scenarios is
fed recorded readings in time order, and time moves with the watermark
(``advance`` after every timestamp), so a month replayed in seconds raises the
alerts a month lived would.

A CSV file is read through a *mapping* (``config/replay/*.yaml``)::

    device: ahu-admin-1-1          # a device of the campus, or a definition:
    # device: {id: lbnl-szcav, model: ahu, building: lbnl}
    time_column: Datetime
    time_format: "%m/%d/%Y %H:%M"  # strptime; or iso, epoch_s, epoch_ms
    timezone: Etc/GMT+8            # of naive times; default: the campus's
    label_column: Fault Detection Ground Truth   # optional ground truth, > 0 = faulted
    max_gap: 1h                    # optional: a longer jump restarts the engine
    columns:
      "AHU: Supply Air Temperature": {metric: supply_temp_c, unit: degF}
      "AHU: Cooling Coil Valve Control Signal": {metric: cooling_valve_pct, unit: fraction}

A column's value is ``raw * scale + offset`` in ``unit`` (default: already in
the metric's unit), then converted to the metric's unit (``degF`` to ``degC``,
``fraction`` to ``%``, ``inH2O`` to ``Pa``...). A value outside the metric's
valid range is dropped, as the ingester drops it. Column names are compared
with surrounding spaces removed.

A device defined in the mapping is not in the campus: :func:`load_mapping`
validates it with the registry's own models (``CampusConfig``, the campus's
device models) and builds a campus holding just that device, in its own
building, for the engine. Rules are checked against the campus plus that
device, so the shipped rules file loads and its rules for other devices
simply do not apply.

Rows are sorted by time (out-of-order rows are counted); a row whose time or a
value cannot be read is skipped and counted with its line number; an empty
cell is a missing value. A jump longer than ``max_gap`` (missing days in a
recording) restarts the engine, so an alert cannot carry over data that does
not exist. :func:`evaluate` scores the alerts per day against the label column.
"""

from __future__ import annotations

import bisect
import csv
import difflib
import logging
import math
import time as _time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from campus.calendar import AcademicCalendar
from campus.errors import ConfigError, ConfigIssue
from campus.influxql import quote_ident, quote_literal
from campus.registry import Campus, CampusConfig, Device, check_references
from campus.yamlconf import Located, Strict, load_located, load_located_text, validate
from rules.engine import AlertEvent, Engine
from rules.model import Rule, duration
from simulators.run import select_devices

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int | None], None]  # (phase, done, total)

# --------------------------------------------------------------------- units

# unit -> (dimension, factor, offset): the value in the dimension's base unit
# is ``value * factor + offset`` (degC, fraction, Pa, W, Wh, L/s, bool).
UNITS: dict[str, tuple[str, float, float]] = {
    "degC": ("temperature", 1.0, 0.0),
    "degF": ("temperature", 5 / 9, -32 * 5 / 9),
    "K": ("temperature", 1.0, -273.15),
    "fraction": ("ratio", 1.0, 0.0),
    "%": ("ratio", 0.01, 0.0),
    "pct": ("ratio", 0.01, 0.0),
    "Pa": ("pressure", 1.0, 0.0),
    "hPa": ("pressure", 100.0, 0.0),
    "kPa": ("pressure", 1000.0, 0.0),
    "inH2O": ("pressure", 249.08891, 0.0),
    "psi": ("pressure", 6894.757, 0.0),
    "W": ("power", 1.0, 0.0),
    "kW": ("power", 1000.0, 0.0),
    "MW": ("power", 1e6, 0.0),
    "Wh": ("energy", 1.0, 0.0),
    "kWh": ("energy", 1000.0, 0.0),
    "MWh": ("energy", 1e6, 0.0),
    "L/s": ("flow", 1.0, 0.0),
    "L/min": ("flow", 1 / 60, 0.0),
    "lpm": ("flow", 1 / 60, 0.0),
    "m3/h": ("flow", 1000 / 3600, 0.0),
    "gpm": ("flow", 3.785411784 / 60, 0.0),
    "bool": ("bool", 1.0, 0.0),
}


def conversion(unit: str | None, target: str, scale: float = 1.0, offset: float = 0.0) -> Linear:
    """``(a, b)`` such that a raw value ``v`` becomes ``a * v + b`` in ``target``:
    first ``v * scale + offset`` in ``unit`` (None: already in ``target``), then
    ``unit`` to ``target``. Raises ``ValueError`` naming the units."""
    if unit is None or unit == target:
        return Linear(scale, offset)
    src = UNITS.get(unit)
    if src is None:
        raise ValueError(f"unknown unit {unit!r} (known: {', '.join(UNITS)})")
    dst = UNITS.get(target)
    if dst is None or dst[0] != src[0]:
        raise ValueError(f"cannot convert {unit} to the metric's unit {target}")
    _, fs, os_ = src
    _, ft, ot = dst
    return Linear(scale * fs / ft, (offset * fs + os_ - ot) / ft)


@dataclass(frozen=True)
class Linear:
    """``a * v + b``."""

    a: float
    b: float

    def __call__(self, v: float) -> float:
        return self.a * v + self.b


# ------------------------------------------------------------------- mapping


class ColumnSpec(Strict):
    """One CSV column: the metric it feeds and how to convert it."""

    metric: str
    unit: str | None = None
    scale: float = 1.0
    offset: float = 0.0

    @field_validator("unit")
    @classmethod
    def _unit(cls, v: str | None) -> str | None:
        if v is not None and v not in UNITS:
            raise ValueError(f"unknown unit {v!r} (known: {', '.join(UNITS)})")
        return v


TIME_FORMATS = ("iso", "epoch_s", "epoch_ms")


class ReplayMapping(Strict):
    """A mapping file as written."""

    description: str = ""
    device: str | dict[str, Any]
    time_column: str
    time_format: str = "iso"
    timezone: str | None = None
    label_column: str | None = None
    max_gap: timedelta | None = None
    delimiter: str = Field(",", min_length=1, max_length=1)
    columns: dict[str, ColumnSpec] = Field(min_length=1)

    _gap = field_validator("max_gap", mode="before")(lambda cls, v: v if v is None else duration(v))

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r}: use an IANA name such as Asia/Shanghai, "
                "or Etc/GMT+8 for a fixed UTC-8 without daylight saving"
            ) from None
        return v

    @field_validator("time_format")
    @classmethod
    def _fmt(cls, v: str) -> str:
        if v not in TIME_FORMATS and "%" not in v:
            raise ValueError(f"use a strptime format such as %Y-%m-%d %H:%M, or {TIME_FORMATS}")
        return v


@dataclass
class Recording:
    """A mapping resolved against a campus: everything a replay needs."""

    spec: ReplayMapping
    file: str
    located: Located
    device: Device
    campus: Campus  # what the engine runs over
    rules_campus: Campus  # what rules files are checked against
    tz: ZoneInfo
    converters: dict[str, tuple[str, Linear]]  # column -> (metric, conversion)


def load_mapping(path: str | Path, campus: Campus) -> Recording:
    """Load and check a mapping file; :class:`ConfigError` names file, line and field."""
    return resolve_mapping(load_located(path), campus)


def load_mapping_text(text: str, name: str, campus: Campus) -> Recording:
    """Load a mapping from text (tests)."""
    return resolve_mapping(load_located_text(text, name), campus)


def resolve_mapping(located: Located, campus: Campus) -> Recording:
    """Check a located mapping against ``campus`` and build the replay campus."""
    spec = validate(ReplayMapping, located)
    if isinstance(spec.device, str):
        dev = campus.get(spec.device)
        if dev is None:
            raise ConfigError(
                [
                    located.issue(
                        ("device",),
                        f"no device {spec.device!r} in the campus; "
                        "define it here instead ({id, model, ...})",
                    )
                ]
            )
        engine_campus = rules_campus = campus
    else:
        engine_campus, rules_campus = _replay_campus(spec, located, campus)
        dev = next(iter(engine_campus))
    tz = ZoneInfo(spec.timezone or engine_campus.timezone)
    issues: list[ConfigIssue] = []
    converters: dict[str, tuple[str, Linear]] = {}
    seen: dict[str, str] = {}
    for col, c in spec.columns.items():
        where = ("columns", col, "metric")
        ms = dev.metrics.get(c.metric)
        if ms is None:
            hint = difflib.get_close_matches(c.metric, list(dev.metrics), n=1)
            issues.append(
                located.issue(
                    where,
                    f"unknown metric {c.metric!r} of device {dev.id!r}"
                    + (f"; did you mean {hint[0]!r}?" if hint else "")
                    + f" (known: {', '.join(dev.metrics)})",
                )
            )
            continue
        if c.metric in seen:
            issues.append(
                located.issue(where, f"metric {c.metric!r} is already fed by {seen[c.metric]!r}")
            )
            continue
        seen[c.metric] = col
        try:
            converters[col.strip()] = (c.metric, conversion(c.unit, ms.unit, c.scale, c.offset))
        except ValueError as exc:
            issues.append(located.issue(("columns", col, "unit"), str(exc)))
    if issues:
        raise ConfigError(issues)
    return Recording(spec, located.file, located, dev, engine_campus, rules_campus, tz, converters)


_DEVICE_PATH = ("buildings", 0, "devices", 0)


def _replay_campus(spec: ReplayMapping, located: Located, campus: Campus) -> tuple[Campus, Campus]:
    """A campus of just the mapping's device, and the campus plus that device,
    both validated as a campus.yaml would be (``CampusConfig``, references)."""
    assert isinstance(spec.device, dict)
    raw = dict(spec.device)
    building = raw.pop("building", "replay")
    tz = spec.timezone or campus.timezone
    floor = raw.get("floor")
    b = {
        "id": building,
        "name": f"replay of {Path(located.file).name}",
        "type": "admin",
        "lat": 0.0,
        "lon": 0.0,
        "floors": floor if isinstance(floor, int) and 1 <= floor <= 200 else 1,
        "devices": [raw],
    }
    data = {
        "campus": {"name": f"replay: {Path(located.file).name}", "timezone": tz},
        "kinds": list(campus.config.kinds),
        "models": {k: m.model_dump() for k, m in campus.config.models.items()},
        "buildings": [b],
    }
    lines = {(*_DEVICE_PATH, *p[1:]): n for p, n in located.lines.items() if p[:1] == ("device",)}
    lines[("buildings", 0, "id")] = located.line_of(("device", "building")) or 0
    shadow = Located(located.file, data, lines)
    try:
        cfg = validate(CampusConfig, shadow)
    except ConfigError as exc:
        raise ConfigError([_device_issue(i) for i in exc.issues]) from None
    issues = check_references(cfg, shadow)
    dev_id = cfg.buildings[0].devices[0].id
    if campus.get(dev_id) is not None:
        issues.append(shadow.issue((*_DEVICE_PATH, "id"), f"{dev_id!r} is a device of the campus"))
    if building in campus.buildings:
        issues.append(
            shadow.issue(("buildings", 0, "id"), f"building {building!r} is in the campus")
        )
    if issues:
        raise ConfigError([_device_issue(i) for i in issues])
    merged = campus.config.model_copy(
        update={"buildings": [*campus.config.buildings, cfg.buildings[0]]}
    )
    return Campus(cfg, located.file), Campus(merged, f"{campus.source} + {located.file}")


def _device_issue(issue: ConfigIssue) -> ConfigIssue:
    head = "buildings[0].devices[0]"
    fld = issue.field
    if fld.startswith(head):
        fld = "device" + fld[len(head) :]
    elif fld == "buildings[0].id":
        fld = "device.building"
    return ConfigIssue(issue.file, issue.line, fld, issue.message)


# -------------------------------------------------------------------- result


@dataclass(frozen=True)
class Firing:
    """A span during which an alert was firing: from ``start_ms`` (fired) to
    ``end_ms`` (resolved, or the end of the data); ``held_ms`` is when its
    condition stopped holding (``end_ms`` less the rule's ``clear_for``).
    ``open`` when the data ended (or a gap began) with the alert still firing."""

    rule: str
    device: str
    start_ms: int
    end_ms: int
    held_ms: int
    open: bool = False


@dataclass
class ReplayResult:
    """What a replay read and what the engine raised."""

    source: str
    timezone: str
    rules: list[str]
    events: list[AlertEvent] = field(default_factory=list)
    firings: list[Firing] = field(default_factory=list)
    rows: int = 0  # data rows read
    readings: int = 0  # readings fed to the engine
    bad: Counter[str] = field(default_factory=Counter)  # reason -> rows skipped
    bad_examples: list[str] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)  # metric -> values out of range
    dropped_examples: dict[str, str] = field(default_factory=dict)  # metric -> the first
    out_of_order: int = 0
    duplicates: int = 0
    segments: list[tuple[int, int]] = field(default_factory=list)
    day_rows: Counter[date] = field(default_factory=Counter)
    labels: dict[date, float] = field(default_factory=dict)  # highest label of each day
    series: dict[tuple[str, str], list[tuple[int, float]]] = field(default_factory=dict)
    disabled: dict[str, str] = field(default_factory=dict)
    devices: list[str] = field(default_factory=list)

    @property
    def bad_rows(self) -> int:
        """Rows skipped because their time or a value could not be read."""
        return sum(self.bad.values())

    @property
    def zone(self) -> ZoneInfo:
        """The time zone days are counted in."""
        return ZoneInfo(self.timezone)

    def local(self, ts_ms: int) -> datetime:
        """An event time as local wall-clock time."""
        return datetime.fromtimestamp(ts_ms / 1000, self.zone)


# -------------------------------------------------------------------- player


class _Player:
    """Feeds readings to an engine in time order, restarting it after long gaps,
    and turns its events into firing spans."""

    def __init__(
        self,
        result: ReplayResult,
        rules: Sequence[Rule],
        campus: Campus,
        calendar: AcademicCalendar,
        max_gap: timedelta | None,
        keep: set[tuple[str, str]] | None,
    ) -> None:
        self.result = result
        self.rules = list(rules)
        self.campus = campus
        self.calendar = calendar
        self.max_gap_ms = None if max_gap is None else int(max_gap.total_seconds() * 1000)
        self.keep = keep
        self.engine = Engine(self.rules, campus, calendar)
        self.clear_ms = {r.id: int(r.clear_for.total_seconds() * 1000) for r in self.rules}
        self.open: dict[tuple[str, str], int] = {}
        self.last: int | None = None
        self.seg_start: int | None = None

    def feed(self, ts_ms: int, readings: Iterable[tuple[str, Mapping[str, float]]]) -> None:
        """Every reading of one timestamp, then time moves to it."""
        if self.last is not None and self.max_gap_ms is not None:
            gap = ts_ms - self.last
            if gap > self.max_gap_ms:
                log.info(
                    "%s: no data for %s after %s; the engine restarts (alerts do not carry over)",
                    self.result.source,
                    _span(gap / 1000),
                    self.result.local(self.last).isoformat(timespec="minutes"),
                )
                self._close_segment()
                self.engine = Engine(self.rules, self.campus, self.calendar)
        if self.seg_start is None:
            self.seg_start = ts_ms
        self.last = ts_ms
        events: list[AlertEvent] = []
        for device, metrics in readings:
            events += self.engine.feed(device, ts_ms, metrics)
            self.result.readings += 1
            if self.keep is not None:
                for name, value in metrics.items():
                    if (device, name) in self.keep:
                        self.result.series.setdefault((device, name), []).append((ts_ms, value))
        events += self.engine.advance(ts_ms)
        self._note(events)

    def _note(self, events: list[AlertEvent]) -> None:
        self.result.events += events
        for ev in events:
            key = (ev.rule, ev.device)
            if ev.state == "firing" and key not in self.open:
                self.open[key] = ev.ts_ms
            elif ev.state == "resolved" and key in self.open:
                start = self.open.pop(key)
                held = max(start + 1, ev.ts_ms - self.clear_ms.get(ev.rule, 0))
                self.result.firings.append(Firing(ev.rule, ev.device, start, ev.ts_ms, held))

    def _close_segment(self) -> None:
        assert self.last is not None and self.seg_start is not None
        end = self.last + 1  # the last reading's moment counts
        for (rule, device), start in sorted(self.open.items(), key=lambda kv: kv[1]):
            self.result.firings.append(Firing(rule, device, start, end, end, open=True))
        self.open.clear()
        self.result.segments.append((self.seg_start, self.last))
        self.seg_start = None
        for rid, why in self.engine.stats.disabled.items():
            self.result.disabled.setdefault(rid, why)

    def finish(self) -> ReplayResult:
        """Close the last segment; the result."""
        if self.last is not None:
            self._close_segment()
        self.result.firings.sort(key=lambda f: (f.start_ms, f.rule, f.device))
        return self.result


def _span(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"


class _Ticker:
    """Progress: the caller's callback, else an INFO line every 5 seconds."""

    def __init__(self, source: str, progress: Progress | None) -> None:
        self.source = source
        self.progress = progress
        self.last = _time.monotonic()

    def __call__(self, phase: str, done: int, total: int | None) -> None:
        if self.progress is not None:
            self.progress(phase, done, total)
            return
        now = _time.monotonic()
        if now - self.last >= 5.0:
            self.last = now
            of = f"/{total:,}" if total else ""
            log.info("%s: %s %s%s", self.source, phase, f"{done:,}", of)


# ----------------------------------------------------------------------- csv


def _time_parser(fmt: str, tz: ZoneInfo) -> Callable[[str], int]:
    def aware(dt: datetime) -> int:
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=tz)
        return round(dt.timestamp() * 1000)

    if fmt == "epoch_s":
        return lambda s: round(_finite(s) * 1000)
    if fmt == "epoch_ms":
        return lambda s: round(_finite(s))
    if fmt == "iso":
        return lambda s: aware(datetime.fromisoformat(s))
    return lambda s: aware(datetime.strptime(s, fmt))


def _finite(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"{text!r} is not finite")
    return v


def _column_index(
    header: list[str], names: Iterable[tuple[tuple[str | int, ...], str]], rec: Recording, path: str
) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, h in enumerate(header):
        index.setdefault(h.strip(), i)
    out: dict[str, int] = {}
    issues = []
    for where, name in names:
        key = name.strip()
        if key in index:
            out[key] = index[key]
            continue
        lower = {h.lower(): h for h in index}
        hint = [lower[h] for h in difflib.get_close_matches(key.lower(), list(lower), n=1)]
        issues.append(
            rec.located.issue(
                where,
                f"no column {name!r} in {path}"
                + (f"; did you mean {hint[0]!r}?" if hint else "")
                + f" (columns: {', '.join(repr(h) for h in index)})",
            )
        )
    if issues:
        raise ConfigError(issues)
    return out


def replay_csv(
    path: str | Path,
    mapping: str | Path | Recording,
    rules: Sequence[Rule],
    campus: Campus,
    calendar: AcademicCalendar,
    *,
    progress: Progress | None = None,
    keep_series: bool = False,
) -> ReplayResult:
    """Replay a CSV recording through a fresh engine (see the module doc).

    ``mapping`` is a mapping file or one already loaded with :func:`load_mapping`;
    a standalone device runs in a campus of its own. ``keep_series`` keeps the
    mapped values for :func:`plot_replay`. Raises :class:`ConfigError` for a
    mapping that does not fit the file (unknown column, metric or unit).
    """
    rec = mapping if isinstance(mapping, Recording) else load_mapping(mapping, campus)
    spec, dev = rec.spec, rec.device
    p = Path(path)
    name = p.name
    result = ReplayResult(name, str(rec.tz.key), [r.id for r in rules], devices=[dev.id])
    tick = _Ticker(name, progress)
    parse_time = _time_parser(spec.time_format, rec.tz)
    ranges = {m: (dev.metrics[m].min, dev.metrics[m].max) for m, _ in rec.converters.values()}
    rows: list[tuple[int, int, tuple[float | None, ...], float | None]] = []
    metrics: list[str] = []

    def bad(reason: str, line: int, message: str) -> None:
        result.bad[reason] += 1
        if len(result.bad_examples) < 10:
            result.bad_examples.append(f"{name}:{line}: {message}")

    try:
        fh = p.open(newline="", encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError([ConfigIssue(str(p), None, "", f"cannot read: {exc.strerror}")]) from None
    with fh:
        reader = csv.reader(fh, delimiter=spec.delimiter)
        header = next(reader, None)
        if header is None:
            raise ConfigError([ConfigIssue(str(p), 1, "", "the file is empty")])
        wanted: list[tuple[tuple[str | int, ...], str]] = [
            (("time_column",), spec.time_column),
            *((("columns", c), c) for c in spec.columns),
        ]
        if spec.label_column is not None:
            wanted.append((("label_column",), spec.label_column))
        idx = _column_index(header, wanted, rec, str(p))
        t_i = idx[spec.time_column.strip()]
        l_i = idx[spec.label_column.strip()] if spec.label_column is not None else None
        cols = [(c.strip(), idx[c.strip()], *rec.converters[c.strip()]) for c in spec.columns]
        metrics = [m for _, _, m, _ in cols]
        width = len(header)
        for record in reader:
            line = reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # a blank line
            result.rows += 1
            if len(record) != width:
                bad("wrong number of fields", line, f"{len(record)} fields, the header has {width}")
                continue
            raw_t = record[t_i].strip()
            try:
                ts = parse_time(raw_t)
            except (ValueError, OverflowError, OSError):
                bad("unreadable time", line, f"time {raw_t!r} does not match {spec.time_format!r}")
                continue
            values = _values(record, cols, ranges, line, bad, result)
            if values is None:
                continue
            label: float | None = None
            if l_i is not None:
                text = record[l_i].strip()
                if text:
                    try:
                        label = _finite(text)
                    except ValueError:
                        bad("unreadable label", line, f"label {text!r} is not a number")
                        continue
            rows.append((ts, line, values, label))
            if result.rows % 20_000 == 0:
                tick("read", result.rows, None)
    if result.bad:
        log.warning(
            "%s: %d rows skipped (%s); first: %s",
            name,
            result.bad_rows,
            ", ".join(f"{k}: {n}" for k, n in result.bad.items()),
            result.bad_examples[0],
        )
    running = -(2**62)
    for ts, *_ in rows:
        if ts < running:
            result.out_of_order += 1
        running = max(running, ts)
    if result.out_of_order:
        log.warning("%s: %d rows out of time order; replayed sorted", name, result.out_of_order)
        rows.sort(key=lambda r: (r[0], r[1]))
    keep = {(dev.id, m) for m in metrics} if keep_series else None
    player = _Player(result, rules, rec.campus, calendar, spec.max_gap, keep)
    total = len(rows)
    prev: int | None = None
    for i, (ts, _line, vals, label) in enumerate(rows):
        if ts == prev:
            result.duplicates += 1  # the engine would ignore it as a late reading
            continue
        prev = ts
        day = datetime.fromtimestamp(ts / 1000, rec.tz).date()
        result.day_rows[day] += 1
        if label is not None:
            result.labels[day] = max(label, result.labels.get(day, label))
        reading = {m: v for m, v in zip(metrics, vals, strict=True) if v is not None}
        player.feed(ts, [(dev.id, reading)])
        if i % 5_000 == 0:
            tick("replay", i, total)
    if result.duplicates:
        log.warning("%s: %d rows repeat an earlier time; first kept", name, result.duplicates)
    tick("replay", total, total)
    return player.finish()


def _values(
    record: list[str],
    cols: list[tuple[str, int, str, Linear]],
    ranges: dict[str, tuple[float, float]],
    line: int,
    bad: Callable[[str, int, str], None],
    result: ReplayResult,
) -> tuple[float | None, ...] | None:
    """The converted values of a row (None where empty or out of range), or None
    when a value cannot be read (the row is then skipped and counted)."""
    out: list[float | None] = []
    for col, ci, metric, conv in cols:
        text = record[ci].strip()
        if not text:
            out.append(None)  # an empty cell: no reading of this metric
            continue
        try:
            v = conv(_finite(text))
        except ValueError:
            bad(f"unreadable value in {col!r}", line, f"column {col!r}: {text!r} is not a number")
            return None
        lo, hi = ranges[metric]
        if lo <= v <= hi:
            out.append(v)
            continue
        out.append(None)  # as the ingester does: only this value is dropped
        result.dropped[metric] += 1
        result.dropped_examples.setdefault(
            metric, f"{result.source}:{line}: {metric} = {v:g} outside [{lo:g}, {hi:g}]"
        )
    return tuple(out)


# -------------------------------------------------------------------- influx


class QueryClient(Protocol):
    """What :func:`replay_influx` needs of :class:`campus.influx.InfluxClient`."""

    def query(self, q: str, *, epoch: str = "ms", database: bool = True) -> list[dict[str, Any]]:
        """Run InfluxQL; the series."""
        ...


def influx_queries(
    kind: str, devices: Sequence[Device], start_ms: int, end_ms: int, every: bool
) -> list[str]:
    """InfluxQL for one measurement and time chunk, quoted with
    :mod:`campus.influxql`; ``every``: all the kind's devices (no device filter)."""
    fields = sorted({m for d in devices for m, spec in d.metrics.items()})
    head = (
        f"SELECT {', '.join(quote_ident(f) for f in fields)} FROM {quote_ident(kind)} "
        f"WHERE time >= {int(start_ms)}ms AND time < {int(end_ms)}ms"
    )
    tail = f" GROUP BY {quote_ident('device')}"
    if every:
        return [head + tail]
    out = []
    ids = sorted(d.id for d in devices)
    for i in range(0, len(ids), 40):  # short enough for a GET request
        ors = " OR ".join(f"{quote_ident('device')} = {quote_literal(x)}" for x in ids[i : i + 40])
        out.append(f"{head} AND ({ors}){tail}")
    return out


def replay_influx(
    client: QueryClient,
    start: datetime,
    end: datetime,
    rules: Sequence[Rule],
    campus: Campus,
    calendar: AcademicCalendar,
    devices: Sequence[str] | None = None,
    *,
    chunk: timedelta = timedelta(hours=6),
    max_gap: timedelta | None = None,
    progress: Progress | None = None,
    keep_series: bool = False,
) -> ReplayResult:
    """Replay the readings stored in InfluxDB between ``start`` and ``end`` for the
    devices matching ``devices`` (globs on id or building; default all), one time
    chunk at a time so memory stays bounded, in time order."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end need a time zone")
    if end <= start:
        raise ValueError("end must come after start")
    chosen = select_devices(list(campus), list(devices or []))
    if not chosen:
        raise ValueError(f"no device of the campus matches {', '.join(devices or [])}")
    by_kind: dict[str, list[Device]] = {}
    for d in chosen:
        by_kind.setdefault(d.kind, []).append(d)
    every = {k: len(v) == sum(1 for d in campus if d.kind == k) for k, v in by_kind.items()}
    wanted = {d.id for d in chosen}
    source = f"influx {start.isoformat()}..{end.isoformat()}"
    result = ReplayResult(source, campus.timezone, [r.id for r in rules], devices=sorted(wanted))
    keep = (
        {(d.id, m) for d in chosen for m, s in d.metrics.items() if not s.counter}
        if keep_series
        else None
    )
    player = _Player(result, rules, campus, calendar, max_gap, keep)
    tick = _Ticker(source, progress)
    t0, t1 = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    step = max(60_000, int(chunk.total_seconds() * 1000))
    chunks = (t1 - t0 + step - 1) // step
    skipped: Counter[str] = Counter()
    for n, a in enumerate(range(t0, t1, step)):
        b = min(a + step, t1)
        batch: list[tuple[int, str, dict[str, float]]] = []
        for kind, devs in by_kind.items():
            for q in influx_queries(kind, devs, a, b, every[kind]):
                for s in client.query(q):
                    did = (s.get("tags") or {}).get("device")
                    dev = campus.get(did) if isinstance(did, str) else None
                    if dev is None or did not in wanted:
                        skipped[str(did)] += len(s.get("values", []))
                        continue
                    cols = s["columns"]
                    for vals in s.get("values", []):
                        result.rows += 1
                        metrics = {
                            c: float(v)
                            for c, v in zip(cols[1:], vals[1:], strict=False)
                            if isinstance(v, int | float)
                            and not isinstance(v, bool)
                            and c in dev.metrics
                            and math.isfinite(v)
                        }
                        if metrics and vals[0] is not None:
                            batch.append((int(vals[0]), dev.id, metrics))
        batch.sort(key=lambda r: (r[0], r[1]))
        i = 0
        while i < len(batch):
            ts = batch[i][0]
            j = i
            while j < len(batch) and batch[j][0] == ts:
                j += 1
            player.feed(ts, [(d, m) for _, d, m in batch[i:j]])
            i = j
        tick("chunk", n + 1, chunks)
    if skipped:
        log.info("skipped readings of devices not in the campus: %s", dict(skipped))
    return player.finish()


# ------------------------------------------------------------------- reports


@dataclass(frozen=True)
class AlertLine:
    """One (rule, device) of the results table."""

    rule: str
    device: str
    count: int
    first_ms: int
    firing_s: float


def alert_table(result: ReplayResult) -> list[AlertLine]:
    """Per rule and device: how often it fired, when first, and for how long in all."""
    acc: dict[tuple[str, str], list[Firing]] = {}
    for f in result.firings:
        acc.setdefault((f.rule, f.device), []).append(f)
    out = [
        AlertLine(
            rule,
            device,
            len(fs),
            min(f.start_ms for f in fs),
            sum(f.end_ms - f.start_ms for f in fs) / 1000,
        )
        for (rule, device), fs in acc.items()
    ]
    return sorted(out, key=lambda a: (a.rule, a.device))


@dataclass
class Score:
    """Day-level figures of one rule, or of the pack (any rule)."""

    faulted_days: int = 0
    unfaulted_days: int = 0
    detected: list[date] = field(default_factory=list)  # faulted days with an alert
    false_alarms: list[date] = field(default_factory=list)  # unfaulted days with an alert

    @property
    def detection_rate(self) -> float | None:
        """Detected faulted days over faulted days."""
        return len(self.detected) / self.faulted_days if self.faulted_days else None

    def as_json(self) -> dict[str, Any]:
        """A plain dict."""
        return {
            "detected_days": len(self.detected),
            "faulted_days": self.faulted_days,
            "detection_rate": self.detection_rate,
            "false_alarm_days": len(self.false_alarms),
            "unfaulted_days": self.unfaulted_days,
            "detected": [d.isoformat() for d in self.detected],
            "false_alarms": [d.isoformat() for d in self.false_alarms],
        }


@dataclass(frozen=True)
class Day:
    """One labelled day: whether it was faulted and which rules alerted in it.
    ``carried``: every alert of the day had fired the day before (an alert
    whose condition went on past midnight)."""

    day: date
    faulted: bool
    rules: list[str]
    carried: bool = False


@dataclass
class Evaluation:
    """Alerts scored per day against the ground truth labels."""

    days: list[Day]
    rules: dict[str, Score]
    pack: Score

    def as_json(self) -> dict[str, Any]:
        """A plain dict."""
        return {
            "pack": self.pack.as_json(),
            "rules": {r: s.as_json() for r, s in self.rules.items()},
            "days": [
                {
                    "day": d.day.isoformat(),
                    "faulted": d.faulted,
                    "rules": d.rules,
                    "carried": d.carried,
                }
                for d in self.days
            ],
        }


def evaluate(result: ReplayResult) -> Evaluation:
    """Score per local day. A day is *detected* when an alert fired during it, or
    was firing during it while its condition still held (the ``clear_for`` wait
    after the condition ended does not count: it belongs to the day before).
    Detection rate: detected faulted days / faulted days; false-alarm days:
    unfaulted days with an alert. Days without a label are left out."""
    if not result.labels:
        raise ValueError("no labels: give the mapping a label_column to evaluate")
    tz = result.zone
    days: list[Day] = []
    scores = {r: Score() for r in result.rules}
    pack = Score()
    for day in sorted(result.labels):
        a = int(datetime.combine(day, dtime(), tz).timestamp() * 1000)
        b = int(datetime.combine(day + timedelta(days=1), dtime(), tz).timestamp() * 1000)
        hits = [f for f in result.firings if f.start_ms < b and f.held_ms > a]
        firing = sorted({f.rule for f in hits})
        faulted = result.labels[day] > 0
        days.append(Day(day, faulted, firing, bool(hits) and all(f.start_ms < a for f in hits)))
        for s, hit in [(pack, bool(firing))] + [(scores[r], r in firing) for r in scores]:
            if faulted:
                s.faulted_days += 1
                if hit:
                    s.detected.append(day)
            else:
                s.unfaulted_days += 1
                if hit:
                    s.false_alarms.append(day)
    return Evaluation(days, scores, pack)


def _rate(s: Score) -> str:
    r = s.detection_rate
    return f"{len(s.detected)}/{s.faulted_days}" + ("" if r is None else f" ({r:.0%})")


def report_lines(result: ReplayResult) -> list[str]:
    """The results table, as ``campus rules replay`` prints it."""
    out = [
        f"REPLAY  {result.source}  ({result.rows:,} rows, {result.readings:,} readings, "
        f"{result.bad_rows:,} skipped, {sum(1 for e in result.events if e.state == 'firing')} "
        f"firing events)"
    ]
    for reason, n in sorted(result.bad.items()):
        out.append(f"   SKIPPED {n:,} rows: {reason}")
    out += [f"   {x}" for x in result.bad_examples[:5]]
    for metric, n in sorted(result.dropped.items()):
        first = result.dropped_examples.get(metric, "")
        out.append(f"   DROPPED {n:,} values of {metric} outside its valid range (first: {first})")
    if result.out_of_order:
        out.append(f"   SORTED {result.out_of_order:,} rows out of time order")
    if result.duplicates:
        out.append(f"   DUPLICATE {result.duplicates:,} rows repeat a time (first kept)")
    if len(result.segments) > 1:
        out.append(f"   {len(result.segments)} stretches of data (gaps restart the engine)")
    table = alert_table(result)
    for a in table:
        first = result.local(a.first_ms).isoformat(timespec="minutes")
        out.append(
            f"   FIRED {a.rule:<34} {a.device:<18} {a.count:>4}x  first {first}  "
            f"firing {_span(a.firing_s):>8} in all"
        )
    fired = {a.rule for a in table}
    for rid in result.rules:
        if rid not in fired:
            out.append(f"   quiet {rid}")
    for rid, why in result.disabled.items():
        out.append(f"   DISABLED {rid}: {why}")
    return out


def evaluation_lines(ev: Evaluation) -> list[str]:
    """The per-day and per-rule scores, as ``--evaluate`` prints them."""
    out = ["   day         label  rules firing"]
    for d in ev.days:
        mark = "FAULT" if d.faulted else "ok   "
        carried = "  (carried over from the day before)" if d.carried else ""
        out.append(f"   {d.day.isoformat()}  {mark}  {', '.join(d.rules) or '-'}{carried}")
    out.append(f"   {'rule':<34} {'detected faulted days':>22} {'false-alarm days':>17}")
    for rid, s in ev.rules.items():
        out.append(f"   {rid:<34} {_rate(s):>22} {len(s.false_alarms):>8}/{s.unfaulted_days:<8}")
    p = ev.pack
    out.append(
        f"   {'PACK (any rule)':<34} {_rate(p):>22} {len(p.false_alarms):>8}/{p.unfaulted_days:<8}"
    )
    return out


def result_json(result: ReplayResult, ev: Evaluation | None = None) -> dict[str, Any]:
    """The result as a JSON document (``--json``)."""
    out: dict[str, Any] = {
        "source": result.source,
        "timezone": result.timezone,
        "rows": result.rows,
        "readings": result.readings,
        "skipped_rows": dict(result.bad),
        "skipped_examples": result.bad_examples,
        "dropped_values": dict(result.dropped),
        "dropped_examples": result.dropped_examples,
        "out_of_order": result.out_of_order,
        "duplicates": result.duplicates,
        "segments": len(result.segments),
        "alerts": [
            {
                "rule": a.rule,
                "device": a.device,
                "count": a.count,
                "first": result.local(a.first_ms).isoformat(),
                "firing_s": a.firing_s,
            }
            for a in alert_table(result)
        ],
        "firings": [
            {
                "rule": f.rule,
                "device": f.device,
                "start": result.local(f.start_ms).isoformat(),
                "end": result.local(f.end_ms).isoformat(),
                "held_until": result.local(f.held_ms).isoformat(),
                "open": f.open,
            }
            for f in result.firings
        ],
        "events": [e.to_json() for e in result.events],
        "disabled": result.disabled,
    }
    if ev is not None:
        out["evaluation"] = ev.as_json()
    return out


# ---------------------------------------------------------------------- plot

PLOT_GAP_MS = 3_600_000  # longer gaps are drawn as a thin break


class _Axis:
    """Event time to a plot position with long gaps squeezed out."""

    def __init__(self, times: Sequence[int]) -> None:
        self.starts: list[int] = []
        self.offsets: list[float] = []
        pos = 0.0
        prev: int | None = None
        for t in times:
            if prev is None or t - prev > PLOT_GAP_MS:
                if prev is not None:
                    pos += (prev - self.starts[-1]) / 3_600_000 + 1.0
                self.starts.append(t)
                self.offsets.append(pos)
            prev = t
        self.breaks = self.offsets[1:]

    def x(self, t: int) -> float:
        """The plot position of event time ``t``."""
        i = max(0, bisect.bisect_right(self.starts, t) - 1)
        return self.offsets[i] + (t - self.starts[i]) / 3_600_000


def plot_replay(
    result: ReplayResult, out: Path, evaluation: Evaluation | None = None, max_points: int = 4000
) -> Path:
    """A PNG: temperatures, percentages, the firing spans per rule and the faulted
    days shaded; gaps between recorded stretches squeezed out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {k: v for k, v in result.series.items() if v}
    times = sorted(
        {t for pts in series.values() for t, _ in pts}
        | {t for f in result.firings for t in (f.start_ms, f.end_ms - 1)}
    )
    if not times:
        raise ValueError("nothing to plot: replay with keep_series=True")
    axis = _Axis(times)
    temps = [k for k in series if k[1].endswith("_c")]
    pcts = [k for k in series if k[1].endswith("_pct")]
    fired = sorted({f.rule for f in result.firings})
    rows = [len(temps) > 0, len(pcts) > 0, True]
    heights = [3 if temps else 0, 2 if pcts else 0, max(1.0, 0.35 * len(fired) + 0.6)]
    used = [h for h, r in zip(heights, rows, strict=True) if r]
    fig, axes = plt.subplots(
        len(used), 1, figsize=(12, sum(used) + 1.2), sharex=True, squeeze=False,
        gridspec_kw={"height_ratios": used},
    )  # fmt: skip
    ax_iter = iter(axes[:, 0])
    tz = result.zone

    def shade(ax: Any) -> None:
        for d, label in result.labels.items():
            if label <= 0:
                continue
            a = int(datetime.combine(d, dtime(), tz).timestamp() * 1000)
            b = int(datetime.combine(d + timedelta(days=1), dtime(), tz).timestamp() * 1000) - 1
            ax.axvspan(axis.x(a), axis.x(b), color="#f4a261", alpha=0.18, lw=0)
        for x in axis.breaks:
            ax.axvline(x - 0.5, color="#888888", lw=0.6, ls=":")

    def draw(ax: Any, keys: list[tuple[str, str]], ylabel: str) -> None:
        for key in sorted(keys, key=lambda k: k[1]):
            pts = series[key]
            stride = max(1, len(pts) // max_points)
            sub = pts[::stride]
            ax.plot([axis.x(t) for t, _ in sub], [v for _, v in sub], lw=0.7, label=key[1])
        ax.set_ylabel(ylabel, fontsize=8)
        ax.legend(fontsize=6, ncol=6, loc="upper left", frameon=False)
        ax.tick_params(labelsize=7)
        shade(ax)

    if temps:
        draw(next(ax_iter), temps, "°C")
    if pcts:
        draw(next(ax_iter), pcts, "%")
    ax = next(ax_iter)
    for i, rule in enumerate(fired):
        spans = [
            (axis.x(f.start_ms), max(0.05, axis.x(f.end_ms - 1) - axis.x(f.start_ms)))
            for f in result.firings
            if f.rule == rule
        ]
        ax.broken_barh(spans, (i - 0.35, 0.7), color="#c1121f")
    ax.set_yticks(range(len(fired)), fired, fontsize=7)
    ax.set_ylim(-0.7, max(len(fired), 1) - 0.3)
    shade(ax)
    # ticks: each recorded day's midnight (every few when many)
    days = sorted(result.day_rows) or sorted({result.local(t).date() for t in times[::1000]})
    every = max(1, len(days) // 30)
    ticks = []
    for d in days[::every]:
        t = int(datetime.combine(d, dtime(), tz).timestamp() * 1000)
        ticks.append((axis.x(max(t, times[0])), d.strftime("%y-%m-%d")))
    ax.set_xticks([x for x, _ in ticks], [s for _, s in ticks], rotation=90, fontsize=6)
    title = f"{result.source}: alerts (red) against faulted days (shaded)"
    if evaluation is not None:
        p = evaluation.pack
        title += (
            f"; detected {_rate(p)} faulted days, "
            f"{len(p.false_alarms)}/{p.unfaulted_days} false-alarm days"
        )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=72)
    plt.close(fig)
    return out
