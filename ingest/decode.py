"""Decode and validate MQTT messages per the contract (DESIGN.md section 3).

A message yields readings to store, at most one status event, and rejections
with a reason each. One bad metric rejects that metric only; one bad reading
in a batch rejects that reading only. Nothing here raises for bad input.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from campus.ids import KIND_RE, is_metric_name, is_tag_value
from campus.reading import Reading
from campus.registry import Campus

MIN_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
_MS_THRESHOLD = 100_000_000_000  # numbers above this are epoch milliseconds
_READING_KEYS = frozenset({"ts", "metrics", "seq"})


@dataclass(frozen=True)
class Rejection:
    """Why (part of) a message was not stored."""

    reason: str


@dataclass(frozen=True)
class StatusEvent:
    """A device's retained ``online``/``offline`` status."""

    building: str
    kind: str
    device: str
    online: bool


@dataclass
class Decoded:
    """What one MQTT message turned into."""

    readings: list[Reading] = field(default_factory=list)
    status: StatusEvent | None = None
    rejections: list[Rejection] = field(default_factory=list)
    unknown_device: bool = False


@dataclass(frozen=True)
class Limits:
    """Bounds on what one message may carry."""

    max_payload_bytes: int = 256 * 1024
    max_batch_readings: int = 1000
    future_tolerance_ms: int = 300_000


class _BadNumber(ValueError):
    pass


def _no_constants(name: str) -> Any:
    raise _BadNumber(f"non-finite number {name} is not allowed")


_JSON = json.JSONDecoder(parse_constant=_no_constants)  # one decoder: json.loads builds one a call


def loads(text: str) -> Any:
    """Parse JSON: orjson (about 4x faster), and for what it refuses the standard
    library, so an error reads the same whichever parser saw it first (and
    integers past 64 bits, which orjson refuses, still parse)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _JSON.decode(text)


def parse_ts(value: Any, now_ms: int) -> int:
    """Epoch milliseconds from an RFC 3339 string, epoch seconds or epoch milliseconds."""
    if value is None:
        return now_ms
    if isinstance(value, bool):
        raise ValueError(f"ts must be a time, got {value!r}")
    if isinstance(value, int | float):
        try:
            finite = math.isfinite(value)
        except OverflowError:
            finite = False
        if not finite:
            raise ValueError("ts is not finite")
        if abs(value) > 1e17:
            raise ValueError("ts is out of range")
        ms = value if abs(value) >= _MS_THRESHOLD else value * 1000
        return round(ms)
    if isinstance(value, str):
        text = value.strip()
        if len(text) > 40:
            raise ValueError("ts string too long")
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"ts {value!r} is not an RFC 3339 time") from None
        if dt.tzinfo is None:
            raise ValueError(f"ts {value!r} has no time zone offset")
        delta = dt.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
    raise ValueError(f"ts must be a string or a number, got {type(value).__name__}")


class Decoder:
    """Turns (topic, payload) into readings, checked against the registry."""

    def __init__(self, campus: Campus, limits: Limits | None = None) -> None:
        self.campus = campus
        self.limits = limits or Limits()
        self.kinds = set(campus.kinds)
        self._ranges = {
            d.id: {name: (m.min, m.max) for name, m in d.metrics.items()} for d in campus
        }

    def decode(self, topic: str, payload: bytes, now_ms: int) -> Decoded:
        """Decode one message; never raises for bad input."""
        out = Decoded()
        parts = topic.split("/")
        if (
            len(parts) not in (4, 5)
            or parts[0] != "campus"
            or (len(parts) == 5 and parts[4] != "status")
        ):
            out.rejections.append(
                Rejection("topic must be campus/{building}/{kind}/{device} or .../status")
            )
            return out
        building, kind, device = parts[1], parts[2], parts[3]
        for what, value in (("building", building), ("device", device)):
            if not is_tag_value(value):
                out.rejections.append(
                    Rejection(f"{what} id {value!r} is not allowed (use [A-Za-z0-9_.-], 1-64)")
                )
                return out
        if KIND_RE.fullmatch(kind) is None or kind not in self.kinds:
            out.rejections.append(
                Rejection(f"unknown kind {kind!r} (known: {', '.join(sorted(self.kinds))})")
            )
            return out
        known = self.campus.get(device)
        if known is not None and (known.building != building or known.kind != kind):
            out.rejections.append(
                Rejection(
                    f"device {device!r} is registered as {known.building}/{known.kind}, "
                    f"not {building}/{kind}"
                )
            )
            return out
        out.unknown_device = known is None
        if len(payload) > self.limits.max_payload_bytes:
            out.rejections.append(
                Rejection(
                    f"payload too large: {len(payload)} bytes > {self.limits.max_payload_bytes}"
                )
            )
            return out
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            out.rejections.append(Rejection(f"payload is not UTF-8: {exc.reason}"))
            return out
        if len(parts) == 5:
            state = text.strip()
            if state not in ("online", "offline"):
                out.rejections.append(Rejection("status must be 'online' or 'offline'"))
            else:
                out.status = StatusEvent(building, kind, device, state == "online")
            return out
        try:
            data = loads(text)
        except _BadNumber as exc:
            out.rejections.append(Rejection(str(exc)))
            return out
        except (ValueError, RecursionError) as exc:
            out.rejections.append(Rejection(f"malformed JSON: {exc}"))
            return out
        if not isinstance(data, dict):
            out.rejections.append(Rejection("payload must be a JSON object"))
            return out
        if "readings" in data:
            batch = data["readings"]
            if set(data) != {"readings"}:
                out.rejections.append(Rejection("a batch carries only 'readings'"))
                return out
            if not isinstance(batch, list) or not batch:
                out.rejections.append(Rejection("'readings' must be a non-empty list"))
                return out
            if len(batch) > self.limits.max_batch_readings:
                out.rejections.append(
                    Rejection(f"batch of {len(batch)} readings > {self.limits.max_batch_readings}")
                )
                return out
            for i, item in enumerate(batch):
                self._reading(item, building, kind, device, now_ms, out, f"readings[{i}]: ")
        else:
            self._reading(data, building, kind, device, now_ms, out, "")
        return out

    def _reading(
        self,
        item: Any,
        building: str,
        kind: str,
        device: str,
        now_ms: int,
        out: Decoded,
        where: str,
    ) -> None:
        if not isinstance(item, dict):
            out.rejections.append(Rejection(f"{where}a reading must be a JSON object"))
            return
        if not _READING_KEYS.issuperset(item):
            extra = set(item) - _READING_KEYS
            out.rejections.append(Rejection(f"{where}unknown keys {sorted(extra)!r}"))
            return
        try:
            ts_ms = parse_ts(item.get("ts"), now_ms)
        except ValueError as exc:
            out.rejections.append(Rejection(f"{where}{exc}"))
            return
        if ts_ms > now_ms + self.limits.future_tolerance_ms:
            out.rejections.append(
                Rejection(f"{where}ts is {(ts_ms - now_ms) / 1000:.0f} s in the future")
            )
            return
        if ts_ms < MIN_TS_MS:
            out.rejections.append(Rejection(f"{where}ts is before 2000-01-01"))
            return
        seq = item.get("seq")
        if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0):
            out.rejections.append(Rejection(f"{where}seq must be a non-negative integer"))
            return
        metrics = item.get("metrics")
        if not isinstance(metrics, dict) or not metrics:
            out.rejections.append(Rejection(f"{where}'metrics' must be a non-empty object"))
            return
        spec = self.campus.get(device)
        ranges = self._ranges.get(device)
        good: dict[str, float] = {}
        for name, value in metrics.items():
            # Fast path: a registered metric, a finite number within its range.
            t = type(value)
            if ranges is not None and (t is float or t is int):
                bounds = ranges.get(name)
                if bounds is not None:
                    try:
                        f = float(value)
                    except OverflowError:
                        f = math.inf
                    if bounds[0] <= f <= bounds[1]:  # NaN and inf fail this too
                        good[name] = f
                        continue
            if not is_metric_name(name):
                out.rejections.append(
                    Rejection(
                        f"{where}metric name {name[:80]!r} is not allowed "
                        "(use [A-Za-z_][A-Za-z0-9_]*)"
                    )
                )
                continue
            if isinstance(value, bool):
                value = float(value)
            if not isinstance(value, int | float):
                out.rejections.append(
                    Rejection(f"{where}metric {name!r} is not a number ({type(value).__name__})")
                )
                continue
            try:
                f = float(value)
            except OverflowError:
                f = math.inf
            if not math.isfinite(f):
                out.rejections.append(Rejection(f"{where}metric {name!r} is not finite"))
                continue
            if spec is not None:
                ms = spec.metrics.get(name)
                if ms is None:
                    out.rejections.append(
                        Rejection(
                            f"{where}metric {name!r} is not one of device {device!r}'s metrics"
                        )
                    )
                    continue
                if not ms.min <= f <= ms.max:
                    out.rejections.append(
                        Rejection(
                            f"{where}metric {name!r} = {f:g} {ms.unit} outside valid range "
                            f"[{ms.min:g}, {ms.max:g}]"
                        )
                    )
                    continue
            good[name] = f
        if good:
            out.readings.append(Reading(building, kind, device, ts_ms, good, seq))
