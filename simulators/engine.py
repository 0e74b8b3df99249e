"""The campus simulator: every device's metrics at any event time.

Deterministic: the values at time ``t`` depend only on the seed, the registry
and ``t`` (each tick draws its noise from a generator seeded by the seed and
the tick), except cumulative counters, which start from a value derived from
the start time and then integrate their device's rate. Parent meters are the
exact sum of their children (rounded children, so the sum holds to the last
digit), and the campus main meters sum the building mains.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from campus.calendar import AcademicCalendar, Period
from campus.registry import Campus, Device
from simulators.profiles import cooling_demand, heating_demand, occupancy, outdoor_temp

COUNTER_EPOCH = 1_704_067_200  # 2024-01-01T00:00:00Z: counters read 0 then
SQRT3 = math.sqrt(3)

# Per floor, in kW: (base, occupancy-driven, HVAC-driven) by building type.
POWER_KW: dict[str, tuple[float, float, float]] = {
    "teaching": (6.0, 45.0, 25.0),
    "laboratory": (28.0, 40.0, 30.0),
    "library": (8.0, 35.0, 25.0),
    "canteen": (12.0, 110.0, 20.0),
    "sports": (10.0, 45.0, 30.0),
    "admin": (5.0, 30.0, 18.0),
    "dormitory": (4.0, 14.0, 30.0),
    "central_plant": (40.0, 0.0, 0.0),
}
# Per floor, in L/min: (base, occupancy-driven) by building type.
WATER_LPM: dict[str, tuple[float, float]] = {
    "teaching": (0.3, 18.0),
    "laboratory": (2.0, 20.0),
    "library": (0.2, 10.0),
    "canteen": (1.5, 90.0),
    "sports": (1.0, 45.0),
    "admin": (0.2, 9.0),
    "dormitory": (0.6, 30.0),
    "central_plant": (3.0, 0.0),
}
CHILLER_KW = 420.0
BOILER_AUX_KW = 18.0


def _unit(device_id: str, salt: str = "") -> float:
    """A stable number in [0, 1) for a device (crc32, so it does not vary by process)."""
    return zlib.crc32(f"{salt}:{device_id}".encode()) / 2**32


def _dorm_water_shape(local: datetime) -> float:
    """Dormitory water: morning and late-evening shower peaks on top of occupancy."""
    h = local.hour + local.minute / 60
    return (
        0.9 * math.exp(-(((h - 7.3) / 0.8) ** 2))
        + 1.0 * math.exp(-(((h - 22.2) / 1.1) ** 2))
        + 0.08
    )


class CampusSimulator:
    """Computes readings; :meth:`readings_at` is the one entry point."""

    def __init__(
        self,
        campus: Campus,
        calendar: AcademicCalendar,
        seed: int = 42,
        only: set[str] | None = None,
    ) -> None:
        self.campus = campus
        self.calendar = calendar
        self.seed = seed
        self.tz = ZoneInfo(campus.timezone)
        self.step = math.gcd(*(int(d.interval_s) for d in campus)) or 60
        depth: dict[str, int] = {}
        for d in campus:
            n, cur = 0, d
            while cur.parent:
                n += 1
                parent = campus.get(cur.parent)
                if parent is None:
                    break
                cur = parent
            depth[d.id] = n
        # Leaves first, then parents from the deepest level up, so sums are ready.
        children = campus.children
        self.leaves = [d for d in campus if d.id not in children]
        self.parents = sorted((d for d in campus if d.id in children), key=lambda d: -depth[d.id])
        self.btype = {b.id: b.type.value for b in campus.buildings.values()}
        self._counters: dict[str, dict[str, float]] = {}
        self._last_t: int | None = None
        self._ctx: dict[str, float] = {}
        self._blocks: dict[str, float] = {}
        self._blocks_at: int | None = None
        self.needed = None if only is None else self._needed(only)

    def _needed(self, only: set[str]) -> set[str]:
        """``only`` plus what its values are computed from: the meters below a
        parent meter, and the central plant's HVAC for the plant's own meters."""
        needed = set(only)
        stack = [d for d in only if d in self.campus.children]
        while stack:
            for child in self.campus.children.get(stack.pop(), []):
                if child.id not in needed:
                    needed.add(child.id)
                    stack.append(child.id)
        plant = {b for b, kind in self.btype.items() if kind == "central_plant"}
        if any(d.building in plant and d.kind == "power" for d in self.campus if d.id in needed):
            needed |= {d.id for d in self.campus if d.building in plant and d.kind == "hvac"}
        return needed

    # ----------------------------------------------------------------- public

    def first_tick(self, start: float) -> int:
        """The first tick at or after ``start`` (epoch seconds)."""
        return int(math.ceil(start / self.step) * self.step)

    def readings_at(self, t: int) -> list[tuple[Device, dict[str, float]]]:
        """Every device due at epoch second ``t`` with its metrics (ticks ascend)."""
        rng = random.Random(self.seed * 1_000_003 + t)
        utc = datetime.fromtimestamp(t, UTC)
        local = utc.astimezone(self.tz)
        period, closed = self.calendar.day(local.date())
        t_out = outdoor_temp(t, local, self.seed)
        ctx = {"t_out": t_out, "cool": cooling_demand(t_out), "heat": heating_demand(t_out)}
        values: dict[str, dict[str, float]] = {}
        plant_kw = 0.0
        # HVAC plant first: its power feeds the plant's own meter.
        needed = self.needed
        for d in self.leaves:
            if d.kind == "hvac" and (needed is None or d.id in needed):
                values[d.id] = self._hvac(d, local, period, closed, ctx, rng)
                if self.btype[d.building] == "central_plant":
                    plant_kw += values[d.id]["power_kw"]
        ctx["plant_kw"] = plant_kw
        for d in self.leaves:
            if needed is not None and d.id not in needed:
                continue
            if d.parent is None and t % int(d.interval_s) and d.kind != "hvac":
                continue  # not due, and no parent meter sums it: nothing to compute
            if d.kind == "power":
                values[d.id] = self._power_leaf(d, local, period, closed, ctx, rng)
            elif d.kind == "water":
                values[d.id] = self._water_leaf(d, local, period, closed, ctx, rng)
            elif d.kind == "dorm":
                values[d.id] = self._dorm(d, t, local, period, closed, ctx, rng)
        for d in self.parents:
            if needed is not None and d.id not in needed:
                continue
            kids = [values[c.id] for c in self.campus.children[d.id] if c.id in values]
            values[d.id] = self._parent(d, kids, rng)
        self._advance_counters(t, values)
        due = []
        for d in self.campus:
            if t % int(d.interval_s) == 0 and d.id in values:
                due.append((d, values[d.id]))
        return due

    # --------------------------------------------------------------- counters

    def _advance_counters(self, t: int, values: dict[str, dict[str, float]]) -> None:
        """Integrate power and flow into the cumulative counters, leaves then parents."""
        dt = 0 if self._last_t is None else t - self._last_t
        self._last_t = t
        for d in self.leaves:
            if d.id not in values:
                continue
            if d.kind == "power":
                self._integrate(d, t, values[d.id], "energy_kwh", "power_kw", dt / 3600, 3)
            elif d.kind == "water":
                self._integrate(d, t, values[d.id], "volume_m3", "flow_lpm", dt / 60 / 1000, 4)
        for d in self.parents:
            if d.id not in values:
                continue
            name, digits = ("energy_kwh", 3) if d.kind == "power" else ("volume_m3", 4)
            total = sum(values[c.id][name] for c in self.campus.children[d.id])
            values[d.id][name] = round(total, digits)

    def _integrate(
        self,
        d: Device,
        t: int,
        v: dict[str, float],
        counter: str,
        rate: str,
        scale: float,
        digits: int,
    ) -> None:
        state = self._counters.get(d.id)
        if state is None:
            # Start as if the device had run at about its typical rate since 2024.
            typical = v[rate] * (0.6 + 0.3 * _unit(d.id, "counter"))
            hours = max(0.0, (t - COUNTER_EPOCH) / 3600)
            per_hour = typical * (1.0 if counter == "energy_kwh" else 60 / 1000)
            state = {counter: round(per_hour * hours, digits)}
            self._counters[d.id] = state
        else:
            state[counter] = round(state[counter] + v[rate] * scale, digits)
        v[counter] = state[counter]

    # ----------------------------------------------------------------- kinds

    def _occ(self, d: Device, local: datetime, period: Period, closed: bool) -> float:
        return occupancy(self.btype[d.building], local, period, closed)

    def _power_leaf(
        self,
        d: Device,
        local: datetime,
        period: Period,
        closed: bool,
        ctx: dict[str, float],
        rng: random.Random,
    ) -> dict[str, float]:
        btype = self.btype[d.building]
        scale = d.sim.get("scale", 1.0) * (0.85 + 0.3 * _unit(d.id, "size"))
        if btype == "central_plant":
            kw = POWER_KW[btype][0] + ctx["plant_kw"]
        else:
            base, occ_kw, hvac_kw = POWER_KW[btype]
            occ = self._occ(d, local, period, closed)
            climate = ctx["cool"] + 0.5 * ctx["heat"]
            kw = scale * (base + occ_kw * occ + hvac_kw * climate * (0.3 + 0.7 * occ))
        kw = max(0.0, kw * (1 + 0.03 * rng.gauss(0, 1)))
        return self._electrics(kw, scale * 120, rng)

    def _electrics(self, kw: float, rated_kw: float, rng: random.Random) -> dict[str, float]:
        load = min(1.0, kw / max(rated_kw, 1.0))
        volts = 380.0 + 3.0 * rng.gauss(0, 1) - 6.0 * load
        pf = min(0.99, 0.86 + 0.1 * load + 0.01 * rng.gauss(0, 1))
        amps = kw * 1000 / (SQRT3 * volts * pf)
        return {
            "power_kw": round(kw, 3),
            "voltage_v": round(volts, 1),
            "current_a": round(amps, 2),
            "power_factor": round(pf, 3),
        }

    def _water_leaf(
        self,
        d: Device,
        local: datetime,
        period: Period,
        closed: bool,
        ctx: dict[str, float],
        rng: random.Random,
    ) -> dict[str, float]:
        btype = self.btype[d.building]
        scale = d.sim.get("scale", 1.0) * (0.85 + 0.3 * _unit(d.id, "size"))
        base, peak = WATER_LPM[btype]
        occ = self._occ(d, local, period, closed)
        if btype == "dormitory":
            occ = occ * _dorm_water_shape(local)
        if btype == "central_plant":
            lpm = base + 140.0 * ctx["cool"]  # cooling-tower make-up water
        else:
            lpm = scale * (base + peak * occ)
        lpm = max(0.0, lpm * (1 + 0.06 * rng.gauss(0, 1)))
        floor = d.floor or 1
        kpa = 420.0 - 11.0 * floor - 25.0 * occ + 4.0 * rng.gauss(0, 1)
        return {"flow_lpm": round(lpm, 3), "pressure_kpa": round(kpa, 1)}

    def _parent(
        self, d: Device, kids: list[dict[str, float]], rng: random.Random
    ) -> dict[str, float]:
        if d.kind == "power":
            kw = round(sum(k["power_kw"] for k in kids), 3)
            return self._electrics(kw, 120.0 * max(1, len(kids)) * 2, rng)
        lpm = round(sum(k["flow_lpm"] for k in kids), 3)
        kpa = 450.0 - 0.02 * lpm + 3.0 * rng.gauss(0, 1)
        return {"flow_lpm": lpm, "pressure_kpa": round(kpa, 1)}

    def _hvac(
        self,
        d: Device,
        local: datetime,
        period: Period,
        closed: bool,
        ctx: dict[str, float],
        rng: random.Random,
    ) -> dict[str, float]:
        model = d.model or ""
        if model == "chiller":
            return self._chiller(d, ctx, rng)
        if model == "boiler":
            return self._boiler(d, ctx, rng)
        occ = self._occ(d, local, period, closed)
        t_out = ctx["t_out"]
        cooling = t_out > 18.0
        setpoint = 25.0 if cooling else 21.0
        scale = d.sim.get("scale", 1.0)
        on = occ > 0.12 or (model == "fresh_air_unit" and period != Period.holidays)
        g = rng.gauss
        ret = setpoint + (1.2 * occ if cooling else -0.8 + 0.8 * occ) + 0.3 * g(0, 1)
        if not on:
            ret = setpoint + 0.35 * (t_out - setpoint) + 0.2 * g(0, 1)
        if model == "fresh_air_unit":
            supply = (setpoint - 6 if cooling else setpoint + 4) if on else ret
            kw = (4.0 + 3.0 * occ) if on else 0.0
            return {
                "supply_temp_c": round(supply + 0.3 * g(0, 1), 2),
                "return_temp_c": round(ret, 2),
                "setpoint_c": setpoint,
                "fan_on": 1.0 if on else 0.0,
                "power_kw": round(kw, 3),
            }
        # Air handler (ASHRAE G36-style sequences, simplified).
        if on:
            econ = 12.0 <= t_out <= 20.0
            damper = 100.0 if econ else 20.0 + 10.0 * occ
            supply_sp = 13.0 if cooling or econ else 30.0
            mixed = damper / 100 * t_out + (1 - damper / 100) * ret
            cool_valve = max(0.0, min(100.0, (mixed - supply_sp) * 9.0))
            heat_valve = max(0.0, min(100.0, (supply_sp - mixed) * 6.0))
            fan = 45.0 + 45.0 * occ
            supply = supply_sp + 0.3 * g(0, 1)
            static_sp = 250.0
            static = static_sp + 8.0 * g(0, 1)
            kw = scale * (2.0 + 16.0 * (fan / 100) ** 3)
        else:
            damper, cool_valve, heat_valve, fan = 0.0, 0.0, 0.0, 0.0
            mixed, supply, static, static_sp, kw = ret, ret + 0.2 * g(0, 1), 0.0, 250.0, 0.0
        return {
            "supply_temp_c": round(supply, 2),
            "return_temp_c": round(ret, 2),
            "setpoint_c": setpoint,
            "fan_on": 1.0 if on else 0.0,
            "power_kw": round(kw, 3),
            "mixed_temp_c": round(mixed + 0.2 * g(0, 1), 2),
            "outdoor_temp_c": round(t_out + 0.2 * g(0, 1), 2),
            "oa_damper_pct": round(damper, 1),
            "heating_valve_pct": round(heat_valve, 1),
            "cooling_valve_pct": round(cool_valve, 1),
            "fan_speed_pct": round(fan, 1),
            "static_pressure_pa": round(max(0.0, static), 1),
            "static_setpoint_pa": static_sp,
        }

    def _chiller(self, d: Device, ctx: dict[str, float], rng: random.Random) -> dict[str, float]:
        stage = int(d.sim.get("stage", 1))
        load = ctx["cool"] * 3.0 - (stage - 1)  # stages share the load in turn
        running = load > 0.05 or (stage == 1 and ctx["t_out"] > 20.0)
        part = max(0.3, min(1.0, load)) if running else 0.0
        g = rng.gauss
        if running:
            supply = 7.0 + 0.2 * g(0, 1)
            ret = 7.0 + 5.0 * part + 0.3 * g(0, 1)
            kw = CHILLER_KW * (0.2 + 0.8 * part) * (1 + 0.02 * g(0, 1))
        else:
            supply = ret = 14.0 + 0.1 * (ctx["t_out"] - 14.0) + 0.2 * g(0, 1)
            kw = 0.0
        return {
            "supply_temp_c": round(supply, 2),
            "return_temp_c": round(ret, 2),
            "setpoint_c": 7.0,
            "fan_on": 1.0 if running else 0.0,
            "power_kw": round(kw, 3),
        }

    def _boiler(self, d: Device, ctx: dict[str, float], rng: random.Random) -> dict[str, float]:
        stage = int(d.sim.get("stage", 1))
        load = ctx["heat"] * 2.0 - (stage - 1)
        running = load > 0.05
        part = max(0.3, min(1.0, load)) if running else 0.0
        g = rng.gauss
        if running:
            supply = 70.0 + 0.8 * g(0, 1)
            ret = 70.0 - 15.0 * part + 0.6 * g(0, 1)
            kw = BOILER_AUX_KW * (0.4 + 0.6 * part)
        else:
            supply = ret = 25.0 + 0.3 * g(0, 1)
            kw = 0.0
        return {
            "supply_temp_c": round(supply, 2),
            "return_temp_c": round(ret, 2),
            "setpoint_c": 70.0,
            "fan_on": 1.0 if running else 0.0,
            "power_kw": round(kw, 3),
        }

    def _block_draw(self, device: str, block: int) -> float:
        """A room's uniform draw for one half-hour block (seeding a generator from a
        string hashes it; every room asks at every tick of the block)."""
        if self._blocks_at != block:
            self._blocks, self._blocks_at = {}, block
        u = self._blocks.get(device)
        if u is None:
            u = self._blocks[device] = random.Random(f"{self.seed}:{device}:{block}").random()
        return u

    def _dorm(
        self,
        d: Device,
        t: int,
        local: datetime,
        period: Period,
        closed: bool,
        ctx: dict[str, float],
        rng: random.Random,
    ) -> dict[str, float]:
        p = self._occ(d, local, period, closed)
        # Presence changes per half hour, not per reading: seed by room and block.
        present = self._block_draw(d.id, t // 1800) < p
        pref = 24.5 + 2.0 * _unit(d.id, "pref")  # this room's preferred AC setting
        t_out = ctx["t_out"]
        g = rng.gauss
        free = 22.0 + 0.45 * (t_out - 22.0)
        if present and t_out > 27.0:
            temp = pref + 0.4 * g(0, 1)
        elif present and t_out < 10.0:
            temp = pref - 4.5 + 0.5 * g(0, 1)
        else:
            temp = free + 1.0 * (_unit(d.id, "sun") - 0.5) + 0.3 * g(0, 1)
        season = math.sin(2 * math.pi * (local.timetuple().tm_yday - 100) / 365.25)
        humidity = 62.0 + 14.0 * season + (4.0 if present else 0.0) + 3.0 * g(0, 1)
        night = local.hour >= 23 or local.hour < 7
        co2 = (
            430.0
            + (500.0 + 400.0 * _unit(d.id, "vent") + (350.0 if night else 0.0) if present else 40.0)
            + 30.0 * g(0, 1)
        )
        return {
            "temp_c": round(temp, 2),
            "humidity_pct": round(max(15.0, min(99.0, humidity)), 1),
            "co2_ppm": round(max(300.0, co2), 0),
            "occupancy": 1.0 if present else 0.0,
            "smoke": 0.0,
        }


ReadingSink = Callable[[Device, int, dict[str, float]], None]
