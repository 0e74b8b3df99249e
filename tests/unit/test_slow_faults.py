"""Unit tests of the slow fault kinds in ``simulators/faults.py``: ``creep``,
``weekday_shape`` and ``efficiency_loss``, the labelled faults the anomaly model
is evaluated on.

A seeded simulator restricted to a small part of the demo campus is run once
per span; every test feeds the recorded ticks through its own
:class:`FaultInjector` and compares what devices publish with the unfaulted
readings at the same tick: the scaled rate and its ramp or cap, the meters
above carrying the change (every parent still the sum of its children),
counters that integrate the changed rate and never go down, untouched thermal
metrics, and validation messages that name the problem.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from campus.registry import Campus, CampusConfig
from simulators.engine import CampusSimulator
from simulators.faults import (
    FAULT_KINDS,
    FAULT_PARAMS,
    FAULT_TARGETS,
    METERS,
    Fault,
    FaultInjector,
    parse_fault_spec,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_KINDS = ("creep", "weekday_shape", "efficiency_loss")


def local(year: int, month: int, day: int, hour: int = 0) -> int:
    """Epoch seconds of a Shanghai wall-clock time."""
    return int(datetime(year, month, day, hour, tzinfo=SHANGHAI).timestamp())


WEEK_T0 = local(2026, 10, 22)  # Thursday 00:00 in term; the span runs to Wednesday 00:00
WEEK_DAYS = 6
WEEK_STEP = 600
SUMMER_T0 = local(2026, 7, 15, 10)  # hot July day: chillers running
TERM_T0 = local(2026, 10, 20, 7)  # Tuesday in term: AHUs running from the morning
METERED = {"pm-admin-2", "wm-admin-2"}  # two building mains, three floor meters each

Tick = tuple[int, list]
Run = list[tuple[int, dict[str, dict[str, float]], dict[str, dict[str, float]]]]


def record(campus, calendar, only: set[str], start: int, seconds: int, step: int) -> list[Tick]:
    sim = CampusSimulator(campus, calendar, seed=11, only=only)
    return [(t, sim.readings_at(t)) for t in range(start, start + seconds, step)]


@pytest.fixture(scope="module")
def week(campus, calendar) -> list[Tick]:
    return record(campus, calendar, METERED, WEEK_T0, WEEK_DAYS * 86400, WEEK_STEP)


@pytest.fixture(scope="module")
def summer(campus, calendar) -> list[Tick]:
    return record(campus, calendar, {"chiller-1"}, SUMMER_T0, 6 * 3600, 300)


@pytest.fixture(scope="module")
def term(campus, calendar) -> list[Tick]:
    return record(campus, calendar, {"ahu-admin-2-1"}, TERM_T0, 30 * 3600, 600)


def inject(campus, ticks: list[Tick], *faults: Fault) -> Run:
    """[(t, published {id: metrics}, clean {id: metrics})] for every tick."""
    injector = FaultInjector(campus, faults)
    out: Run = []
    for t, due in ticks:
        got = injector.apply(t, due)
        assert got.status == []
        out.append((t, {d.id: m for d, m in got.readings}, {d.id: m for d, m in due}))
    return out


def meter_of(campus, device: str):
    return METERS[campus.get(device).kind]


def assert_counter_integrates_the_rate(campus, run: Run, device: str) -> None:
    """The published counter minus the clean one is the running integral of the
    published rate minus the clean one, and the published counter never drops."""
    meter = meter_of(campus, device)
    digits = 3 if meter.counter == "energy_kwh" else 4
    added = 0.0
    for (t0, before, _), (t1, pub, clean) in itertools.pairwise(run):
        change = pub[device][meter.rate] - clean[device][meter.rate]
        added += change * (t1 - t0) * meter.per_second
        gap = pub[device][meter.counter] - clean[device][meter.counter]
        assert gap == pytest.approx(added, abs=1.5 * 10**-digits), (t1, device)
        assert pub[device][meter.counter] >= before[device][meter.counter], (t1, device)
    assert added > 0


def assert_parents_sum_their_children(campus, run: Run) -> None:
    for t, pub, _ in run:
        for parent, kids in campus.children.items():
            if parent not in pub:
                continue
            meter = meter_of(campus, parent)
            rate = sum(pub[k.id][meter.rate] for k in kids)
            assert pub[parent][meter.rate] == pytest.approx(rate, abs=1e-6), (t, parent)
            counter = sum(pub[k.id][meter.counter] for k in kids)
            assert pub[parent][meter.counter] == pytest.approx(counter, abs=3e-3), (t, parent)


def without(metrics: dict[str, float], name: str) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k != name}


def is_weekday_night(t: int) -> bool:
    at = datetime.fromtimestamp(t, SHANGHAI)
    return at.weekday() < 5 and (at.hour >= 22 or at.hour < 6)


# -------------------------------------------------------------- plumbing


def test_the_slow_kinds_are_registered_with_targets_and_defaults():
    assert all(FAULT_KINDS[k] for k in NEW_KINDS)
    assert FAULT_TARGETS["creep"] == FAULT_TARGETS["weekday_shape"] == ("power", "water")
    assert FAULT_TARGETS["efficiency_loss"] == ("hvac",)
    assert FAULT_PARAMS["creep"] == {"rate_pct_per_day": 5.0, "max_pct": 30.0}
    assert FAULT_PARAMS["weekday_shape"] == {"night_factor": 2.5}
    assert FAULT_PARAMS["efficiency_loss"] == {"loss_pct": 25.0, "ramp_h": 24.0}


def test_a_slow_fault_from_the_command_line(campus):
    now = local(2026, 10, 22)
    fault = parse_fault_spec("pm-admin-2-f1:creep:at=1d:rate_pct_per_day=10", now)
    assert (fault.device, fault.kind, fault.start, fault.end) == (
        "pm-admin-2-f1",
        "creep",
        now + 86400,
        None,
    )
    assert fault.params == {"rate_pct_per_day": 10.0}
    specs = [
        "wm-admin-2-f2:weekday_shape:for=7d:night_factor=3",
        "chiller-1:efficiency_loss:loss_pct=40:ramp_h=0",
    ]
    FaultInjector(campus, [fault, *(parse_fault_spec(s, now) for s in specs)])


# ----------------------------------------------------------------- creep


CREEP_START = WEEK_T0 + 6 * 3600
CREEP = {"rate_pct_per_day": 10.0, "max_pct": 25.0}


def creep_factor(t: int) -> float:
    if t < CREEP_START:
        return 1.0
    return 1 + min(25.0, 10.0 * (t - CREEP_START) / 86400) / 100


@pytest.mark.parametrize("leaf", ["pm-admin-2-f1", "wm-admin-2-f1"])
def test_creep_grows_by_the_day_caps_and_the_parent_carries_it(campus, week, leaf):
    parent = campus.get(leaf).parent
    rate = meter_of(campus, leaf).rate
    run = inject(campus, week, Fault(leaf, "creep", CREEP_START, params=CREEP))
    for t, pub, clean in run:
        want = clean[leaf][rate] * creep_factor(t)
        assert pub[leaf][rate] == pytest.approx(want, abs=6e-4), t
        change = pub[leaf][rate] - clean[leaf][rate]
        assert pub[parent][rate] - clean[parent][rate] == pytest.approx(change, abs=1e-6), t
        for sibling in campus.children[parent]:
            if sibling.id != leaf:
                assert pub[sibling.id] == clean[sibling.id], t
        if t < CREEP_START:
            assert pub[leaf] == clean[leaf]
        if rate == "power_kw":
            want_a = clean[leaf]["current_a"] * creep_factor(t)
            assert pub[leaf]["current_a"] == pytest.approx(want_a, rel=2e-3, abs=0.02), t
            assert pub[leaf]["voltage_v"] == clean[leaf]["voltage_v"]
        else:
            assert pub[leaf]["pressure_kpa"] == clean[leaf]["pressure_kpa"]
    by_day: dict[int, list[float]] = {}
    for t, pub, clean in run:
        if t >= CREEP_START:
            day = by_day.setdefault((t - CREEP_START) // 86400, [0.0, 0.0])
            day[0] += pub[leaf][rate]
            day[1] += clean[leaf][rate]
    daily = [pub / clean for pub, clean in (by_day[d] for d in sorted(by_day))]
    assert 1.0 < daily[0] < daily[1] < daily[2]
    capped = [(p[leaf][rate], c[leaf][rate]) for t, p, c in run if t >= CREEP_START + 2.5 * 86400]
    assert capped and all(p == pytest.approx(c * 1.25, abs=6e-4) for p, c in capped)
    assert_counter_integrates_the_rate(campus, run, leaf)
    assert_counter_integrates_the_rate(campus, run, parent)
    assert_parents_sum_their_children(campus, run)


def test_creep_on_a_building_main_scales_its_sub_meters_too(campus, week):
    run = inject(campus, week, Fault("pm-admin-2", "creep", CREEP_START, params=CREEP))
    kids = [k.id for k in campus.children["pm-admin-2"]]
    for t, pub, clean in run:
        for dev in ["pm-admin-2", *kids]:
            want = clean[dev]["power_kw"] * creep_factor(t)
            assert pub[dev]["power_kw"] == pytest.approx(want, abs=2e-3), (t, dev)
        assert pub["wm-admin-2"] == clean["wm-admin-2"]
    assert_parents_sum_their_children(campus, run)
    for dev in ["pm-admin-2", *kids]:
        assert_counter_integrates_the_rate(campus, run, dev)


def test_creep_stops_at_the_end_of_the_fault(campus, week):
    end = CREEP_START + 86400
    run = inject(campus, week, Fault("wm-admin-2-f3", "creep", CREEP_START, end, CREEP))
    for t, pub, clean in run:
        if t >= end:
            assert pub["wm-admin-2-f3"]["flow_lpm"] == clean["wm-admin-2-f3"]["flow_lpm"]
    assert_counter_integrates_the_rate(campus, run, "wm-admin-2-f3")


# ---------------------------------------------------------- weekday_shape


@pytest.mark.parametrize("leaf", ["pm-admin-2-f2", "wm-admin-2-f2"])
def test_weekday_shape_raises_weekday_nights_only(campus, week, leaf):
    parent = campus.get(leaf).parent
    rate = meter_of(campus, leaf).rate
    run = inject(campus, week, Fault(leaf, "weekday_shape", WEEK_T0))
    raised, kept = set(), set()
    for t, pub, clean in run:
        at = datetime.fromtimestamp(t, SHANGHAI)
        if is_weekday_night(t):
            raised.add((at.strftime("%a"), at.hour))
            want = clean[leaf][rate] * 2.5
            assert pub[leaf][rate] == pytest.approx(want, abs=6e-4), at
        else:
            kept.add((at.strftime("%a"), at.hour))
            counter = meter_of(campus, leaf).counter
            for dev in (leaf, parent):
                assert without(pub[dev], counter) == without(clean[dev], counter), at
        change = pub[leaf][rate] - clean[leaf][rate]
        assert pub[parent][rate] - clean[parent][rate] == pytest.approx(change, abs=1e-6), at
    assert {("Fri", 23), ("Mon", 1), ("Tue", 5), ("Thu", 22)} <= raised
    assert {("Sat", 1), ("Sat", 23), ("Sun", 3), ("Sun", 22), ("Mon", 12), ("Fri", 6)} <= kept
    assert_counter_integrates_the_rate(campus, run, leaf)
    assert_counter_integrates_the_rate(campus, run, parent)
    assert_parents_sum_their_children(campus, run)


def test_weekday_shape_takes_its_night_factor(campus, week):
    leaf = "pm-admin-2-f3"
    fault = Fault(leaf, "weekday_shape", WEEK_T0, params={"night_factor": 4})
    for t, pub, clean in inject(campus, week, fault):
        if is_weekday_night(t):
            want = clean[leaf]["power_kw"] * 4
            assert pub[leaf]["power_kw"] == pytest.approx(want, abs=6e-4), t


# -------------------------------------------------------- efficiency_loss


def assert_only_power_changes(pub: dict[str, float], clean: dict[str, float]) -> None:
    assert pub.keys() == clean.keys()
    assert without(pub, "power_kw") == without(clean, "power_kw")


def test_efficiency_loss_ramps_power_in_and_keeps_the_temperatures(campus, summer):
    start, end = SUMMER_T0 + 1800, SUMMER_T0 + 5 * 3600
    fault = Fault("chiller-1", "efficiency_loss", start, end, {"ramp_h": 2})
    run = inject(campus, summer, fault)
    full = 0
    for t, pub, clean in run:
        p, c = pub["chiller-1"], clean["chiller-1"]
        assert_only_power_changes(p, c)
        if not start <= t < end:
            assert p == c, t
            continue
        share = min(1.0, (t - start) / 7200)
        assert p["power_kw"] == pytest.approx(c["power_kw"] * (1 + 0.25 * share), abs=6e-4), t
        if share == 1.0 and c["power_kw"] > 100:
            full += 1
            assert p["power_kw"] / c["power_kw"] == pytest.approx(1.25, abs=1e-5)
    assert full >= 10


def test_efficiency_loss_on_an_air_handler_with_the_default_day_long_ramp(campus, term):
    dev = "ahu-admin-2-1"
    run = inject(campus, term, Fault(dev, "efficiency_loss", TERM_T0))
    running = 0
    for t, pub, clean in run:
        assert_only_power_changes(pub[dev], clean[dev])
        share = min(1.0, (t - TERM_T0) / 86400)
        want = clean[dev]["power_kw"] * (1 + 0.25 * share)
        assert pub[dev]["power_kw"] == pytest.approx(want, abs=6e-4), t
        running += clean[dev]["power_kw"] > 0 and share > 0.2
    assert running >= 10


def test_efficiency_loss_with_no_ramp_is_a_step(campus, summer):
    start = SUMMER_T0 + 1800
    fault = Fault("chiller-1", "efficiency_loss", start, params={"ramp_h": 0, "loss_pct": 40})
    for t, pub, clean in inject(campus, summer, fault):
        factor = 1.4 if t >= start else 1.0
        want = clean["chiller-1"]["power_kw"] * factor
        assert pub["chiller-1"]["power_kw"] == pytest.approx(want, abs=6e-4), t


# ------------------------------------------------------------- validation


def unpowered_campus() -> Campus:
    """A one-building campus whose air handler reports no power."""
    config = CampusConfig.model_validate(
        {
            "campus": {"name": "tiny", "timezone": "Asia/Shanghai"},
            "models": {
                "bare_ahu": {
                    "kind": "hvac",
                    "interval_s": 60,
                    "metrics": {
                        "supply_temp_c": {"unit": "degC", "min": -20, "max": 60},
                        "return_temp_c": {"unit": "degC", "min": -20, "max": 60},
                    },
                }
            },
            "buildings": [
                {
                    "id": "b1",
                    "name": "Block 1",
                    "type": "admin",
                    "lat": 31.0,
                    "lon": 121.4,
                    "floors": 1,
                    "devices": [{"id": "ahu-bare", "model": "bare_ahu", "floor": 1}],
                }
            ],
        }
    )
    return Campus(config)


def test_efficiency_loss_refuses_an_hvac_device_without_power():
    with pytest.raises(ValueError, match=r"fits hvac devices that draw power.*'ahu-bare'"):
        FaultInjector(unpowered_campus(), [Fault("ahu-bare", "efficiency_loss", WEEK_T0)])


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        (
            Fault("ahu-admin-2-1", "creep", WEEK_T0),
            "creep fits power or water devices, but 'ahu-admin-2-1' is a hvac device",
        ),
        (Fault("dorm-7-r101", "weekday_shape", WEEK_T0), "weekday_shape fits power or water"),
        (
            Fault("pm-admin-2-f1", "efficiency_loss", WEEK_T0),
            "efficiency_loss fits hvac devices, but 'pm-admin-2-f1' is a power device",
        ),
        (
            Fault("pm-admin-2-f1", "creep", WEEK_T0, params={"rate": 3}),
            r"unknown param\(s\) rate .*creep takes rate_pct_per_day \(default 5\), "
            r"max_pct \(default 30\)",
        ),
        (
            Fault("wm-admin-2-f1", "weekday_shape", WEEK_T0, params={"night_share": 0.8}),
            r"unknown param.*night_share.*night_factor \(default 2.5\)",
        ),
        (
            Fault("chiller-1", "efficiency_loss", WEEK_T0, params={"ramp_s": 60}),
            r"unknown param.*ramp_s.*loss_pct \(default 25\), ramp_h \(default 24\)",
        ),
        (
            Fault("pm-admin-2-f1", "creep", WEEK_T0, params={"max_pct": -5}),
            "max_pct must not be negative",
        ),
        (
            Fault("wm-admin-2-f1", "weekday_shape", WEEK_T0, params={"night_factor": -1}),
            "night_factor must not be negative",
        ),
        (
            Fault("chiller-1", "efficiency_loss", WEEK_T0, params={"ramp_h": float("inf")}),
            "ramp_h must be finite",
        ),
        (
            Fault("chiller-1", "efficiency_loss", WEEK_T0, params={"loss_pct": -10}),
            "loss_pct must not be negative",
        ),
    ],
)
def test_bad_slow_faults_are_refused_naming_the_problem(campus, fault, message):
    with pytest.raises(ValueError, match=message):
        FaultInjector(campus, [fault])
