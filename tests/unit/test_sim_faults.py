"""Unit tests of ``simulators/faults.py`` (fault injection for rule scenarios).

The demo campus and a seeded simulator are run once per scenario; every test
feeds the recorded ticks through its own :class:`FaultInjector` and compares
what devices publish with the unfaulted readings at the same tick: leaks on
the meter and every meter above it with consistent volume counters, a parent
meter out of balance with its sub-meters, a dead feeder and its subtree, HVAC
and dorm faults with their ramps and caps, counter resets, frozen sensors,
offline devices with their status transitions, values inside their ranges,
input never mutated, and validation messages that name the problem.
"""

from __future__ import annotations

import copy
import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from simulators.engine import CampusSimulator
from simulators.faults import FAULT_KINDS, FAULT_PARAMS, Fault, FaultInjector

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(*args: int) -> int:
    """Epoch seconds of a Shanghai wall-clock time."""
    return int(datetime(*args, tzinfo=SHANGHAI).timestamp())


T0 = local(2026, 10, 20, 8)  # Tuesday morning in term: AHUs and dorms busy
SUMMER = local(2026, 7, 15, 14)  # hot July afternoon: chillers running
START = T0 + 20 * 60
END = T0 + 50 * 60
MINUTES = 70

Tick = tuple[int, list]


def record(campus, calendar, start: int, minutes: int) -> list[Tick]:
    sim = CampusSimulator(campus, calendar, seed=42)
    return [(t, sim.readings_at(t)) for t in range(start, start + minutes * 60, sim.step)]


@pytest.fixture(scope="module")
def morning(campus, calendar) -> list[Tick]:
    return record(campus, calendar, T0, MINUTES)


@pytest.fixture(scope="module")
def summer(campus, calendar) -> list[Tick]:
    return record(campus, calendar, SUMMER, 30)


def inject(campus, ticks: list[Tick], *faults: Fault):
    """[(t, published {id: metrics}, clean {id: metrics}, status)] for every tick."""
    injector = FaultInjector(campus, faults)
    out = []
    for t, due in ticks:
        got = injector.apply(t, due)
        published = {d.id: m for d, m in got.readings}
        assert len(published) == len(got.readings)
        out.append((t, published, {d.id: m for d, m in due}, got.status))
    return out


def during(run, start: int = START, end: int = END):
    return [r for r in run if start <= r[0] < end]


def after(run, end: int = END):
    return [r for r in run if r[0] >= end]


def assert_counters_monotonic(campus, run):
    for (_, before, _, _), (t, now, _, _) in itertools.pairwise(run):
        for dev_id, m in now.items():
            for name, spec in campus.get(dev_id).metrics.items():
                if spec.counter and dev_id in before:
                    assert m[name] >= before[dev_id][name], (t, dev_id, name)


def assert_parent_sums(campus, run, metric: str, abs_tol: float):
    """Every parent meter reporting ``metric`` publishes the sum of its children's."""
    for t, pub, _, _ in run:
        for parent, kids in campus.children.items():
            if parent in pub and metric in pub[parent]:
                total = sum(pub[k.id][metric] for k in kids)
                assert pub[parent][metric] == pytest.approx(total, abs=abs_tol), (t, parent)


# -------------------------------------------------------------- plumbing


def test_every_kind_is_described_and_has_params():
    assert set(FAULT_KINDS) == set(FAULT_PARAMS)
    assert all(FAULT_KINDS.values())


def test_no_faults_publishes_the_input_unchanged(campus, morning):
    injector = FaultInjector(campus, [])
    for t, due in morning[:10]:
        got = injector.apply(t, due)
        assert [(d.id, m) for d, m in got.readings] == [(d.id, m) for d, m in due]
        assert all(a is not b for (_, a), (_, b) in zip(got.readings, due, strict=True))
        assert got.status == []


def test_the_simulators_dicts_are_never_mutated(campus, morning):
    ticks = copy.deepcopy(morning[15:40])
    faults = [
        Fault("wm-teach-1-f2", "burst_pipe", START),
        Fault("pm-teach-1", "feeder_outage", START, END),
        Fault("pm-admin-1-f1", "counter_reset", START),
        Fault("ahu-teach-1-1", "stuck", START, END),
        Fault("dorm-7-r101", "co2_buildup", START),
    ]
    inject(campus, ticks, *faults)
    assert ticks == morning[15:40]


def test_apply_needs_ascending_ticks(campus, morning):
    injector = FaultInjector(campus, [])
    injector.apply(T0 + 60, morning[1][1])
    with pytest.raises(ValueError, match="ascend"):
        injector.apply(T0, morning[0][1])


def test_faulted_values_stay_in_their_range(campus, morning):
    faults = [
        Fault("wm-dorm-7-f1", "burst_pipe", START, params={"pressure_drop_kpa": 5000}),
        Fault(
            "ahu-teach-2-1", "setpoint_drift", START, params={"rate_c_per_h": -500, "max_c": 500}
        ),
        Fault("dorm-7-r102", "overheating", START, params={"rate_c_per_h": 900, "max_c": 900}),
        Fault("dorm-7-r103", "co2_buildup", START, params={"rate_ppm_per_h": 1e6, "max_ppm": 1e6}),
    ]
    for _, pub, _, _ in inject(campus, morning, *faults):
        for dev_id, m in pub.items():
            for name, spec in campus.get(dev_id).metrics.items():
                if name in m:
                    assert spec.min <= m[name] <= spec.max, (dev_id, name, m[name])


# ----------------------------------------------------------------- water


LEAF = "wm-teach-1-f2"
CHAIN = [LEAF, "wm-teach-1", "wm-campus-main"]


@pytest.mark.parametrize(("kind", "extra"), [("burst_pipe", 400.0), ("slow_leak", 6.0)])
def test_leak_adds_flow_up_the_chain_and_counters_follow(campus, morning, kind, extra):
    run = inject(campus, morning, Fault(LEAF, kind, START, END))
    for t, pub, clean, _ in run:
        for dev in CHAIN:
            diff = pub[dev]["flow_lpm"] - clean[dev]["flow_lpm"]
            assert diff == pytest.approx(extra if START <= t < END else 0.0, abs=1e-6), (t, dev)
        assert pub["wm-teach-1-f1"] == clean["wm-teach-1-f1"]
        assert pub["wm-teach-2"] == clean["wm-teach-2"]
    added = extra * (END - START) / 60 / 1000  # m3
    for dev in CHAIN:
        _, pub, clean, _ = run[-1]
        assert pub[dev]["volume_m3"] - clean[dev]["volume_m3"] == pytest.approx(added, abs=1e-3)
    for _, pub, clean, _ in after(run):
        assert pub[LEAF]["flow_lpm"] == clean[LEAF]["flow_lpm"]
        assert pub[LEAF]["pressure_kpa"] == clean[LEAF]["pressure_kpa"]
    assert_counters_monotonic(campus, run)
    assert_parent_sums(campus, run, "flow_lpm", 1e-6)
    assert_parent_sums(campus, run, "volume_m3", 1e-3)


def test_burst_pipe_drops_the_pressure_at_the_meter(campus, morning):
    run = inject(campus, morning, Fault(LEAF, "burst_pipe", START, END))
    for _, pub, clean, _ in during(run):
        assert pub[LEAF]["pressure_kpa"] == pytest.approx(clean[LEAF]["pressure_kpa"] - 120)
        assert pub["wm-teach-1"]["pressure_kpa"] == clean["wm-teach-1"]["pressure_kpa"]


def test_slow_leak_keeps_the_pressure(campus, morning):
    run = inject(campus, morning, Fault(LEAF, "slow_leak", START, END, {"extra_lpm": 2.5}))
    for _, pub, clean, _ in during(run):
        assert pub[LEAF]["pressure_kpa"] == clean[LEAF]["pressure_kpa"]
        assert pub[LEAF]["flow_lpm"] == pytest.approx(clean[LEAF]["flow_lpm"] + 2.5)


def test_balance_loss_on_a_water_parent(campus, morning):
    run = inject(campus, morning, Fault("wm-teach-1", "balance_loss", START, END))
    kids = [c.id for c in campus.children["wm-teach-1"]]
    for t, pub, clean, _ in run:
        gap = pub["wm-teach-1"]["flow_lpm"] - sum(pub[k]["flow_lpm"] for k in kids)
        assert gap == pytest.approx(60.0 if START <= t < END else 0.0, abs=1e-6), t
        assert all(pub[k] == clean[k] for k in kids)
        assert pub["wm-campus-main"] == clean["wm-campus-main"]
    _, pub, _, _ = run[-1]
    drift = pub["wm-teach-1"]["volume_m3"] - sum(pub[k]["volume_m3"] for k in kids)
    assert drift == pytest.approx(60.0 * 30 / 1000, abs=1e-3)
    assert_counters_monotonic(campus, run)


def test_balance_loss_on_a_power_parent(campus, morning):
    fault = Fault("pm-campus-main", "balance_loss", START, END, {"extra_kw": 25})
    run = inject(campus, morning, fault)
    kids = [c.id for c in campus.children["pm-campus-main"]]
    for _, pub, clean, _ in during(run):
        main = pub["pm-campus-main"]
        assert main["power_kw"] - sum(pub[k]["power_kw"] for k in kids) == pytest.approx(25.0)
        assert main["current_a"] > clean["pm-campus-main"]["current_a"]
    assert_counters_monotonic(campus, run)


# ----------------------------------------------------------------- power


def test_feeder_outage_kills_the_subtree_and_unloads_the_meters_above(campus, morning):
    run = inject(campus, morning, Fault("pm-teach-1", "feeder_outage", START, END))
    dead = ["pm-teach-1", *(c.id for c in campus.children["pm-teach-1"])]
    held = {d: run[19][1][d]["energy_kwh"] for d in dead}  # the tick before START
    assert run[19][0] == START - 60
    for _, pub, clean, _ in during(run):
        for d in dead:
            assert (pub[d]["power_kw"], pub[d]["voltage_v"], pub[d]["current_a"]) == (0, 0, 0)
            assert pub[d]["energy_kwh"] == held[d]
        lost = clean["pm-teach-1"]["power_kw"]
        want = clean["pm-campus-main"]["power_kw"] - lost
        assert pub["pm-campus-main"]["power_kw"] == pytest.approx(want, abs=1e-6)
        assert pub["pm-teach-2"] == clean["pm-teach-2"]
    for _, pub, clean, _ in after(run):
        assert pub["pm-teach-1-f1"]["power_kw"] == clean["pm-teach-1-f1"]["power_kw"]
    assert run[-1][1]["pm-teach-1-f1"]["energy_kwh"] > held["pm-teach-1-f1"]
    assert_counters_monotonic(campus, run)
    assert_parent_sums(campus, run, "power_kw", 1e-6)
    assert_parent_sums(campus, run, "energy_kwh", 2e-3)


def test_nested_feeder_outages_unload_the_meters_above_once(campus, morning):
    faults = [
        Fault("pm-teach-1", "feeder_outage", START, END),
        Fault("pm-teach-1-f2", "feeder_outage", START, END),
    ]
    run = inject(campus, morning, *faults)
    for _, pub, clean, _ in during(run):
        want = clean["pm-campus-main"]["power_kw"] - clean["pm-teach-1"]["power_kw"]
        assert pub["pm-campus-main"]["power_kw"] == pytest.approx(want, abs=1e-6)
    assert_parent_sums(campus, run, "energy_kwh", 2e-3)


@pytest.mark.parametrize(
    ("device", "counter"), [("pm-admin-1-f1", "energy_kwh"), (LEAF, "volume_m3")]
)
def test_counter_reset_restarts_from_zero_once(campus, morning, device, counter):
    run = inject(campus, morning, Fault(device, "counter_reset", START))
    values = [pub[device][counter] for _, pub, _, _ in run]
    drops = [i for i, (a, b) in enumerate(itertools.pairwise(values)) if b < a]
    assert drops == [19]  # from the tick before START to START
    assert values[20] == 0.0
    assert values[-1] > 0.0
    clean = [c[device][counter] for _, _, c, _ in run]
    assert values[-1] == pytest.approx(clean[-1] - clean[20], abs=1e-3)


# ------------------------------------------------------------------ hvac


def test_chiller_trip_stops_it_and_ramps_supply_to_return(campus, summer):
    start = SUMMER + 5 * 60
    run = inject(campus, summer, Fault("chiller-1", "chiller_trip", start, params={"ramp_s": 600}))
    assert run[0][1]["chiller-1"]["power_kw"] > 100  # running before the trip
    for t, pub, clean, _ in during(run, start, SUMMER + 3600):
        c, p = clean["chiller-1"], pub["chiller-1"]
        assert (p["power_kw"], p["fan_on"]) == (0.0, 0.0)
        share = min(1.0, (t - start) / 600)
        want = c["supply_temp_c"] + (c["return_temp_c"] - c["supply_temp_c"]) * share
        assert p["supply_temp_c"] == pytest.approx(want, abs=0.006), t
        if t >= start + 600:
            assert p["supply_temp_c"] == pytest.approx(c["return_temp_c"])


def test_fan_failure_stops_the_fan_and_supply_drifts_to_mixed_air(campus, morning):
    dev = "ahu-teach-1-1"
    run = inject(campus, morning, Fault(dev, "fan_failure", START, END))
    for t, pub, clean, _ in during(run):
        p, c = pub[dev], clean[dev]
        assert c["fan_on"] == 1.0
        assert (p["fan_on"], p["fan_speed_pct"], p["static_pressure_pa"]) == (0, 0, 0)
        assert p["power_kw"] == pytest.approx(c["power_kw"] * 0.2, abs=1e-3)
        if t >= START + 600:
            assert p["supply_temp_c"] == pytest.approx(c["mixed_temp_c"])
    for _, pub, clean, _ in after(run):
        assert pub[dev] == clean[dev]


def test_fan_failure_on_a_fresh_air_unit_drifts_to_return_air(campus, morning):
    run = inject(campus, morning, Fault("fau-dorm-7", "fan_failure", START, END))
    for t, pub, clean, _ in during(run, START + 600):
        assert pub["fau-dorm-7"]["supply_temp_c"] == clean["fau-dorm-7"]["return_temp_c"], t


def test_setpoint_drift_grows_and_is_capped(campus, morning):
    dev = "ahu-teach-1-2"
    run = inject(campus, morning, Fault(dev, "setpoint_drift", START, params={"rate_c_per_h": 10}))
    for t, pub, clean, _ in during(run, START, T0 + 3600 * 2):
        want = min(8.0, 10 * (t - START) / 3600)
        assert pub[dev]["supply_temp_c"] - clean[dev]["supply_temp_c"] == pytest.approx(
            want, abs=0.006
        )
    assert run[-1][1][dev]["supply_temp_c"] - run[-1][2][dev]["supply_temp_c"] == pytest.approx(8.0)


# ------------------------------------------------------------------- dorm


ROOM = "dorm-7-r101"


def test_overheating_raises_temperature_only(campus, morning):
    fault = Fault(ROOM, "overheating", START, params={"rate_c_per_h": 30, "max_c": 10})
    run = inject(campus, morning, fault)
    seen = 0
    for t, pub, clean, _ in during(run, START, T0 + 7200):
        if ROOM not in clean:
            assert ROOM not in pub
            continue
        seen += 1
        rise = pub[ROOM]["temp_c"] - clean[ROOM]["temp_c"]
        assert rise == pytest.approx(min(10.0, 30 * (t - START) / 3600), abs=0.006), t
        assert pub[ROOM]["humidity_pct"] == clean[ROOM]["humidity_pct"]
    assert seen == 10  # a dorm sensor reports every 5 minutes


def test_co2_buildup_is_capped_at_max_ppm(campus, morning):
    run = inject(
        campus, morning, Fault(ROOM, "co2_buildup", START, params={"rate_ppm_per_h": 9000})
    )
    rooms = [(t, p[ROOM], c[ROOM]) for t, p, c, _ in during(run, START, T0 + 7200) if ROOM in c]
    for t, p, c in rooms:
        rise = 9000 * (t - START) / 3600
        assert p["co2_ppm"] == pytest.approx(min(c["co2_ppm"] + rise, 4000), abs=0.5), t
    assert rooms[-1][1]["co2_ppm"] == 4000


def test_smoke_during_the_fault_only(campus, morning):
    run = inject(campus, morning, Fault(ROOM, "smoke", START, END))
    for t, pub, _, _ in run:
        if ROOM in pub:
            assert pub[ROOM]["smoke"] == (1.0 if START <= t < END else 0.0), t


# ------------------------------------------------------------------ any kind


@pytest.mark.parametrize("device", ["ahu-teach-1-1", "pm-admin-1-f1", ROOM])
def test_stuck_repeats_the_first_reading_of_the_fault(campus, morning, device):
    run = inject(campus, morning, Fault(device, "stuck", START, END))
    readings = [pub[device] for _, pub, _, _ in during(run) if device in pub]
    assert len(readings) >= 6
    assert readings[0] == next(c[device] for t, _, c, _ in run if t >= START and device in c)
    assert all(r == readings[0] for r in readings)
    for _, pub, clean, _ in after(run):
        if device in clean:
            assert pub[device] == clean[device]
    assert_counters_monotonic(campus, run)


def test_offline_publishes_nothing_and_reports_status(campus, morning):
    dev = "ahu-admin-1-1"
    run = inject(campus, morning, Fault(dev, "offline", START, END))
    for t, pub, clean, status in run:
        assert (dev in pub) == (not START <= t < END), t
        if dev in pub:
            assert pub[dev] == clean[dev]
        want = {START: [(dev, False)], END: [(dev, True)]}.get(t, [])
        assert [(d.id, up) for d, up in status] == want, t


def test_offline_status_comes_at_the_first_tick_after_the_edges(campus, morning):
    run = inject(campus, morning, Fault("ahu-admin-1-1", "offline", START + 30, END + 30))
    changes = {t: [up for _, up in status] for t, _, _, status in run if status}
    assert changes == {START + 60: [False], END + 60: [True]}


# ------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (
            Fault("wm-nowhere", "burst_pipe", START),
            r"#0 \(burst_pipe on 'wm-nowhere'\).*unknown device",
        ),
        (Fault(LEAF, "earthquake", START), "unknown fault kind 'earthquake'"),
        (Fault("pm-teach-1", "burst_pipe", START), "fits water devices.*'pm-teach-1' is a power"),
        (Fault("ahu-teach-1-1", "chiller_trip", START), "fits chillers.*ahu"),
        (Fault(ROOM, "feeder_outage", START), "fits power devices"),
        (Fault(LEAF, "burst_pipe", START, params={"gallons": 5}), "unknown param.*gallons"),
        (Fault(LEAF, "balance_loss", START), "no sub-meters"),
        (
            Fault("wm-teach-1", "balance_loss", START, params={"extra_kw": 5}),
            "unknown param.*extra_kw",
        ),
        (Fault(LEAF, "burst_pipe", START, START), r"end \(\d+\) must be after start"),
        (Fault(LEAF, "burst_pipe", START, START - 60), "must be after start"),
        (Fault(LEAF, "counter_reset", START, END), "permanent; leave end unset"),
        (
            Fault("fau-dorm-7", "fan_failure", START, params={"ramp_s": 0}),
            "ramp_s must be positive",
        ),
        (
            Fault(LEAF, "slow_leak", START, params={"extra_lpm": -3}),
            "extra_lpm must not be negative",
        ),
        (Fault(LEAF, "slow_leak", START, params={"extra_lpm": float("nan")}), "must be finite"),
        (Fault(ROOM, "smoke", START, params={"level": 1}), "smoke takes no params"),
    ],
)
def test_bad_faults_are_refused_naming_the_problem(campus, fault, message):
    with pytest.raises(ValueError, match=message):
        FaultInjector(campus, [fault])


def test_every_bad_fault_is_reported_at_once(campus):
    faults = [
        Fault(LEAF, "slow_leak", START),
        Fault("nope", "smoke", START),
        Fault(LEAF, "smoke", START),
    ]
    with pytest.raises(ValueError) as info:
        FaultInjector(campus, faults)
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("fault #1 (smoke on 'nope')")
    assert lines[1].startswith(f"fault #2 (smoke on '{LEAF}')")
