"""Unit tests of ``simulators/engine.py`` (the campus simulator) and
``simulators/run.py`` (playing it on a clock), without a broker: ``publish`` is a
plain list append.

Covers determinism by seed; parent meters equal to the sum of their children
(power, energy, flow, volume) at every tick; counters that never decrease and
integrate their rate; every value inside its model's range on a summer
afternoon, a winter night and a public holiday; the shapes that matter to rules
and boards (dorm occupancy by night, dorm water in winter break, teaching power
by day, chillers in July but not January); one simulated hour publishing exactly
one contract payload per device per interval; ``select_devices``; and
``SimulationRun`` never publishing a tick later than its clock.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from campus.calendar import Period
from ingest.decode import Decoder
from simulators.engine import CampusSimulator
from simulators.run import SimulationRun, payload, select_devices

SHANGHAI = ZoneInfo("Asia/Shanghai")
FAR_FUTURE = 4_000_000_000.0  # 2096: the clock never holds a tick back
RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def local(*args: int) -> int:
    """Epoch seconds of a Shanghai wall-clock time."""
    return int(datetime(*args, tzinfo=SHANGHAI).timestamp())


T0 = 1_792_454_400  # 2026-10-20T00:00:00Z = 08:00 Tuesday in Shanghai, autumn term
assert local(2026, 10, 20, 8) == T0

# Hours of simulation every range / sum / counter test runs over.
SCENARIOS = {
    "term_morning": local(2026, 10, 20, 8),  # Tuesday in term
    "summer_afternoon": local(2026, 7, 15, 14),  # hot July afternoon, summer break
    "winter_night": local(2027, 1, 20, 2),  # cold January night, winter break
    "public_holiday": local(2026, 10, 3, 10),  # National Day closure inside term
}


def run_hour(campus, calendar, start: int, seed: int = 42):
    """[(t, {device id: (device, metrics)})] for the 60 ticks of one hour."""
    sim = CampusSimulator(campus, calendar, seed=seed)
    out = []
    for t in range(sim.first_tick(start), start + 3600, sim.step):
        out.append((t, {d.id: (d, m) for d, m in sim.readings_at(t)}))
    return out


@pytest.fixture(scope="module")
def hours(campus, calendar):
    return {name: run_hour(campus, calendar, start) for name, start in SCENARIOS.items()}


def snapshot(campus, calendar, t: int, seed: int = 42) -> dict[str, dict[str, float]]:
    sim = CampusSimulator(campus, calendar, seed=seed)
    return {d.id: m for d, m in sim.readings_at(t)}


def test_scenarios_are_what_they_claim(calendar):
    period = {
        n: calendar.day(datetime.fromtimestamp(t, SHANGHAI).date()) for n, t in SCENARIOS.items()
    }
    assert period == {
        "term_morning": (Period.term, False),
        "summer_afternoon": (Period.holidays, False),
        "winter_night": (Period.holidays, False),
        "public_holiday": (Period.holidays, True),
    }


# --------------------------------------------------------------- determinism


def test_step_and_first_tick(campus, calendar):
    sim = CampusSimulator(campus, calendar)
    assert sim.step == 60  # gcd of 60 s meters and 300 s dorm sensors
    assert sim.first_tick(T0) == T0
    assert sim.first_tick(T0 + 1) == T0 + 60
    assert sim.first_tick(T0 + 59.5) == T0 + 60


def test_same_seed_same_readings(campus, calendar):
    a = CampusSimulator(campus, calendar, seed=7)
    b = CampusSimulator(campus, calendar, seed=7)
    for t in range(T0, T0 + 5 * 60, 60):
        ra = [(d.id, m) for d, m in a.readings_at(t)]
        rb = [(d.id, m) for d, m in b.readings_at(t)]
        assert ra == rb
        assert ra  # something is due at every tick


def test_different_seed_different_readings(campus, calendar):
    a = {d.id: m for d, m in CampusSimulator(campus, calendar, seed=7).readings_at(T0)}
    b = {d.id: m for d, m in CampusSimulator(campus, calendar, seed=8).readings_at(T0)}
    assert a.keys() == b.keys()
    differing = sum(1 for k in a if a[k] != b[k])
    assert differing > len(a) // 2


def test_values_depend_only_on_seed_and_time_except_counters(campus, calendar):
    """A tick reads the same whether or not earlier ticks were simulated first."""
    t = T0 + 600
    warm = CampusSimulator(campus, calendar, seed=3)
    for earlier in range(T0, t, 60):
        warm.readings_at(earlier)
    cold = CampusSimulator(campus, calendar, seed=3)
    w = {d.id: m for d, m in warm.readings_at(t)}
    c = {d.id: m for d, m in cold.readings_at(t)}
    assert w.keys() == c.keys()
    for dev_id in w:
        device = campus.get(dev_id)
        counters = {n for n, spec in device.metrics.items() if spec.counter}
        plain_w = {k: v for k, v in w[dev_id].items() if k not in counters}
        plain_c = {k: v for k, v in c[dev_id].items() if k not in counters}
        assert plain_w == plain_c, dev_id


# ----------------------------------------------------------- metering trees


SUMMED = {"power": ("power_kw", "energy_kwh"), "water": ("flow_lpm", "volume_m3")}
DIGITS = {"power_kw": 3, "energy_kwh": 3, "flow_lpm": 3, "volume_m3": 4}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_parent_meters_are_the_sum_of_their_children(campus, hours, scenario):
    parents = [campus.get(p) for p in campus.children]
    assert {p.id for p in parents} >= {"pm-campus-main", "wm-campus-main", "pm-teach-1"}
    for t, values in hours[scenario]:
        for parent in parents:
            _, pm = values[parent.id]
            kids = [values[c.id][1] for c in campus.children[parent.id]]
            assert len(kids) == len(campus.children[parent.id])
            for name in SUMMED[parent.kind]:
                total = sum(k[name] for k in kids)
                assert pm[name] == round(total, DIGITS[name]), (t, parent.id, name)
                assert math.isclose(pm[name], total, rel_tol=0, abs_tol=1e-6), (t, parent.id, name)


def test_campus_main_power_is_the_sum_of_building_mains(campus, hours):
    for _, values in hours["term_morning"]:
        mains = [d for d in campus if d.tags.get("role") == "building_main" and d.kind == "power"]
        total = sum(values[d.id][1]["power_kw"] for d in mains)
        assert values["pm-campus-main"][1]["power_kw"] == pytest.approx(total, abs=1e-6)


# ------------------------------------------------------------------ counters


COUNTERS = {
    "power": ("energy_kwh", "power_kw", 60 / 3600, 0.0005),
    "water": ("volume_m3", "flow_lpm", 60 / 60 / 1000, 0.00005),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_counters_never_decrease(campus, hours, scenario):
    ticks = hours[scenario]
    for (_, before), (t, after) in itertools.pairwise(ticks):
        for dev_id, (device, metrics) in after.items():
            for name, spec in device.metrics.items():
                if spec.counter:
                    assert metrics[name] >= before[dev_id][1][name], (t, dev_id, name)


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_leaf_counters_integrate_their_rate(campus, hours, scenario):
    ticks = hours[scenario]
    leaves = [d for d in campus if d.kind in COUNTERS and d.id not in campus.children]
    assert len(leaves) > 100
    increased = 0
    for (_, before), (t, after) in itertools.pairwise(ticks):
        for d in leaves:
            counter, rate, per_tick, rounding = COUNTERS[d.kind]
            delta = after[d.id][1][counter] - before[d.id][1][counter]
            expected = after[d.id][1][rate] * per_tick
            assert abs(delta - expected) <= rounding + 1e-9, (t, d.id, delta, expected)
            increased += delta > 0
    assert increased > 0


def test_leaf_energy_delta_example(hours):
    (_, a), (_, b) = hours["term_morning"][10:12]
    e0, e1 = a["pm-teach-1-f1"][1]["energy_kwh"], b["pm-teach-1-f1"][1]["energy_kwh"]
    p1 = b["pm-teach-1-f1"][1]["power_kw"]
    assert e1 - e0 == pytest.approx(p1 * 60 / 3600, abs=0.0005)
    assert p1 > 0


def test_counters_start_from_a_plausible_reading(hours):
    _, first = hours["term_morning"][0]
    # counters started at 0 on 2024-01-01 and have run at a typical rate since
    assert first["pm-teach-1-f1"][1]["energy_kwh"] > 1000
    assert first["wm-teach-1-f1"][1]["volume_m3"] > 10


# ------------------------------------------------------------------- ranges


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_every_value_within_its_model_range(hours, scenario):
    checked = 0
    for t, values in hours[scenario]:
        for dev_id, (device, metrics) in values.items():
            assert set(metrics) == set(device.metrics), dev_id  # every metric, nothing else
            for name, value in metrics.items():
                spec = device.metrics[name]
                assert type(value) is float, (dev_id, name, value)
                assert math.isfinite(value)
                assert spec.min <= value <= spec.max, (t, dev_id, name, value, spec)
                checked += 1
    assert checked > 100_000


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_devices_are_due_on_their_interval(campus, hours, scenario):
    for t, values in hours[scenario]:
        due = {d.id for d in campus if t % int(d.interval_s) == 0}
        assert set(values) == due


# ------------------------------------------------------------------- shapes


def test_dorm_occupancy_higher_at_night_than_mid_morning(campus, calendar):
    night = snapshot(campus, calendar, local(2026, 10, 20, 3))
    morning = snapshot(campus, calendar, local(2026, 10, 20, 10))

    def mean_occupancy(values):
        occ = [m["occupancy"] for k, m in values.items() if campus.get(k).kind == "dorm"]
        assert len(occ) == sum(1 for d in campus if d.kind == "dorm")
        return sum(occ) / len(occ)

    at_3, at_10 = mean_occupancy(night), mean_occupancy(morning)
    assert at_3 > 0.8
    assert at_10 < 0.5
    assert at_3 - at_10 > 0.4


@pytest.mark.parametrize("hour_minute", [(22, 0), (7, 15)])
def test_dorms_use_far_less_water_in_winter_break(campus, calendar, hour_minute):
    term = snapshot(campus, calendar, local(2026, 10, 20, *hour_minute))  # Tuesday in term
    brk = snapshot(campus, calendar, local(2027, 2, 2, *hour_minute))  # Tuesday in winter break
    assert calendar.day(datetime(2027, 2, 2).date()) == (Period.holidays, False)
    dorm_mains = [f"wm-dorm-{i}" for i in range(1, 9)]
    in_term = sum(term[m]["flow_lpm"] for m in dorm_mains)
    in_break = sum(brk[m]["flow_lpm"] for m in dorm_mains)
    assert in_break < 0.25 * in_term


def test_teaching_building_power_higher_at_ten_than_at_three(campus, calendar):
    for b in ("teach-1", "teach-2", "teach-3"):
        at_10 = snapshot(campus, calendar, local(2026, 10, 20, 10))[f"pm-{b}"]["power_kw"]
        at_3 = snapshot(campus, calendar, local(2026, 10, 20, 3))[f"pm-{b}"]["power_kw"]
        assert at_10 > 3 * at_3, b


def test_chillers_run_on_a_hot_july_afternoon(hours):
    for _, values in hours["summer_afternoon"]:
        chiller = values["chiller-1"][1]
        assert chiller["fan_on"] == 1.0
        assert chiller["power_kw"] > 100
        assert chiller["supply_temp_c"] < chiller["return_temp_c"] + 0.5
        assert values["ahu-teach-1-1"][1]["outdoor_temp_c"] > 25
        assert values["boiler-1"][1]["fan_on"] == 0.0


def test_chillers_off_on_a_cold_january_night(hours):
    for _, values in hours["winter_night"]:
        for chiller in ("chiller-1", "chiller-2", "chiller-3"):
            assert values[chiller][1]["fan_on"] == 0.0
            assert values[chiller][1]["power_kw"] == 0.0
        assert values["boiler-1"][1]["fan_on"] == 1.0
        assert values["ahu-teach-1-1"][1]["outdoor_temp_c"] < 12


# ------------------------------------------------------------ a published hour


@pytest.fixture(scope="module")
def published_hour(campus, calendar):
    sent: list[tuple[str, bytes]] = []
    ticks: list[tuple[int, int]] = []
    run = SimulationRun(
        sim=CampusSimulator(campus, calendar, seed=42),
        publish=lambda topic, data: sent.append((topic, data)),
        start=T0,
        end=T0 + 3600,
        speed=None,
        clock=lambda: FAR_FUTURE,
        on_tick=lambda t, done: ticks.append((t, done)),
    )
    counts = run.run()
    return sent, counts, ticks, run


def test_one_hour_publishes_one_reading_per_device_per_interval(campus, published_hour):
    sent, counts, ticks, run = published_hour
    n60 = sum(1 for d in campus if d.interval_s == 60)
    n300 = sum(1 for d in campus if d.interval_s == 300)
    assert n60 + n300 == len(campus)
    assert len(sent) == 60 * n60 + 12 * n300
    assert sum(counts.values()) == len(sent)
    assert counts == Counter(
        {
            k: sum(3600 // int(d.interval_s) for d in campus if d.kind == k)
            for k in ("power", "water", "hvac", "dorm")
        }
    )
    assert ticks == [(T0 + 60 * i, i + 1) for i in range(60)]
    assert run.ticks_total() == 60
    per_topic = Counter(topic for topic, _ in sent)
    for d in campus:
        assert per_topic[d.topic] == 3600 // int(d.interval_s), d.id


def test_published_payloads_follow_the_contract(campus, published_hour):
    sent, *_ = published_hour
    by_topic = {d.topic: d for d in campus}
    for topic, raw in sent:
        device = by_topic[topic]
        msg = json.loads(raw)
        assert set(msg) == {"ts", "seq", "metrics"}
        assert RFC3339_Z.match(msg["ts"]), msg["ts"]
        t = int(datetime.fromisoformat(msg["ts"]).timestamp())
        assert T0 <= t < T0 + 3600 and t % int(device.interval_s) == 0
        assert type(msg["seq"]) is int and msg["seq"] == t // int(device.interval_s)
        assert isinstance(msg["metrics"], dict) and set(msg["metrics"]) == set(device.metrics)
        assert all(type(v) is float for v in msg["metrics"].values()), msg["metrics"]


def test_published_hour_decodes_without_a_single_rejection(campus, published_hour):
    sent, *_ = published_hour
    decoder = Decoder(campus)
    now_ms = (T0 + 3600) * 1000
    stored = 0
    for topic, raw in sent:
        out = decoder.decode(topic, raw, now_ms)
        assert out.rejections == [], (topic, out.rejections)
        assert out.unknown_device is False
        stored += len(out.readings)
    assert stored == len(sent)


def test_seq_increases_per_device(published_hour):
    sent, *_ = published_hour
    seqs: dict[str, list[int]] = {}
    for topic, raw in sent:
        seqs.setdefault(topic, []).append(json.loads(raw)["seq"])
    for topic, s in seqs.items():
        assert s == list(range(s[0], s[0] + len(s))), topic


def test_payload_bytes():
    assert payload(T0, 7, {"power_kw": 1.5, "fan_on": 0.0}) == (
        b'{"ts":"2026-10-20T00:00:00Z","seq":7,"metrics":{"power_kw":1.5,"fan_on":0.0}}'
    )


def test_device_filter(campus, calendar):
    sent: list[tuple[str, bytes]] = []
    run = SimulationRun(
        sim=CampusSimulator(campus, calendar),
        publish=lambda topic, data: sent.append((topic, data)),
        start=T0,
        end=T0 + 600,
        speed=None,
        clock=lambda: FAR_FUTURE,
        devices={"pm-teach-1-f1", "dorm-1-r101"},
    )
    counts = run.run()
    assert Counter(t for t, _ in sent) == {
        "campus/teach-1/power/pm-teach-1-f1": 10,
        "campus/dorm-1/dorm/dorm-1-r101": 2,
    }
    assert counts == {"power": 10, "dorm": 2}


def test_ticks_total(campus, calendar):
    sim = CampusSimulator(campus, calendar)
    mk = lambda start, end: SimulationRun(sim=sim, publish=lambda *_: None, start=start, end=end)  # noqa: E731
    assert mk(T0, T0 + 3600).ticks_total() == 60
    assert mk(T0 + 1, T0 + 3600).ticks_total() == 59
    assert mk(T0, T0 + 3601).ticks_total() == 61
    assert mk(T0, T0).ticks_total() == 0
    assert mk(T0, None).ticks_total() is None


def test_speed_paces_the_run(campus, calendar):
    sent: list[tuple[str, bytes]] = []
    run = SimulationRun(
        sim=CampusSimulator(campus, calendar),
        publish=lambda topic, data: sent.append((topic, data)),
        start=T0,
        end=T0 + 600,
        speed=6000.0,
        clock=lambda: FAR_FUTURE,
        devices={"pm-teach-1-f1"},
    )
    began = time.monotonic()
    run.run()
    # the last tick (T0 + 540) is due 540 / 6000 = 0.09 s after the start
    assert time.monotonic() - began >= 0.085
    assert len(sent) == 10


def test_max_rate_holds_the_average(campus, calendar):
    sent: list[tuple[str, bytes]] = []
    run = SimulationRun(
        sim=CampusSimulator(campus, calendar),
        publish=lambda topic, data: sent.append((topic, data)),
        start=T0,
        end=T0 + 300,
        speed=None,
        clock=lambda: FAR_FUTURE,
        devices={d.id for d in campus if d.kind == "power"},
        max_rate=1000.0,
    )
    began = time.monotonic()
    run.run()
    # 5 ticks x 129 power meters = 645 readings at 1000/s: at least 0.6 s
    assert len(sent) == 645
    assert time.monotonic() - began >= 0.6


# ---------------------------------------------------------- select_devices


def test_select_devices_without_patterns_is_everything(campus):
    devices = list(campus)
    assert select_devices(devices, None) is devices
    assert select_devices(devices, []) is devices


def test_select_devices_by_device_id_glob(campus):
    got = [d.id for d in select_devices(list(campus), ["pm-teach-1-*"])]
    assert got == [f"pm-teach-1-f{i}" for i in range(1, 6)]
    assert [d.id for d in select_devices(list(campus), ["chiller-?"])] == [
        "chiller-1",
        "chiller-2",
        "chiller-3",
    ]


def test_select_devices_by_building(campus):
    got = select_devices(list(campus), ["dorm-1"])
    assert {d.building for d in got} == {"dorm-1"}
    assert len(got) == len(campus.devices_in("dorm-1"))
    assert {"pm-dorm-1", "wm-dorm-1", "dorm-1-r101"} <= {d.id for d in got}


def test_select_devices_building_glob_and_union(campus):
    got = select_devices(list(campus), ["teach-*", "chiller-1", "teach-1"])
    ids = [d.id for d in got]
    assert len(ids) == len(set(ids))  # a device matching twice is listed once
    assert {d.building for d in got} == {f"teach-{i}" for i in range(1, 6)} | {"plant"}
    assert "chiller-1" in ids and "chiller-2" not in ids
    order = [d.id for d in campus]
    assert ids == sorted(ids, key=order.index)  # registry order kept


def test_select_devices_case_sensitive_and_no_match(campus):
    assert select_devices(list(campus), ["PM-TEACH-1-*"]) == []
    assert select_devices(list(campus), ["nothing-*"]) == []


# ----------------------------------------------------- never publish the future


def test_run_never_publishes_a_tick_later_than_the_clock(campus, calendar):
    now = T0 + 150  # the clock stands still 2.5 minutes into the run
    sent: list[int] = []
    ticks: list[int] = []
    run = SimulationRun(
        sim=CampusSimulator(campus, calendar),
        publish=lambda topic, data: sent.append(
            int(datetime.fromisoformat(json.loads(data)["ts"]).timestamp())
        ),
        start=T0,
        end=T0 + 3600,
        speed=None,
        clock=lambda: now,
        on_tick=lambda t, done: ticks.append(t),
    )
    result: dict[str, Counter[str]] = {}
    worker = threading.Thread(target=lambda: result.setdefault("counts", run.run()), daemon=True)
    worker.start()
    try:
        deadline = time.monotonic() + 30
        while len(ticks) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ticks == [T0, T0 + 60, T0 + 120]
        time.sleep(0.5)  # T0 + 180 is 30 s ahead of the clock: the run must be waiting
        assert ticks == [T0, T0 + 60, T0 + 120]
        assert worker.is_alive()
        assert sent and max(sent) <= now
    finally:
        run.stop_event.set()
    worker.join(5)
    assert not worker.is_alive()
    assert ticks == [T0, T0 + 60, T0 + 120]  # stopping does not flush the waiting tick
    assert max(sent) <= now
    assert sum(result["counts"].values()) == len(sent)


def test_stop_event_set_before_run_publishes_nothing(campus, calendar):
    sent: list[tuple[str, bytes]] = []
    run = SimulationRun(
        sim=CampusSimulator(campus, calendar),
        publish=lambda topic, data: sent.append((topic, data)),
        start=T0,
        end=T0 + 3600,
        speed=None,
        clock=lambda: FAR_FUTURE,
    )
    run.stop_event.set()
    assert run.run() == Counter()
    assert sent == []


def test_readings_times_are_utc(published_hour):
    sent, *_ = published_hour
    first = json.loads(sent[0][1])["ts"]
    assert datetime.fromisoformat(first) == datetime(2026, 10, 20, tzinfo=UTC)
