"""Fault injection: deterministic faults applied to the simulator's readings.

A :class:`FaultInjector` sits between :meth:`CampusSimulator.readings_at` and
whatever consumes the readings, so rule scenarios can break a pipe or trip a
chiller at a known time and check the alerts. It is given every tick in
ascending order and returns what the devices publish at that tick (always
fresh dicts; the simulator's are never touched) plus online/offline status
transitions.

Metering stays physical: a leak adds its flow to every meter above the leaking
one and the volume counters integrate it; a dead feeder zeroes its subtree,
holds its energy counters and takes its load off the meters above, so parents
remain the sum of their children unless a fault (``balance_loss``) is meant to
break that. Changed values are clipped to their metric's registered range.

The slow faults (``creep``, ``weekday_shape``, ``efficiency_loss``) are for the
anomaly model rather than the rules: they scale a load instead of adding to it.
A scaled meter's sub-meters are scaled with it and the meters above carry the
change, so every parent stays the sum of its children and no balance rule sees
it; the counters integrate the changed rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from campus.registry import Campus, Device
from simulators.engine import SQRT3

Reading = tuple[Device, dict[str, float]]

FAULT_KINDS: dict[str, str] = {
    "burst_pipe": "water: large extra flow on the meter and every meter above it; pressure drops",
    "slow_leak": "water: small constant extra flow (night flow) on the meter and the meters above",
    "balance_loss": "water or power parent meter: reads more than the sum of its sub-meters",
    "chiller_trip": "chiller: stops (no power, fan off); supply temperature rises to return",
    "fan_failure": "hvac: the fan stops; supply temperature drifts to mixed (or return) air",
    "setpoint_drift": "hvac: supply temperature drifts away from its setpoint",
    "overheating": "dorm: room temperature keeps rising",
    "co2_buildup": "dorm: CO2 keeps rising",
    "smoke": "dorm: the smoke detector trips",
    "feeder_outage": "power: the meter and everything below it dead; meters above lose its load",
    "counter_reset": "power or water: the cumulative counter restarts from 0 (permanent)",
    "stuck": "any: the sensor freezes and repeats its first reading of the fault",
    "offline": "any: the device publishes nothing; status offline at start, online at end",
    "creep": "power or water: the load grows by a percentage a day since the start, up to a cap",
    "weekday_shape": "power or water: the load stays high on weekday nights (22:00-06:00 local)",
    "efficiency_loss": "hvac with power_kw: draws more power for the same duty, ramped in",
}

FAULT_TARGETS: dict[str, tuple[str, ...]] = {
    "burst_pipe": ("water",),
    "slow_leak": ("water",),
    "balance_loss": ("water", "power"),
    "chiller_trip": ("hvac",),
    "fan_failure": ("hvac",),
    "setpoint_drift": ("hvac",),
    "overheating": ("dorm",),
    "co2_buildup": ("dorm",),
    "smoke": ("dorm",),
    "feeder_outage": ("power",),
    "counter_reset": ("power", "water"),
    "creep": ("power", "water"),
    "weekday_shape": ("power", "water"),
    "efficiency_loss": ("hvac",),
}
"""Device kinds each fault fits; a fault missing here fits any device."""

FAULT_PARAMS: dict[str, dict[str, float]] = {
    "burst_pipe": {"extra_lpm": 400.0, "pressure_drop_kpa": 120.0},
    "slow_leak": {"extra_lpm": 6.0, "pressure_drop_kpa": 0.0},
    "balance_loss": {"extra_lpm": 60.0, "extra_kw": 40.0},
    "chiller_trip": {"ramp_s": 900.0},
    "fan_failure": {"ramp_s": 600.0},
    "setpoint_drift": {"rate_c_per_h": 1.5, "max_c": 8.0},
    "overheating": {"rate_c_per_h": 3.0, "max_c": 12.0},
    "co2_buildup": {"rate_ppm_per_h": 800.0, "max_ppm": 4000.0},
    "smoke": {},
    "feeder_outage": {},
    "counter_reset": {},
    "stuck": {},
    "offline": {},
    "creep": {"rate_pct_per_day": 5.0, "max_pct": 30.0},
    "weekday_shape": {"night_factor": 2.5},
    "efficiency_loss": {"loss_pct": 25.0, "ramp_h": 24.0},
}
"""Parameters and their defaults by fault kind (``balance_loss``: extra_lpm on
water meters, extra_kw on power meters; ``ramp_h`` 0 is a step)."""

BALANCE_PARAM = {"water": "extra_lpm", "power": "extra_kw"}
SIGNED_PARAMS = frozenset({"rate_c_per_h"})
NIGHT_HOURS = (22, 6)
"""Local hours of the night for ``weekday_shape``: from the first (inclusive) to the second."""
DIGITS: dict[str, int] = {
    "energy_kwh": 3,
    "volume_m3": 4,
    "co2_ppm": 0,
    "pressure_kpa": 1,
    "voltage_v": 1,
    "current_a": 2,
}


@dataclass(frozen=True)
class Meter:
    """How a metering kind integrates its rate into its counter."""

    rate: str
    counter: str
    per_second: float


METERS = {
    "power": Meter("power_kw", "energy_kwh", 1 / 3600),
    "water": Meter("flow_lpm", "volume_m3", 1 / 60_000),
}


@dataclass(frozen=True)
class Fault:
    """One fault: what hits which device, from ``start`` (inclusive) to ``end`` (exclusive)."""

    device: str
    kind: str
    start: int
    end: int | None = None
    params: Mapping[str, float] = field(default_factory=dict)

    def active(self, t: int) -> bool:
        """Whether the fault is in effect at epoch second ``t``."""
        return self.start <= t and (self.end is None or t < self.end)

    def describe(self, index: int | None = None) -> str:
        """A short name for messages: ``fault #2 (burst_pipe on 'wm-teach-1')``."""
        number = "" if index is None else f" #{index}"
        return f"fault{number} ({self.kind} on {self.device!r})"


@dataclass
class Injected:
    """What devices publish at one tick, and the status transitions at that tick."""

    readings: list[Reading]
    status: list[tuple[Device, bool]]


@dataclass
class _Plan:
    """A validated fault: defaults filled in, its metering tree resolved, its state."""

    fault: Fault
    device: Device
    params: dict[str, float]
    ancestors: list[str]
    descendants: list[str]
    frozen: dict[str, float] | None = None
    started: bool = False
    finished: bool = False


@dataclass
class _Counter:
    """One device counter: the last simulated and published values and the offset between."""

    last_t: int
    last_sim: float
    last_pub: float
    offset: float = 0.0


@dataclass
class _Tick:
    """Working state of one :meth:`FaultInjector.apply` call."""

    t: int
    sim: dict[str, dict[str, float]]
    out: dict[str, dict[str, float]]
    sim_delta: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)
    hold: set[str] = field(default_factory=set)
    reset: set[str] = field(default_factory=set)
    dead_roots: set[str] = field(default_factory=set)


class FaultInjector:
    """Applies a fixed list of faults to the simulator's readings, tick by tick."""

    def __init__(self, campus: Campus, faults: Sequence[Fault]) -> None:
        self.campus = campus
        self.faults = tuple(faults)
        problems: list[str] = []
        self._plans: list[_Plan] = []
        for i, fault in enumerate(self.faults):
            plan, issues = self._check(fault)
            problems += [f"{fault.describe(i)}: {issue}" for issue in issues]
            if plan is not None and not issues:
                self._plans.append(plan)
        if problems:
            raise ValueError("\n".join(problems))
        self._counters: dict[tuple[str, str], _Counter] = {}
        self._pending: dict[str, float] = {}
        self._seen: dict[str, dict[str, float]] = {}
        self._last_t: int | None = None
        self._handlers: dict[str, Callable[[_Plan, _Tick], None]] = {
            "burst_pipe": self._leak,
            "slow_leak": self._leak,
            "balance_loss": self._balance_loss,
            "chiller_trip": self._chiller_trip,
            "fan_failure": self._fan_failure,
            "setpoint_drift": self._setpoint_drift,
            "overheating": self._overheating,
            "co2_buildup": self._co2_buildup,
            "smoke": self._smoke,
            "feeder_outage": self._feeder_outage,
            "counter_reset": self._counter_reset,
            "creep": self._creep,
            "weekday_shape": self._weekday_shape,
            "efficiency_loss": self._efficiency_loss,
        }
        self._tz = ZoneInfo(campus.timezone)

    # ----------------------------------------------------------------- public

    def apply(self, t: int, due: list[Reading]) -> Injected:
        """The readings published at ``t`` (from the simulator's ``due``) and status changes."""
        if self._last_t is not None and t <= self._last_t:
            raise ValueError(f"apply: ticks must ascend (got {t} after {self._last_t})")
        self._last_t = t
        tick = _Tick(t, {d.id: m for d, m in due}, {d.id: dict(m) for d, m in due})
        self._measure(tick)
        live = [p for p in self._plans if self._in_effect(p, t)]
        feeders = {p.device.id for p in live if p.fault.kind == "feeder_outage"}
        tick.dead_roots = {f for f in feeders if not any(a in feeders for a in self._up(f))}
        for plan in live:
            handler = self._handlers.get(plan.fault.kind)
            if handler is not None:
                handler(plan, tick)
        self._settle_counters(tick)
        for plan in live:
            if plan.fault.kind == "stuck" and plan.device.id in tick.out:
                if plan.frozen is None:
                    plan.frozen = dict(tick.out[plan.device.id])
                else:
                    tick.out[plan.device.id] = dict(plan.frozen)
        for d, m in due:
            self._seen[d.id] = m
        silent = {p.device.id for p in live if p.fault.kind == "offline"}
        readings = [(d, tick.out[d.id]) for d, _ in due if d.id not in silent]
        return Injected(readings, self._status(t))

    # ------------------------------------------------------------- validation

    def _check(self, fault: Fault) -> tuple[_Plan | None, list[str]]:
        """The fault's plan and every problem with it."""
        issues: list[str] = []
        if fault.kind not in FAULT_KINDS:
            issues.append(f"unknown fault kind {fault.kind!r}; known: {', '.join(FAULT_KINDS)}")
        device = self.campus.get(fault.device)
        if device is None:
            issues.append(f"unknown device {fault.device!r}")
        if fault.end is not None and fault.end <= fault.start:
            issues.append(f"end ({fault.end}) must be after start ({fault.start})")
        if device is None or issues:
            return None, issues
        kind = fault.kind
        targets = FAULT_TARGETS.get(kind)
        if targets is not None and device.kind not in targets:
            issues.append(
                f"{kind} fits {' or '.join(targets)} devices, "
                f"but {device.id!r} is a {device.kind} device"
            )
            return None, issues
        issues += self._fit(fault, device)
        defaults = dict(FAULT_PARAMS[kind])
        if kind == "balance_loss":
            name = BALANCE_PARAM[device.kind]
            defaults = {name: defaults[name]}
        unknown = sorted(set(fault.params) - set(defaults))
        if unknown:
            takes = ", ".join(f"{k} (default {v:g})" for k, v in defaults.items()) or "no params"
            issues.append(
                f"unknown param(s) {', '.join(unknown)} for {device.kind}; {kind} takes {takes}"
            )
        params = defaults | {k: v for k, v in fault.params.items() if k in defaults}
        for name, value in params.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                issues.append(f"param {name} must be a number, not {value!r}")
            elif not math.isfinite(value):
                issues.append(f"param {name} must be finite, not {value}")
            elif name == "ramp_s" and value <= 0:
                issues.append(f"param ramp_s must be positive, not {value:g}")
            elif value < 0 and name not in SIGNED_PARAMS:
                issues.append(f"param {name} must not be negative, not {value:g}")
        plan = _Plan(fault, device, params, self._up(device.id), self._down(device.id))
        return plan, issues

    def _fit(self, fault: Fault, device: Device) -> list[str]:
        """Problems with fitting this fault kind to this particular device."""
        kind = fault.kind
        if kind == "chiller_trip" and device.model != "chiller":
            return [f"chiller_trip fits chillers, but {device.id!r} is a {device.model} device"]
        if kind == "fan_failure" and "fan_on" not in device.metrics:
            return [f"fan_failure needs a fan_on metric, which {device.id!r} does not have"]
        if kind == "balance_loss" and device.id not in self.campus.children:
            return [f"balance_loss needs a parent meter, but {device.id!r} has no sub-meters"]
        if kind == "efficiency_loss" and "power_kw" not in device.metrics:
            return [
                f"efficiency_loss fits hvac devices that draw power (with a power_kw metric), "
                f"but {device.id!r} has no power_kw"
            ]
        if kind in ("creep", "weekday_shape") and METERS[device.kind].rate not in device.metrics:
            rate = METERS[device.kind].rate
            return [f"{kind} scales a {rate} metric, which {device.id!r} does not have"]
        if kind == "counter_reset":
            if fault.end is not None:
                return [f"counter_reset is permanent; leave end unset (got end={fault.end})"]
            if METERS[device.kind].counter not in device.metrics:
                return [f"{device.id!r} has no {METERS[device.kind].counter} counter to reset"]
        return []

    def _up(self, device_id: str) -> list[str]:
        """Ids of the meters above ``device_id``, nearest first."""
        out: list[str] = []
        cur = self.campus.get(device_id)
        while cur is not None and cur.parent and cur.parent not in out:
            out.append(cur.parent)
            cur = self.campus.get(cur.parent)
        return out

    def _down(self, device_id: str) -> list[str]:
        """Ids of every meter below ``device_id``."""
        out: list[str] = []
        todo = [device_id]
        while todo:
            for child in self.campus.children.get(todo.pop(), []):
                if child.id not in out:
                    out.append(child.id)
                    todo.append(child.id)
        return out

    # ---------------------------------------------------------------- ticking

    @staticmethod
    def _in_effect(plan: _Plan, t: int) -> bool:
        if plan.fault.kind == "counter_reset":
            return t >= plan.fault.start
        return plan.fault.active(t)

    def _measure(self, tick: _Tick) -> None:
        """How much each due meter's simulated counter grew since its last reading."""
        for dev_id, m in tick.sim.items():
            meter = self._meter(dev_id)
            if meter is None or meter.counter not in m:
                continue
            state = self._counters.get((dev_id, meter.counter))
            tick.sim_delta[dev_id] = 0.0 if state is None else m[meter.counter] - state.last_sim

    def _settle_counters(self, tick: _Tick) -> None:
        """Publish every due counter as the simulated value plus its accumulated offset."""
        for dev_id, m in tick.out.items():
            device = self.campus.get(dev_id)
            if device is None:
                continue
            meter = METERS.get(device.kind)
            for name, spec in device.metrics.items():
                if not spec.counter or name not in m:
                    continue
                sim = tick.sim[dev_id][name]
                state = self._counters.get((dev_id, name))
                if state is None:
                    state = _Counter(tick.t, sim, sim)
                    self._counters[dev_id, name] = state
                offset = state.offset
                if meter is not None and name == meter.counter:
                    offset += self._pending.pop(dev_id, 0.0)
                    offset += (
                        tick.extra.get(dev_id, 0.0) * (tick.t - state.last_t) * meter.per_second
                    )
                if dev_id in tick.hold:
                    offset = state.last_pub - sim
                if dev_id in tick.reset:
                    offset = -sim
                pub = sim if offset == 0.0 else self._clip(device, name, sim + offset)
                m[name] = pub
                state.last_t, state.last_sim, state.last_pub, state.offset = (
                    tick.t,
                    sim,
                    pub,
                    offset,
                )

    def _status(self, t: int) -> list[tuple[Device, bool]]:
        """Offline faults going down (first tick in effect) or back up (first tick past end)."""
        out: list[tuple[Device, bool]] = []
        for plan in self._plans:
            if plan.fault.kind != "offline":
                continue
            if not plan.started and plan.fault.active(t):
                plan.started = True
                out.append((plan.device, False))
            elif plan.started and not plan.finished and not plan.fault.active(t):
                plan.finished = True
                out.append((plan.device, True))
        return out

    # ---------------------------------------------------------------- helpers

    def _meter(self, device_id: str) -> Meter | None:
        device = self.campus.get(device_id)
        return None if device is None else METERS.get(device.kind)

    def _clip(self, device: Device, name: str, value: float) -> float:
        spec = device.metrics.get(name)
        if spec is not None:
            value = min(spec.max, max(spec.min, value))
        return round(value, DIGITS.get(name, 3))

    def _set(self, tick: _Tick, device_id: str, name: str, value: float) -> float:
        """Set a metric of a due device (clipped, rounded); return how much it changed."""
        m = tick.out.get(device_id)
        device = self.campus.get(device_id)
        if m is None or device is None or name not in m:
            return 0.0
        old = m[name]
        m[name] = self._clip(device, name, value)
        if name == "power_kw":
            self._rescale_current(m)
        return m[name] - old

    @staticmethod
    def _rescale_current(m: dict[str, float]) -> None:
        volts, pf = m.get("voltage_v", 0.0), m.get("power_factor", 0.0)
        if "current_a" in m and volts > 0 and pf > 0:
            m["current_a"] = round(max(0.0, m["power_kw"]) * 1000 / (SQRT3 * volts * pf), 2)

    def _add_rate(self, tick: _Tick, device_id: str, amount: float) -> None:
        """Raise a meter's rate by ``amount`` and let its counter integrate the change."""
        meter = self._meter(device_id)
        if meter is None or device_id not in tick.out:
            return
        change = self._set(tick, device_id, meter.rate, tick.out[device_id][meter.rate] + amount)
        tick.extra[device_id] = tick.extra.get(device_id, 0.0) + change

    @staticmethod
    def _hours(plan: _Plan, t: int) -> float:
        return (t - plan.fault.start) / 3600

    @staticmethod
    def _ramp(plan: _Plan, t: int) -> float:
        return min(1.0, (t - plan.fault.start) / plan.params["ramp_s"])

    # ------------------------------------------------------------------ kinds

    def _leak(self, plan: _Plan, tick: _Tick) -> None:
        dev = plan.device.id
        for target in [dev, *plan.ancestors]:
            self._add_rate(tick, target, plan.params["extra_lpm"])
        m = tick.out.get(dev)
        if m is not None and "pressure_kpa" in m:
            self._set(
                tick, dev, "pressure_kpa", m["pressure_kpa"] - plan.params["pressure_drop_kpa"]
            )

    def _balance_loss(self, plan: _Plan, tick: _Tick) -> None:
        self._add_rate(tick, plan.device.id, plan.params[BALANCE_PARAM[plan.device.kind]])

    def _chiller_trip(self, plan: _Plan, tick: _Tick) -> None:
        dev = plan.device.id
        m = tick.out.get(dev)
        if m is None:
            return
        self._set(tick, dev, "power_kw", 0.0)
        self._set(tick, dev, "fan_on", 0.0)
        self._drift_supply(plan, tick, m.get("return_temp_c"))

    def _fan_failure(self, plan: _Plan, tick: _Tick) -> None:
        dev = plan.device.id
        m = tick.out.get(dev)
        if m is None:
            return
        for name in ("fan_on", "fan_speed_pct", "static_pressure_pa"):
            self._set(tick, dev, name, 0.0)
        if "power_kw" in m:
            self._set(tick, dev, "power_kw", m["power_kw"] * 0.2)
        self._drift_supply(plan, tick, m.get("mixed_temp_c", m.get("return_temp_c")))

    def _drift_supply(self, plan: _Plan, tick: _Tick, target: float | None) -> None:
        """Move supply temperature linearly toward ``target`` over the fault's ramp."""
        m = tick.out[plan.device.id]
        if target is None or "supply_temp_c" not in m:
            return
        supply = m["supply_temp_c"]
        self._set(
            tick,
            plan.device.id,
            "supply_temp_c",
            supply + (target - supply) * self._ramp(plan, tick.t),
        )

    def _rise(self, plan: _Plan, tick: _Tick, name: str, rate: str, cap: str) -> None:
        """Add ``rate`` per hour since the start to a metric, at most ``cap`` in size."""
        m = tick.out.get(plan.device.id)
        if m is None or name not in m:
            return
        rise = plan.params[rate] * self._hours(plan, tick.t)
        rise = math.copysign(min(abs(rise), plan.params[cap]), rise)
        self._set(tick, plan.device.id, name, m[name] + rise)

    def _setpoint_drift(self, plan: _Plan, tick: _Tick) -> None:
        self._rise(plan, tick, "supply_temp_c", "rate_c_per_h", "max_c")

    def _overheating(self, plan: _Plan, tick: _Tick) -> None:
        self._rise(plan, tick, "temp_c", "rate_c_per_h", "max_c")

    def _co2_buildup(self, plan: _Plan, tick: _Tick) -> None:
        m = tick.out.get(plan.device.id)
        if m is None or "co2_ppm" not in m:
            return
        co2 = m["co2_ppm"]
        rise = plan.params["rate_ppm_per_h"] * self._hours(plan, tick.t)
        self._set(
            tick, plan.device.id, "co2_ppm", min(co2 + rise, max(co2, plan.params["max_ppm"]))
        )

    def _smoke(self, plan: _Plan, tick: _Tick) -> None:
        self._set(tick, plan.device.id, "smoke", 1.0)

    def _feeder_outage(self, plan: _Plan, tick: _Tick) -> None:
        dev = plan.device.id
        for target in [dev, *plan.descendants]:
            for name in ("power_kw", "current_a", "voltage_v"):
                self._set(tick, target, name, 0.0)
            tick.hold.add(target)
        if dev not in tick.dead_roots:
            return
        tick.dead_roots.discard(dev)
        normal = tick.sim.get(dev, self._seen.get(dev, {})).get("power_kw", 0.0)
        lost = tick.sim_delta.get(dev, 0.0)
        for anc in plan.ancestors:
            if anc in tick.out:
                self._set(tick, anc, "power_kw", tick.out[anc]["power_kw"] - normal)
            self._pending[anc] = self._pending.get(anc, 0.0) - lost

    def _counter_reset(self, plan: _Plan, tick: _Tick) -> None:
        if not plan.finished and plan.device.id in tick.out:
            plan.finished = True
            tick.reset.add(plan.device.id)

    def _scale_load(self, plan: _Plan, tick: _Tick, factor: float) -> None:
        """Multiply the rate of every leaf meter under (or at) the fault's meter by
        ``factor``; each leaf's change is carried by every meter above it."""
        if factor == 1.0:
            return
        rate = METERS[plan.device.kind].rate
        for leaf in [plan.device.id, *plan.descendants]:
            if leaf in self.campus.children:
                continue
            m = tick.out.get(leaf)
            if m is not None and rate in m:
                before = m[rate]
                self._add_rate(tick, leaf, before * (factor - 1))
                change = m[rate] - before
            else:
                change = self._seen.get(leaf, {}).get(rate, 0.0) * (factor - 1)
            if change:
                for anc in self._up(leaf):
                    self._add_rate(tick, anc, change)

    def _creep(self, plan: _Plan, tick: _Tick) -> None:
        days = (tick.t - plan.fault.start) / 86400
        grown = min(plan.params["max_pct"], plan.params["rate_pct_per_day"] * days)
        self._scale_load(plan, tick, 1 + grown / 100)

    def _weekday_shape(self, plan: _Plan, tick: _Tick) -> None:
        if self._weekday_night(tick.t):
            self._scale_load(plan, tick, plan.params["night_factor"])

    def _weekday_night(self, t: int) -> bool:
        """Whether ``t`` is a night hour (:data:`NIGHT_HOURS`) of a Monday to Friday,
        by the campus's local date and time."""
        local = datetime.fromtimestamp(t, UTC).astimezone(self._tz)
        late, early = NIGHT_HOURS
        return local.weekday() < 5 and (local.hour >= late or local.hour < early)

    def _efficiency_loss(self, plan: _Plan, tick: _Tick) -> None:
        m = tick.out.get(plan.device.id)
        if m is None or "power_kw" not in m:
            return
        ramp_s = plan.params["ramp_h"] * 3600
        share = 1.0 if ramp_s <= 0 else min(1.0, (tick.t - plan.fault.start) / ramp_s)
        factor = 1 + plan.params["loss_pct"] / 100 * share
        self._set(tick, plan.device.id, "power_kw", m["power_kw"] * factor)


def parse_fault_spec(spec: str, now: int) -> Fault:
    """A fault from the command line: ``DEVICE:KIND[:at=5m][:for=1h][:param=value...]``,
    ``at`` counted from ``now`` (epoch seconds; ``at=-20m`` is in the past, for a
    backfill to play) and ``for`` from ``at``."""
    from campus.timeparse import parse_duration

    parts = spec.split(":")
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(f"fault {spec!r}: use DEVICE:KIND[:at=5m][:for=1h][:param=value]")
    at, lasts, params = 0, None, {}
    for item in parts[2:]:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"fault {spec!r}: {item!r} is not key=value")
        if key in ("at", "for"):
            back = key == "at" and value.startswith("-")  # at=-20m: in the past (a backfill)
            seconds = int(parse_duration(value.removeprefix("-")).total_seconds())
            seconds = -seconds if back else seconds
            if key == "at":
                at = seconds
            else:
                lasts = seconds
            continue
        try:
            params[key] = float(value)
        except ValueError:
            raise ValueError(f"fault {spec!r}: {key} must be a number") from None
    start = now + at
    return Fault(parts[0], parts[1], start, None if lasts is None else start + lasts, params)
