"""Decode and validate MQTT messages per the contract (DESIGN.md section 3).

A message yields readings to store, at most one status event, and rejections
with a reason each. One bad metric rejects that metric only; one bad reading
in a batch rejects that reading only. Nothing here raises for bad input.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from campus.ids import KIND_RE, is_metric_name, is_tag_value
from campus.reading import Reading
from campus.registry import Campus, Device

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


class Decoded:
    """What one MQTT message turned into (a plain slotted class: one is made
    per message, and a dataclass with default factories cost twice as much)."""

    __slots__ = ("readings", "rejections", "status", "unknown_device")

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.status: StatusEvent | None = None
        self.rejections: list[Rejection] = []
        self.unknown_device = False


@dataclass(frozen=True)
class Limits:
    """Bounds on what one message may carry."""

    max_payload_bytes: int = 256 * 1024
    max_batch_readings: int = 1000
    future_tolerance_ms: int = 300_000


TOPICS_REMEMBERED = 10_000  # verdicts on topics other than registered devices' own
# building, kind, device, its registry entry (None: unregistered), a status topic?
CheckedTopic = tuple[str, str, str, "Device | None", bool]


class _BadNumber(ValueError):
    pass


def _no_constants(name: str) -> Any:
    raise _BadNumber(f"non-finite number {name} is not allowed")


_JSON = json.JSONDecoder(parse_constant=_no_constants)  # one decoder: json.loads builds one a call


# What the standard library reads and orjson refuses: the NaN and Infinity
# literals (refused with a reason of their own), numbers past a double's range
# (exponents read as infinities, refused as not finite; integers of any length,
# refused where they do not fit) and lone surrogate escapes.
_STDLIB_READS = re.compile(r"NaN|Infinity|[eE]\+?\d{3}|\d{20}|\\u[dD][89a-fA-F]")


def loads(text: str) -> Any:
    """Parse JSON with orjson (about 4x faster than the standard library).

    What orjson refuses goes to the standard library only when the text holds
    something the standard library reads; otherwise orjson's error is final,
    so malformed JSON costs one parse, not two."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        if _STDLIB_READS.search(text) is None:
            raise
        return _JSON.decode(text)


@functools.lru_cache(maxsize=256)
def _text_ts(value: str) -> int:
    """Epoch milliseconds of an RFC 3339 time; remembered, since the devices of
    one gateway send the same times (refusals are not remembered)."""
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(f"ts {value!r} is not an RFC 3339 time") from None
    if dt.tzinfo is None:
        raise ValueError(f"ts {value!r} has no time zone offset")
    delta = dt.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


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
        if len(value) > 40:
            raise ValueError("ts string too long")
        return _text_ts(value)
    raise ValueError(f"ts must be a string or a number, got {type(value).__name__}")


class Decoder:
    """Turns (topic, payload) into readings, checked against the registry."""

    def __init__(self, campus: Campus, limits: Limits | None = None) -> None:
        self.campus = campus
        self.limits = limits or Limits()
        self.kinds = set(campus.kinds)
        self._known_kinds = ", ".join(sorted(self.kinds))
        self._ranges = {
            d.id: {name: (m.min, m.max) for name, m in d.metrics.items()} for d in campus
        }
        self._topics = {d.topic: d for d in campus}
        self._checked: dict[str, CheckedTopic | Rejection] = {}  # every other topic seen

    def _check_topic(self, topic: str) -> CheckedTopic | Rejection:
        """(building, kind, device, its registry entry, a status topic?) of a
        topic that is not a registered device's own, or why it is refused."""
        parts = topic.split("/")
        if (
            len(parts) not in (4, 5)
            or parts[0] != "campus"
            or (len(parts) == 5 and parts[4] != "status")
        ):
            return Rejection("topic must be campus/{building}/{kind}/{device} or .../status")
        building, kind, device = parts[1], parts[2], parts[3]
        for what, value in (("building", building), ("device", device)):
            if not is_tag_value(value):
                return Rejection(f"{what} id {value!r} is not allowed (use [A-Za-z0-9_.-], 1-64)")
        if KIND_RE.fullmatch(kind) is None or kind not in self.kinds:
            return Rejection(f"unknown kind {kind!r} (known: {self._known_kinds})")
        known = self.campus.get(device)
        if known is not None and (known.building != building or known.kind != kind):
            return Rejection(
                f"device {device!r} is registered as {known.building}/{known.kind}, "
                f"not {building}/{kind}"
            )
        return building, kind, device, known, len(parts) == 5

    def decode(self, topic: str, payload: bytes, now_ms: int) -> Decoded:
        """Decode one message; never raises for bad input."""
        out = Decoded()
        known = self._topics.get(topic)
        if known is not None:  # a registered device's own topic: checked once, here
            building, kind, device = known.building, known.kind, known.id
            status = False
        else:
            checked = self._checked.get(topic)
            if checked is None:
                checked = self._check_topic(topic)
                if len(self._checked) >= TOPICS_REMEMBERED:
                    self._checked.clear()  # bounded: a stream of new topics cannot grow it
                self._checked[topic] = checked
            if isinstance(checked, Rejection):
                out.rejections.append(checked)
                return out
            building, kind, device, known, status = checked
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
        if status:
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
                self._reading(item, building, kind, device, known, now_ms, out, i)
        else:
            self._reading(data, building, kind, device, known, now_ms, out, None)
        return out

    def _reading(
        self,
        item: Any,
        building: str,
        kind: str,
        device: str,
        spec: Device | None,
        now_ms: int,
        out: Decoded,
        index: int | None,
    ) -> None:
        """Check one reading (``index`` is its place in a batch); the common case,
        a registered device's in-range floats with an epoch-milliseconds ``ts``,
        takes the shortest path (a batch's readings cost a few microseconds each)."""
        if type(item) is not dict:
            self._reject(out, index, "a reading must be a JSON object")
            return
        if not item.keys() <= _READING_KEYS:
            extra = set(item) - _READING_KEYS
            self._reject(out, index, f"unknown keys {sorted(extra)!r}")
            return
        ts = item.get("ts")
        if type(ts) is int and MIN_TS_MS <= ts <= now_ms:
            ts_ms = ts  # epoch milliseconds, not in the future: nothing to convert
        else:
            try:
                ts_ms = parse_ts(ts, now_ms)
            except ValueError as exc:
                self._reject(out, index, str(exc))
                return
            if ts_ms > now_ms + self.limits.future_tolerance_ms:
                self._reject(out, index, f"ts is {(ts_ms - now_ms) / 1000:.0f} s in the future")
                return
            if ts_ms < MIN_TS_MS:
                self._reject(out, index, "ts is before 2000-01-01")
                return
        seq = item.get("seq")
        if seq is not None and (type(seq) is not int or seq < 0):
            # bool is a subclass of int, not int itself: true/false are refused here
            self._reject(out, index, "seq must be a non-negative integer")
            return
        metrics = item.get("metrics")
        if type(metrics) is not dict or not metrics:
            self._reject(out, index, "'metrics' must be a non-empty object")
            return
        ranges = self._ranges.get(device) if spec is not None else None
        if ranges is not None:
            # Fastest path: every metric a registered float within its range; the
            # reading keeps the parsed object as it is.
            for name, value in metrics.items():
                if type(value) is not float:
                    break
                bounds = ranges.get(name)
                if bounds is None or not bounds[0] <= value <= bounds[1]:
                    break
            else:
                out.readings.append(Reading(building, kind, device, ts_ms, metrics, seq))
                return
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
            reason = self._bad_metric(name, value, spec, device)
            if reason is None:
                good[name] = float(value)
            else:
                self._reject(out, index, reason)
        if good:
            out.readings.append(Reading(building, kind, device, ts_ms, good, seq))

    @staticmethod
    def _reject(out: Decoded, index: int | None, reason: str) -> None:
        where = "" if index is None else f"readings[{index}]: "
        out.rejections.append(Rejection(where + reason))

    @staticmethod
    def _bad_metric(name: str, value: Any, spec: Device | None, device: str) -> str | None:
        """Why a metric the fast path did not take is refused, or None to keep it."""
        if not is_metric_name(name):
            return f"metric name {name[:80]!r} is not allowed (use [A-Za-z_][A-Za-z0-9_]*)"
        if not isinstance(value, int | float):  # bool is an int: true counts as 1.0
            return f"metric {name!r} is not a number ({type(value).__name__})"
        try:
            f = float(value)
        except OverflowError:
            f = math.inf
        if not math.isfinite(f):
            return f"metric {name!r} is not finite"
        if spec is not None:
            ms = spec.metrics.get(name)
            if ms is None:
                return f"metric {name!r} is not one of device {device!r}'s metrics"
            if not ms.min <= f <= ms.max:
                return (
                    f"metric {name!r} = {f:g} {ms.unit} outside valid range "
                    f"[{ms.min:g}, {ms.max:g}]"
                )
        return None
