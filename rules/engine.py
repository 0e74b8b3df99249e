"""The streaming rules engine: readings in, in event time; alert events out.

Each (rule, device) pair is a :class:`Slot` holding its kind's condition, a
second condition for the clear parameters when the rule has any
(hysteresis), and the alert's state: idle, pending (true, waiting out
``for``), firing, clearing (clear, waiting out ``clear_for``). Rules are
indexed by the device whose readings feed them, so a reading touches only the
slots it concerns. Time advances with the readings' own timestamps: a
reading older than or equal to the device's latest is a duplicate or late
and changes nothing. Time-driven checks (``stale``, ``for`` and ``clear_for``
running out with no new reading) move with :meth:`Engine.advance`, called
with the watermark in replay and with the clock when live, so a week replayed
in seconds gives the alerts a week lived gives.

Alert events carry everything a ticket needs. An alert of a device whose
parent meter or feeder is alerting under a rule with ``inhibits_children`` is
marked inhibited and linked to the parent's alert instead of paging on its
own. A rule whose code raises is disabled and reported; the others go on.
"""

from __future__ import annotations

import heapq
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from campus.calendar import AcademicCalendar
from campus.registry import Campus, Device
from rules.kinds import KINDS
from rules.kinds.anomaly import AnomalyCondition, Scorer
from rules.kinds.base import Condition, Kind, Verdict
from rules.kinds.composite import CompositeCondition
from rules.kinds.stale import Stale
from rules.model import Rule, Severity

log = logging.getLogger(__name__)

IDLE, PENDING, FIRING = "idle", "pending", "firing"


def iso(ts_ms: int) -> str:
    """RFC 3339 UTC with milliseconds."""
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class AlertEvent:
    """One alert state change, as published on ``ops/alerts/{severity}/{building}``."""

    state: str  # "firing" or "resolved"
    rule: str
    device: str
    building: str
    kind: str
    metric: str | None
    value: float | None
    severity: str
    trade: str
    ts_ms: int  # event time of the change
    since_ms: int  # event time the condition began
    title: str
    text: str
    runbook: str
    dedup_key: str
    detail: str = ""
    escalated: bool = False
    inhibited_by: dict[str, str] | None = None

    @property
    def topic(self) -> str:
        """The MQTT topic (DESIGN.md section 3)."""
        return f"ops/alerts/{self.severity}/{self.building}"

    def to_json(self) -> dict[str, Any]:
        """The JSON document published and logged."""
        out = asdict(self)
        out["ts"] = iso(self.ts_ms)
        out["since"] = iso(self.since_ms)
        out["inhibited"] = self.inhibited_by is not None
        return out


@dataclass
class Slot:
    """One rule on one device: its conditions and its alert's state."""

    rule: Rule
    device: Device
    fire: Condition
    clear: Condition | None  # None: clear when ``fire`` is false
    state: str = IDLE
    since_ms: int = 0
    fired_ms: int = 0
    clear_since_ms: int | None = None
    severity: Severity = Severity.P4
    escalated: bool = False
    suppressed: bool = False  # firing inside a maintenance window: not announced
    active: bool | None = None  # the raw condition, for composites
    value: float | None = None
    detail: str = ""
    inhibited_by: dict[str, str] | None = None


@dataclass
class EngineStats:
    """Counters for logs and benchmarks."""

    readings: int = 0
    late: int = 0
    evaluations: int = 0
    events: int = 0
    disabled: dict[str, str] = field(default_factory=dict)


class Engine:
    """Evaluates ``rules`` over the campus's stream; see the module doc."""

    def __init__(
        self,
        rules: Iterable[Rule],
        campus: Campus,
        calendar: AcademicCalendar,
        scorer: Scorer | None = None,
    ) -> None:
        self.campus = campus
        self.calendar = calendar
        self.tz = ZoneInfo(campus.timezone)
        self.rules = {r.id: r for r in rules if r.enabled}
        self.scorer = scorer
        if scorer is None and any(r.kind == "anomaly" for r in self.rules.values()):
            log.info("no anomaly model loaded: anomaly rules stay silent until one is")
        self.slots: dict[tuple[str, str], Slot] = {}
        self.by_source: dict[str, list[Slot]] = {}
        self.by_status: dict[str, list[Slot]] = {}
        self.timed: dict[str, list[Slot]] = {}  # time-driven slots by device
        self._checks: list[tuple[int, tuple[str, str]]] = []  # heap: when to ask a timed slot
        self.composites: dict[str, list[Slot]] = {}
        self.waiting: dict[tuple[str, str], Slot] = {}  # pending, or firing and clearing
        # firing alerts that time alone can change: an escalation ahead, or held in maintenance
        self.timekeeping: dict[tuple[str, str], Slot] = {}
        self.last_ts: dict[str, int] = {}
        self.watermark = 0
        self.stats = EngineStats()
        self._local: tuple[int, datetime, Any] | None = None
        self.seen: dict[str, int] = {}  # when each device was last heard of (stale checks)
        self.scored: set[str] = set()  # devices an anomaly rule watches
        Stale.seen = self.seen
        for rule in self.rules.values():
            self._index(rule)

    # ----------------------------------------------------------------- set-up

    def _index(self, rule: Rule) -> None:
        kind_cls = KINDS[rule.kind]
        fire_p = kind_cls.parse(rule.params)
        clear_p = kind_cls.parse({**rule.params, **rule.clear}) if rule.clear else None
        for device in self.campus:
            if not kind_cls.applies(rule, device, self.campus):
                continue
            kind: Kind = kind_cls(rule, fire_p, device, self.campus)
            fire = kind.condition()
            clear = kind_cls(rule, clear_p, device, self.campus).condition() if clear_p else None
            for cond in (fire, clear):
                if isinstance(cond, AnomalyCondition):
                    cond.scorer = self.scorer
            slot = Slot(rule, device, fire, clear, severity=rule.severity)
            self.slots[(rule.id, device.id)] = slot
            if isinstance(fire, CompositeCondition):
                fire.lookup = self._raw
                if isinstance(clear, CompositeCondition):
                    clear.lookup = self._raw
                self.composites.setdefault(device.id, []).append(slot)
                continue
            if rule.kind == "offline":
                self.by_status.setdefault(device.id, []).append(slot)
                continue  # fed by status messages only
            if rule.kind == "anomaly":
                if self.scorer is None:
                    continue  # no model: silent (said once in the log)
                self.scored.add(device.id)
            for source in kind_cls.watched(rule, device, self.campus):
                self.by_source.setdefault(source, []).append(slot)
            if kind_cls.time_driven:
                self.timed.setdefault(device.id, []).append(slot)

    def _schedule(self, slot: Slot, now_ms: int) -> None:
        """When a time-driven slot must next be asked: when its condition could
        change, and at least every minute while its alert is not idle."""
        due = slot.fire.next_check_ms()
        if due is None:
            return  # nothing to wait for: scheduled again when the device is heard of
        if due <= now_ms:
            due = now_ms + 60_000
        elif slot.state != IDLE:
            due = min(due, now_ms + 60_000)
        heapq.heappush(self._checks, (due, (slot.rule.id, slot.device.id)))

    def _raw(self, rule: str, device: str) -> bool | None:
        slot = self.slots.get((rule, device))
        return None if slot is None else slot.active

    # ------------------------------------------------------------------ input

    def feed(
        self,
        device: str,
        ts_ms: int,
        metrics: Mapping[str, float],
        received_ms: int | None = None,
    ) -> list[AlertEvent]:
        """One reading; the alert events it causes. ``received_ms`` (live) is when
        it arrived: silence is measured from arrivals live, from event times in
        replay, so a backfill of old readings does not look like silence."""
        self.stats.readings += 1
        last = self.last_ts.get(device)
        if last is not None and ts_ms <= last:
            self.stats.late += 1  # duplicate, redelivered or late: changes nothing
            return []
        self.last_ts[device] = ts_ms
        self.seen[device] = ts_ms if received_ms is None else received_ms
        if last is None:  # first heard of: its time-driven checks start
            for slot in self.timed.get(device, ()):
                self._schedule(slot, self.seen[device])
        if ts_ms > self.watermark:
            self.watermark = ts_ms
        out: list[AlertEvent] = []
        slots = self.by_source.get(device, ())
        disabled = self.stats.disabled
        self.stats.evaluations += len(slots)
        for slot in slots:
            if disabled and slot.rule.id in disabled:
                continue
            try:
                fire = slot.fire.observe(device, ts_ms, metrics)
                clear = fire if slot.clear is None else slot.clear.observe(device, ts_ms, metrics)
                if slot.state == IDLE and (fire is None or not fire.active):
                    if fire is not None:
                        slot.active = False  # the common case: nothing to do
                    continue
                self._step(slot, ts_ms, fire, clear, out)
            except Exception as exc:  # a broken rule must not stop the others
                self._disable(slot.rule, exc)
        for slot in self.composites.get(device, ()):
            if disabled and slot.rule.id in disabled:
                continue
            verdict = _composite(slot.fire)
            quiet = verdict is None or not verdict.active
            if slot.state == IDLE and slot.clear is None and quiet:
                if verdict is not None:
                    slot.active = False
                continue
            self._evaluate(slot, ts_ms, out, _composite)
        return out

    def feed_many(
        self,
        device: str,
        readings: Sequence[tuple[int, Mapping[str, float]]],
        received_ms: int | None = None,
    ) -> list[AlertEvent]:
        """A run of one device's readings, oldest first (one MQTT message): the
        anomaly model scores them in one vectorised call, then each is fed."""
        if len(readings) > 1 and device in self.scored:
            prepare = getattr(self.scorer, "prepare", None)
            spec = self.campus.get(device)
            if prepare is not None and spec is not None:
                try:
                    prepare(spec, readings)
                except Exception:  # each reading is then scored alone, as feed() would
                    log.exception("anomaly model of %s failed on a run of readings", device)
        out: list[AlertEvent] = []
        for ts_ms, metrics in readings:
            out += self.feed(device, ts_ms, metrics, received_ms)
        return out

    def status(self, device: str, online: bool, ts_ms: int) -> list[AlertEvent]:
        """A device's status message (``campus/.../status``)."""
        out: list[AlertEvent] = []
        for slot in self.by_status.get(device, ()):
            self._evaluate(slot, ts_ms, out, lambda c: c.status(online, ts_ms))
        for slot in self.composites.get(device, ()):
            self._evaluate(slot, ts_ms, out, _composite)
        return out

    def advance(self, now_ms: int) -> list[AlertEvent]:
        """Let time pass to ``now_ms``: stale checks, and ``for`` / ``clear_for``
        running out without a new reading."""
        out: list[AlertEvent] = []
        heap = self._checks
        while heap and heap[0][0] <= now_ms:
            _, key = heapq.heappop(heap)
            slot = self.slots[key]
            self._evaluate(slot, now_ms, out, lambda c: c.at(now_ms))
            self._schedule(slot, now_ms)
        disabled = self.stats.disabled
        for slot in list(self.waiting.values()) + list(self.timekeeping.values()):
            if slot.rule.id not in disabled:
                self._step(slot, now_ms, None, None, out)
        return out

    # ------------------------------------------------------------- evaluation

    def _evaluate(self, slot: Slot, ts_ms: int, out: list[AlertEvent], ask: Any) -> None:
        rule = slot.rule
        if rule.id in self.stats.disabled:
            return
        self.stats.evaluations += 1
        try:
            fire = ask(slot.fire)
            clear = ask(slot.clear) if slot.clear is not None else fire
            self._step(slot, ts_ms, fire, clear, out)
        except Exception as exc:  # a broken rule must not stop the others
            self._disable(rule, exc)

    def _disable(self, rule: Rule, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"
        self.stats.disabled[rule.id] = reason
        for table in (self.waiting, self.timekeeping):
            for key in [k for k in table if k[0] == rule.id]:
                del table[key]
        log.error(
            "rule %r raised and is disabled until the rules are reloaded: %s", rule.id, reason
        )

    def _scheduled(self, rule: Rule, ts_ms: int) -> bool:
        if rule.schedule is None:
            return True
        minute = ts_ms // 60_000
        if self._local is None or self._local[0] != minute:
            local = datetime.fromtimestamp(minute * 60, UTC).astimezone(self.tz)
            self._local = (minute, local, self.calendar.day(local.date())[0])
        return rule.schedule.active(self._local[1], self._local[2])

    def _step(
        self,
        slot: Slot,
        ts_ms: int,
        fire: Verdict | None,
        clear: Verdict | None,
        out: list[AlertEvent],
    ) -> None:
        rule = slot.rule
        key = (rule.id, slot.device.id)
        if fire is not None:
            slot.active = fire.active
            if fire.active:
                slot.value, slot.detail = fire.value, fire.detail
            elif slot.state != FIRING:
                slot.value = fire.value
        scheduled = self._scheduled(rule, ts_ms)
        active = slot.active and scheduled
        if slot.state == IDLE:
            if fire is not None and active:
                slot.state, slot.since_ms = PENDING, ts_ms
                self.waiting[key] = slot
            else:
                return
        if slot.state == PENDING:
            if fire is not None and not active:
                slot.state = IDLE
                self.waiting.pop(key, None)
                return
            if slot.active and scheduled and ts_ms - slot.since_ms >= _ms(rule.for_):
                self._fire(slot, ts_ms, out)
            return
        # firing
        if clear is not None or not scheduled:
            is_clear = not scheduled or (clear is not None and not clear.active)
            if is_clear:
                if slot.clear_since_ms is None:
                    slot.clear_since_ms = ts_ms
                    self.waiting[key] = slot
            else:
                slot.clear_since_ms = None
                self.waiting.pop(key, None)
        if slot.clear_since_ms is not None:
            if ts_ms - slot.clear_since_ms >= _ms(rule.clear_for):
                self._resolve(slot, ts_ms, out)
            return
        maint = self._in_maintenance(slot, ts_ms)
        if slot.suppressed and not maint:
            slot.suppressed = False
            self._emit(slot, "firing", ts_ms, out)
        esc = rule.escalate
        if esc is not None and not slot.escalated and ts_ms - slot.since_ms >= _ms(esc.after):
            slot.escalated, slot.severity = True, esc.to
            if not slot.suppressed:
                self._emit(slot, "firing", ts_ms, out)
        self._keep_time(slot)

    def _in_maintenance(self, slot: Slot, ts_ms: int) -> bool:
        return any(m.covers(slot.device, ts_ms) for m in slot.rule.maintenance)

    def _fire(self, slot: Slot, ts_ms: int, out: list[AlertEvent]) -> None:
        slot.state, slot.fired_ms, slot.clear_since_ms = FIRING, ts_ms, None
        self.waiting.pop((slot.rule.id, slot.device.id), None)
        slot.severity, slot.escalated = slot.rule.severity, False
        esc = slot.rule.escalate
        if esc is not None and ts_ms - slot.since_ms >= _ms(esc.after):
            slot.severity, slot.escalated = esc.to, True
        slot.inhibited_by = self._inhibitor(slot.device)
        slot.suppressed = self._in_maintenance(slot, ts_ms)
        if not slot.suppressed:
            self._emit(slot, "firing", ts_ms, out)
        self._keep_time(slot)
        if slot.rule.inhibits_children:
            self._inhibit_descendants(slot, ts_ms, out)

    def _resolve(self, slot: Slot, ts_ms: int, out: list[AlertEvent]) -> None:
        if not slot.suppressed:
            self._emit(slot, "resolved", ts_ms, out)
        slot.state, slot.clear_since_ms, slot.suppressed = IDLE, None, False
        slot.inhibited_by = None
        self.waiting.pop((slot.rule.id, slot.device.id), None)
        self.timekeeping.pop((slot.rule.id, slot.device.id), None)

    def _keep_time(self, slot: Slot) -> None:
        """Watch a firing alert from :meth:`advance` while time alone can change it."""
        key = (slot.rule.id, slot.device.id)
        esc = slot.rule.escalate
        if slot.state == FIRING and (slot.suppressed or (esc is not None and not slot.escalated)):
            self.timekeeping[key] = slot
        else:
            self.timekeeping.pop(key, None)

    def _inhibitor(self, device: Device) -> dict[str, str] | None:
        parent = device.parent
        seen = set()
        while parent and parent not in seen:
            seen.add(parent)
            for (rid, did), s in self._firing_of(parent):
                if s.rule.inhibits_children:
                    return {"rule": rid, "device": did}
            up = self.campus.get(parent)
            parent = up.parent if up is not None else None
        return None

    def _firing_of(self, device: str) -> list[tuple[tuple[str, str], Slot]]:
        return [
            ((s.rule.id, device), s)
            for s in (
                self.by_source.get(device, [])
                + self.by_status.get(device, [])
                + self.timed.get(device, [])
            )
            if s.device.id == device and s.state == FIRING
        ]

    def _inhibit_descendants(self, parent: Slot, ts_ms: int, out: list[AlertEvent]) -> None:
        link = {"rule": parent.rule.id, "device": parent.device.id}
        stack = list(self.campus.children.get(parent.device.id, []))
        while stack:
            d = stack.pop()
            stack.extend(self.campus.children.get(d.id, []))
            for _, s in self._firing_of(d.id):
                if s.inhibited_by is None:
                    s.inhibited_by = link
                    if not s.suppressed:
                        self._emit(s, "firing", ts_ms, out)

    def _emit(self, slot: Slot, state: str, ts_ms: int, out: list[AlertEvent]) -> None:
        rule, d = slot.rule, slot.device
        fields = {
            "rule": rule.id,
            "device": d.id,
            "building": d.building,
            "kind": d.kind,
            "metric": rule.metric or "",
            "value": slot.value,
            "severity": slot.severity.value,
            "trade": rule.trade.value,
            "floor": d.floor if d.floor is not None else "",
            "room": d.room or "",
            "since": iso(slot.since_ms),
            "detail": slot.detail,
        }
        event = AlertEvent(
            state=state,
            rule=rule.id,
            device=d.id,
            building=d.building,
            kind=d.kind,
            metric=rule.metric,
            value=slot.value,
            severity=slot.severity.value,
            trade=rule.trade.value,
            ts_ms=ts_ms,
            since_ms=slot.since_ms,
            title=render(rule.title, fields),
            text=render(rule.text, fields),
            runbook=rule.runbook,
            dedup_key=render(rule.dedup_key, fields),
            detail=slot.detail,
            escalated=slot.escalated,
            inhibited_by=slot.inhibited_by,
        )
        self.stats.events += 1
        out.append(event)

    # ------------------------------------------------------------ persistence

    def snapshot(self) -> dict[str, Any]:
        """The alert state worth keeping across a restart (JSON-ready)."""
        alerts = []
        for (rid, did), s in self.slots.items():
            if s.state == IDLE:
                continue
            alerts.append(
                {
                    "rule": rid,
                    "device": did,
                    "state": s.state,
                    "since_ms": s.since_ms,
                    "fired_ms": s.fired_ms,
                    "clear_since_ms": s.clear_since_ms,
                    "severity": s.severity.value,
                    "escalated": s.escalated,
                    "suppressed": s.suppressed,
                    "value": s.value,
                    "detail": s.detail,
                    "inhibited_by": s.inhibited_by,
                }
            )
        return {"watermark": self.watermark, "last_ts": self.last_ts, "alerts": alerts}

    def restore(self, snap: Mapping[str, Any], now_ms: int | None = None) -> int:
        """Take back a :meth:`snapshot`; alerts of rules or devices gone are dropped.
        Live, ``now_ms`` counts as every known device's last arrival, so silence
        is measured from the restart. How many firing alerts were restored
        (pending ones, still waiting out their ``for``, are restored too)."""
        self.watermark = int(snap.get("watermark", 0))
        self.last_ts.update({str(k): int(v) for k, v in snap.get("last_ts", {}).items()})
        for device, ts in self.last_ts.items():
            self.seen[device] = ts if now_ms is None else now_ms
            for timed in self.timed.get(device, ()):
                self._schedule(timed, self.seen[device])
        n = 0
        for a in snap.get("alerts", []):
            slot = self.slots.get((a["rule"], a["device"]))
            if slot is None:
                continue
            slot.state = a["state"]
            slot.since_ms, slot.fired_ms = a["since_ms"], a["fired_ms"]
            slot.clear_since_ms = a["clear_since_ms"]
            slot.severity = Severity(a["severity"])
            slot.escalated, slot.suppressed = a["escalated"], a["suppressed"]
            slot.value, slot.detail = a["value"], a["detail"]
            slot.inhibited_by = a["inhibited_by"]
            slot.active = True
            if slot.state == PENDING or slot.clear_since_ms is not None:
                self.waiting[(a["rule"], a["device"])] = slot
            self._keep_time(slot)
            n += slot.state == FIRING
        return n

    def firing(self) -> list[Slot]:
        """The slots whose alerts are firing now."""
        return [s for s in self.slots.values() if s.state == FIRING]


def _composite(c: Condition) -> Verdict | None:
    assert isinstance(c, CompositeCondition)
    return c.evaluate()


def _ms(td: Any) -> int:
    return int(td.total_seconds() * 1000)


class _Fields(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def render(template: str, fields: Mapping[str, Any]) -> str:
    """Fill a title or text template; a value that cannot be formatted as asked
    (``{value:.1f}`` with no value) is shown plainly instead of failing."""
    if not template:
        return ""
    try:
        return template.format_map(_Fields(fields))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return _FIELD.sub(lambda m: _plain(fields.get(m.group(1), m.group(0))), template)


_FIELD = re.compile(r"\{(\w+)[^}]*\}")


def _plain(value: Any) -> str:
    return "" if value is None else str(value)
