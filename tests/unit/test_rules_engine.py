"""Unit tests of ``rules/engine.py``: what the streaming engine does with readings.

Small rule sets written inline, hand-made readings on the demo campus from
Tuesday 2026-10-13 10:00 (Asia/Shanghai, autumn term), one a minute unless a
test says otherwise. Covers ``for`` and ``clear_for``, hysteresis, late and
duplicate readings, the alert event's JSON, every kind, schedules, maintenance,
escalation, inhibition through the metering tree, broken rules, anomaly scorers
and snapshot/restore.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from campus.registry import Device
from rules.engine import AlertEvent, Engine
from rules.kinds import KINDS
from rules.kinds.threshold import Threshold, ThresholdCondition
from rules.model import load_rules_text

MIN = 60_000
SHANGHAI = ZoneInfo("Asia/Shanghai")


def ms(local: str) -> int:
    """Epoch milliseconds of an ISO time with offset."""
    return int(datetime.fromisoformat(local).timestamp() * 1000)


T0 = ms("2026-10-13T10:00+08:00")  # a Tuesday in the autumn term, 02:00Z


def at(minute: float) -> int:
    return T0 + int(minute * MIN)


def make(campus, calendar, text: str, scorer=None) -> Engine:
    rules = load_rules_text(textwrap.dedent(text), "test-rules.yaml", campus)
    return Engine(rules, campus, calendar, scorer=scorer)


def series(
    engine: Engine,
    device: str,
    values: Iterable[Mapping[str, float]],
    start: float = 0,
    step: float = 1,
) -> list[tuple[float, AlertEvent]]:
    """Feed one reading per ``step`` minutes from minute ``start``; the events as
    (minute of the reading, event)."""
    out = []
    for i, metrics in enumerate(values):
        minute = start + i * step
        out += [(minute, ev) for ev in engine.feed(device, at(minute), metrics)]
    return out


def flow(*values: float) -> list[dict[str, float]]:
    return [{"flow_lpm": v} for v in values]


def states(events: Iterable[tuple[float, AlertEvent]]) -> list[tuple[float, str]]:
    return [(m, ev.state) for m, ev in events]


# ---------------------------------------------------------------- threshold

BURST = """
rules:
  - id: water-burst
    kind: threshold
    select: {device: wm-teach-1-f2}
    metric: flow_lpm
    params: {above: 250}
    clear: {above: 180}
    for: 3m
    clear_for: 10m
    severity: P1
    trade: plumbing
    title: "Burst pipe suspected: {device} at {value:.0f} L/min"
    text: "Floor {floor} of {building} draws {value:.0f} L/min ({detail})."
    dedup_key: "water-burst:{device}"
"""


@pytest.fixture
def burst(campus, calendar) -> Engine:
    return make(campus, calendar, BURST)


def test_threshold_for_holds_before_firing(burst):
    assert series(burst, "wm-teach-1-f2", flow(300, 300, 300)) == []
    assert burst.firing() == []
    events = series(burst, "wm-teach-1-f2", flow(310), start=3)
    assert states(events) == [(3, "firing")]
    ev = events[0][1]
    assert ev.ts_ms == at(3)
    assert ev.since_ms == at(0)
    assert ev.value == 310
    assert ev.detail == "310 > 250"
    assert [s.device.id for s in burst.firing()] == ["wm-teach-1-f2"]


def test_threshold_fires_at_the_first_reading_after_for(burst):
    # Readings every 2 minutes: for (3m) runs out between two readings.
    events = series(burst, "wm-teach-1-f2", flow(300, 300, 300), step=2)
    assert states(events) == [(4, "firing")]


def test_threshold_a_dip_restarts_for(burst):
    events = series(burst, "wm-teach-1-f2", flow(300, 300, 100, 300, 300, 300, 300))
    assert states(events) == [(6, "firing")]
    assert events[0][1].since_ms == at(3)


def test_threshold_resolves_only_after_clear_for(burst):
    series(burst, "wm-teach-1-f2", flow(*[300] * 4))
    events = series(burst, "wm-teach-1-f2", flow(*[100] * 10), start=4)
    assert events == []  # clear since minute 4, clear_for 10m not over at minute 13
    events = series(burst, "wm-teach-1-f2", flow(100), start=14)
    assert states(events) == [(14, "resolved")]
    assert events[0][1].since_ms == at(0)
    assert burst.firing() == []


def test_threshold_a_reading_above_clear_level_restarts_clear_for(burst):
    series(burst, "wm-teach-1-f2", flow(*[300] * 4))
    events = series(burst, "wm-teach-1-f2", flow(*[100] * 5, 190, *[100] * 11), start=4)
    assert states(events) == [(20, "resolved")]  # 190 at minute 9: clear again from 10


def test_hysteresis_between_clear_and_fire_level_keeps_firing(burst):
    series(burst, "wm-teach-1-f2", flow(*[300] * 4))
    # 200 L/min: below the fire level (250), above the clear level (180).
    assert series(burst, "wm-teach-1-f2", flow(*[200] * 60), start=4) == []
    assert burst.advance(at(120)) == []
    assert len(burst.firing()) == 1
    events = series(burst, "wm-teach-1-f2", flow(*[170] * 11), start=121)
    assert states(events) == [(131, "resolved")]


def test_advance_resolves_without_a_new_reading(burst):
    series(burst, "wm-teach-1-f2", flow(*[300] * 4, 100))
    assert burst.advance(at(13)) == []
    (ev,) = burst.advance(at(14))
    assert (ev.state, ev.ts_ms) == ("resolved", at(14))


def test_advance_fires_when_for_runs_out_without_a_new_reading(burst):
    series(burst, "wm-teach-1-f2", flow(300))
    assert burst.advance(at(2)) == []
    (ev,) = burst.advance(at(3))
    assert (ev.state, ev.ts_ms, ev.since_ms) == ("firing", at(3), at(0))


def test_other_devices_and_metrics_are_ignored(burst):
    assert series(burst, "wm-teach-1-f3", flow(*[900] * 10)) == []
    assert series(burst, "wm-teach-1-f2", [{"pressure_kpa": 900}] * 10) == []
    assert burst.firing() == []


# ----------------------------------------------------- late and out of order


def test_out_of_order_readings_do_not_fire(burst):
    series(burst, "wm-teach-1-f2", flow(100), start=10)
    # Minutes 3..9 arrive after minute 10: on time they would have fired.
    assert series(burst, "wm-teach-1-f2", flow(*[300] * 7), start=3) == []
    assert burst.stats.late == 7
    assert burst.advance(at(30)) == []
    assert burst.firing() == []


def test_duplicate_and_late_readings_do_not_resolve(burst):
    series(burst, "wm-teach-1-f2", flow(*[300] * 4))
    late_before = burst.stats.late
    assert burst.feed("wm-teach-1-f2", at(3), {"flow_lpm": 0}) == []  # duplicate time
    assert burst.feed("wm-teach-1-f2", at(1.5), {"flow_lpm": 0}) == []  # late
    assert burst.stats.late == late_before + 2
    assert burst.advance(at(30)) == []  # no clear_for was started
    assert len(burst.firing()) == 1
    assert series(burst, "wm-teach-1-f2", flow(300), start=31) == []  # still one alert


def test_stats_count_readings(burst):
    series(burst, "wm-teach-1-f2", flow(*[100] * 5))
    burst.feed("wm-teach-1-f2", at(2), {"flow_lpm": 100})
    assert (burst.stats.readings, burst.stats.late) == (6, 1)
    assert burst.stats.disabled == {}


# ------------------------------------------------------------------ the event


def test_alert_event_json(burst):
    (_, ev), *_ = series(burst, "wm-teach-1-f2", flow(300, 300, 300, 312.4))
    assert ev.topic == "ops/alerts/P1/teach-1"
    assert ev.title == "Burst pipe suspected: wm-teach-1-f2 at 312 L/min"
    assert ev.text == "Floor 2 of teach-1 draws 312 L/min (312.4 > 250)."
    assert ev.dedup_key == "water-burst:wm-teach-1-f2"
    doc = json.loads(json.dumps(ev.to_json()))
    assert doc["ts"] == "2026-10-13T02:03:00.000+00:00"
    assert doc["since"] == "2026-10-13T02:00:00.000+00:00"
    assert datetime.fromisoformat(doc["ts"]).timestamp() * 1000 == at(3)
    assert doc["state"] == "firing"
    assert doc["rule"] == "water-burst"
    assert doc["device"] == "wm-teach-1-f2"
    assert doc["building"] == "teach-1"
    assert doc["severity"] == "P1"
    assert doc["trade"] == "plumbing"
    assert doc["metric"] == "flow_lpm"
    assert doc["value"] == 312.4
    assert doc["inhibited"] is False
    assert doc["inhibited_by"] is None
    assert doc["escalated"] is False


def test_title_with_no_value_is_rendered_plainly(campus, calendar):
    engine = make(
        campus,
        calendar,
        """
        rules:
          - id: offline
            kind: offline
            select: {device: ahu-teach-1-1}
            severity: P3
            trade: general
            title: "{device} offline at {value:.1f}"
        """,
    )
    (ev,) = engine.status("ahu-teach-1-1", False, at(0))
    assert ev.title == "ahu-teach-1-1 offline at 0.0"


# -------------------------------------------------------------------- kinds


def test_rate_fires_on_a_fast_fall_only(campus, calendar):
    engine = make(
        campus,
        calendar,
        """
        rules:
          - id: pressure-drop
            kind: rate
            select: {device: wm-teach-1-f2}
            metric: pressure_kpa
            params: {window: 10m, fall: 60}
            severity: P2
            trade: plumbing
            title: "{device} {value:.0f} kPa"
        """,
    )
    # A slow fall: 5 kPa a minute, never 60 within 10 minutes.
    slow = [{"pressure_kpa": 400 - 5 * i} for i in range(30)]
    assert series(engine, "wm-teach-1-f2", slow) == []
    fast = [{"pressure_kpa": v} for v in (250, 240, 220, 200)]
    events = series(engine, "wm-teach-1-f2", fast, start=30)
    # Minute 31: 295 (minute 21) -> 240 is 55; minute 32: 290 (minute 22) -> 220 is 70.
    assert states(events) == [(32, "firing")]
    assert events[0][1].detail == "fell 70 within 0:10:00"


def test_flatline_flat_series_fires_after_window_noisy_never(campus, calendar):
    text = """
    rules:
      - id: stuck
        kind: flatline
        select: {device: [ahu-teach-1-1, ahu-teach-1-2]}
        metric: supply_temp_c
        params: {window: 30m, tolerance: 0.05}
        severity: P4
        trade: hvac
        title: "{device} stuck at {value:.2f}"
    """
    engine = make(campus, calendar, text)
    flat = [{"supply_temp_c": 13.0 + (0.02 if i % 2 else 0)} for i in range(40)]
    events = series(engine, "ahu-teach-1-1", flat)
    assert states(events) == [(30, "firing")]
    noisy = [{"supply_temp_c": 13.0 + (0.3 if i % 7 == 0 else 0)} for i in range(180)]
    assert series(engine, "ahu-teach-1-2", noisy) == []


def test_flatline_resolves_when_the_value_moves(campus, calendar):
    engine = make(
        campus,
        calendar,
        """
        rules:
          - id: stuck
            kind: flatline
            select: {device: ahu-teach-1-1}
            metric: supply_temp_c
            params: {window: 30m}
            severity: P4
            trade: hvac
            title: "{device}"
        """,
    )
    series(engine, "ahu-teach-1-1", [{"supply_temp_c": 13.0}] * 31)
    events = series(engine, "ahu-teach-1-1", [{"supply_temp_c": 14.0}], start=31)
    assert states(events) == [(31, "resolved")]


def test_counter_backwards_fires_normal_increase_does_not(campus, calendar):
    text = """
    rules:
      - id: meter-fault
        kind: counter
        select: {device: [wm-teach-1-f2, wm-teach-1-f3]}
        metric: volume_m3
        params: {tolerance: 0.001}
        clear_for: 1h
        severity: P4
        trade: plumbing
        title: "Meter fault at {device}: {detail}"
    """
    engine = make(campus, calendar, text)
    normal = [{"volume_m3": 1234.5 + 0.02 * i} for i in range(120)]
    assert series(engine, "wm-teach-1-f3", normal) == []
    events = series(engine, "wm-teach-1-f2", [{"volume_m3": v} for v in (1234.5, 1234.6, 3.2)])
    assert states(events) == [(2, "firing")]
    assert events[0][1].title == "Meter fault at wm-teach-1-f2: went back from 1234.6 to 3.2"


def test_counter_max_per_hour(campus, calendar):
    engine = make(
        campus,
        calendar,
        """
        rules:
          - id: meter-jump
            kind: counter
            select: {device: pm-teach-1-f1}
            metric: energy_kwh
            params: {max_per_hour: 500}
            severity: P4
            trade: electrical
            title: "{detail}"
        """,
    )
    ok = [{"energy_kwh": 1000 + 5 * i} for i in range(10)]  # 300 kWh an hour
    assert series(engine, "pm-teach-1-f1", ok) == []
    events = series(engine, "pm-teach-1-f1", [{"energy_kwh": 1060}], start=10)
    assert states(events) == [(10, "firing")]  # 15 kWh in a minute: 900 an hour


NIGHT = """
rules:
  - id: night-flow
    kind: night_flow
    select: {device: [wm-teach-1-f2, wm-teach-1-f3]}
    metric: flow_lpm
    params: {hours: "01:00-05:00", level: 2.5}
    severity: P3
    trade: plumbing
    title: "Night flow at {device}: {value:.1f} L/min never stopped"
"""


def night(engine: Engine, device: str, at_night: float) -> list[tuple[str, AlertEvent]]:
    """Readings every 10 minutes from 2026-10-13 00:00 to 08:00 local: 40 L/min
    in the evening and morning, ``at_night`` between 01:00 and 05:00."""
    start = ms("2026-10-13T00:00+08:00")
    out = []
    for i in range(49):
        ts = start + i * 10 * MIN
        local = datetime.fromtimestamp(ts / 1000, SHANGHAI)
        v = at_night if 1 <= local.hour < 5 else 40.0
        out += [(local.strftime("%H:%M"), ev) for ev in engine.feed(device, ts, {"flow_lpm": v})]
    return out


def test_night_flow_fires_after_the_window_when_the_minimum_stays_high(campus, calendar):
    engine = make(campus, calendar, NIGHT)
    events = night(engine, "wm-teach-1-f2", at_night=3.0)
    assert [(t, ev.state) for t, ev in events] == [("05:00", "firing")]
    ev = events[0][1]
    assert ev.value == 3.0
    assert ev.title == "Night flow at wm-teach-1-f2: 3.0 L/min never stopped"


def test_night_flow_quiet_night_does_not_fire(campus, calendar):
    engine = make(campus, calendar, NIGHT)
    assert night(engine, "wm-teach-1-f3", at_night=0.1) == []
    assert engine.firing() == []


def balance_engine(campus, calendar) -> Engine:
    return make(
        campus,
        calendar,
        """
        rules:
          - id: water-balance
            kind: balance
            select: {device: wm-teach-1}
            metric: flow_lpm
            params: {window: 15m, tolerance_pct: 5, min_abs: 20}
            severity: P2
            trade: plumbing
            title: "Water unaccounted for below {device}: {value:+.0f} L/min"
        """,
    )


def feed_tree(engine: Engine, minute: float, parent: float, children: list[float], campus):
    kids = [d.id for d in campus.children["wm-teach-1"]]
    assert len(kids) == len(children)
    out = []
    for kid, v in zip(kids, children, strict=True):
        out += engine.feed(kid, at(minute), {"flow_lpm": v})
    out += engine.feed("wm-teach-1", at(minute), {"flow_lpm": parent})
    return out


def test_balance_parent_equal_to_children_is_quiet(campus, calendar):
    engine = balance_engine(campus, calendar)
    for m in range(30):
        assert feed_tree(engine, m, 150.0, [10, 20, 30, 40, 50], campus) == []


def test_balance_parent_above_children_fires(campus, calendar):
    engine = balance_engine(campus, calendar)
    for m in range(5):
        assert feed_tree(engine, m, 150.0, [10, 20, 30, 40, 50], campus) == []
    events = []
    for m in range(5, 20):
        events += [(m, ev) for ev in feed_tree(engine, m, 210.0, [10, 20, 30, 40, 50], campus)]
    # The window's average gap passes max(5 %, 20 L/min) at minute 7: (3 x 60) / 8 = 22.5.
    assert states(events) == [(7, "firing")]
    assert events[0][1].device == "wm-teach-1"
    assert events[0][1].title == "Water unaccounted for below wm-teach-1: +22 L/min"


def test_balance_waits_for_every_child(campus, calendar):
    engine = balance_engine(campus, calendar)
    kids = [d.id for d in campus.children["wm-teach-1"]]
    for m in range(10):  # one child never reports: no verdict, however far apart
        for kid in kids[:-1]:
            engine.feed(kid, at(m), {"flow_lpm": 10.0})
        assert engine.feed("wm-teach-1", at(m), {"flow_lpm": 500.0}) == []


MIXED_AIR = """
rules:
  - id: mixed-air-too-cold
    kind: expression
    select: {device: ahu-teach-1-1}
    params:
      expr: "mixed_temp_c < min(return_temp_c, outdoor_temp_c) - 1"
      value: mixed_temp_c
    severity: P3
    trade: hvac
    title: "{device} mixed air {value:.1f} °C"
"""


def air(mixed: float, ret: float = 24.0, outdoor: float = 19.5) -> dict[str, float]:
    return {"mixed_temp_c": mixed, "return_temp_c": ret, "outdoor_temp_c": outdoor, "fan_on": 1}


def test_expression_fires_only_when_true(campus, calendar):
    engine = make(campus, calendar, MIXED_AIR)
    fine = [air(20.0), air(18.6), air(18.5), air(26.0, ret=24.0, outdoor=30.0)]
    assert series(engine, "ahu-teach-1-1", fine) == []  # 18.5 < 18.5 is false
    events = series(engine, "ahu-teach-1-1", [air(18.4)], start=4)
    assert states(events) == [(4, "firing")]
    assert events[0][1].value == 18.4
    assert events[0][1].title == "ahu-teach-1-1 mixed air 18.4 °C"
    # A reading without one of the names gives no verdict: it does not resolve.
    assert series(engine, "ahu-teach-1-1", [{"mixed_temp_c": 25.0}], start=5) == []
    events = series(engine, "ahu-teach-1-1", [air(20.0)], start=6)
    assert states(events) == [(6, "resolved")]


STALE = """
rules:
  - id: device-silent
    kind: stale
    select: {kind: power, building: teach-1}
    params: {intervals: 3}
    clear_for: 1m
    severity: P3
    trade: general
    inhibits_children: true
    title: "No data from {device} since {since}"
"""


def test_stale_fires_after_silence_and_resolves_when_readings_resume(campus, calendar):
    engine = make(campus, calendar, STALE)
    series(engine, "pm-teach-1-f1", [{"power_kw": 10.0}] * 3)  # minutes 0, 1, 2
    assert engine.advance(at(4)) == []
    assert engine.advance(at(5)) == []  # silent for exactly 3 x 60 s: not yet
    (ev,) = engine.advance(at(5) + 1000)
    assert (ev.state, ev.device, ev.ts_ms) == ("firing", "pm-teach-1-f1", at(5) + 1000)
    assert ev.value == pytest.approx(181.0)
    assert engine.advance(at(6)) == []  # still silent: no second event
    # Readings resume at minute 7.
    events = []
    for m in range(7, 12):
        events += [(m, ev) for ev in engine.feed("pm-teach-1-f1", at(m), {"power_kw": 10.0})]
        events += [(m, ev) for ev in engine.advance(at(m) + 30_000)]
    assert [s for _, s in states(events)] == ["resolved"]
    (_, resolved), *_ = events
    assert at(8) <= resolved.ts_ms <= at(10)


def test_stale_never_heard_device_does_not_fire(campus, calendar):
    engine = make(campus, calendar, STALE)
    assert engine.advance(at(600)) == []


def test_offline_via_status(campus, calendar):
    engine = make(
        campus,
        calendar,
        """
        rules:
          - id: device-offline
            kind: offline
            select: {device: ahu-teach-1-1}
            for: 5m
            clear_for: 1m
            severity: P3
            trade: general
            title: "{device} ({building}) is offline"
        """,
    )
    assert engine.status("ahu-teach-1-1", False, at(0)) == []
    assert engine.advance(at(4)) == []
    (ev,) = engine.advance(at(5))
    assert (ev.state, ev.ts_ms, ev.title) == ("firing", at(5), "ahu-teach-1-1 (teach-1) is offline")
    assert engine.status("ahu-teach-1-1", True, at(6)) == []
    assert engine.advance(at(6.5)) == []
    (ev,) = engine.advance(at(7))
    assert (ev.state, ev.ts_ms) == ("resolved", at(7))


def test_offline_back_online_within_for_does_not_fire(campus, calendar):
    engine = make(
        campus,
        calendar,
        """
        rules:
          - id: device-offline
            kind: offline
            select: {device: ahu-teach-1-1}
            for: 5m
            severity: P3
            trade: general
            title: "{device}"
        """,
    )
    engine.status("ahu-teach-1-1", False, at(0))
    assert engine.status("ahu-teach-1-1", True, at(2)) == []
    assert engine.advance(at(30)) == []


COMPOSITE = """
rules:
  - id: room-hot
    kind: threshold
    select: {device: dorm-1-r102}
    metric: temp_c
    params: {above: 30}
    severity: P3
    trade: hvac
    title: "{room} hot"
  - id: room-stuffy
    kind: threshold
    select: {device: dorm-1-r102}
    metric: co2_ppm
    params: {above: 2000}
    severity: P3
    trade: hvac
    title: "{room} stuffy"
  - id: hot-and-stuffy
    kind: composite
    select: {device: dorm-1-r102}
    params: {op: all, rules: [room-hot, room-stuffy]}
    severity: P2
    trade: hvac
    title: "{building} room {room} is hot and stuffy"
  - id: hot-or-stuffy
    kind: composite
    select: {device: dorm-1-r102}
    params: {op: any, rules: [room-hot, room-stuffy]}
    severity: P4
    trade: hvac
    title: "{building} room {room} is hot or stuffy"
"""


def room(temp: float, co2: float) -> dict[str, float]:
    return {"temp_c": temp, "co2_ppm": co2, "humidity_pct": 50, "occupancy": 1, "smoke": 0}


def fired(events: Iterable[tuple[float, AlertEvent]]) -> list[tuple[float, str, str]]:
    return [(m, ev.rule, ev.state) for m, ev in events]


def test_composite_all_and_any(campus, calendar):
    engine = make(campus, calendar, COMPOSITE)
    r = "dorm-1-r102"
    assert series(engine, r, [room(24, 800)], step=5) == []
    events = series(engine, r, [room(31, 800)], start=5)
    assert sorted(fired(events)) == [(5, "hot-or-stuffy", "firing"), (5, "room-hot", "firing")]
    events = series(engine, r, [room(31, 2100)], start=10)
    assert sorted(fired(events)) == [
        (10, "hot-and-stuffy", "firing"),
        (10, "room-stuffy", "firing"),
    ]
    events = series(engine, r, [room(24, 2100)], start=15)
    assert sorted(fired(events)) == [
        (15, "hot-and-stuffy", "resolved"),
        (15, "room-hot", "resolved"),
    ]
    events = series(engine, r, [room(24, 700)], start=20)
    assert sorted(fired(events)) == [
        (20, "hot-or-stuffy", "resolved"),
        (20, "room-stuffy", "resolved"),
    ]


# ----------------------------------------------------------------- schedule


def test_hours_schedule_is_in_local_time(campus, calendar):
    text = BURST.replace("    for: 3m\n", "    schedule: {hours: '01:00-05:00'}\n")
    engine = make(campus, calendar, text)
    assert series(engine, "wm-teach-1-f2", flow(*[300] * 60), start=120) == []  # 12:00-12:59
    # 02:00 local next day is 18:00Z: a UTC reading of the schedule would miss it.
    start = (ms("2026-10-14T02:00+08:00") - T0) / MIN
    events = series(engine, "wm-teach-1-f2", flow(300, 300), start=start)
    assert [(ev.state, ev.ts_ms) for _, ev in events] == [("firing", ms("2026-10-14T02:00+08:00"))]


def test_leaving_the_scheduled_hours_resolves(campus, calendar):
    text = BURST.replace("    for: 3m\n", "    schedule: {hours: '01:00-05:00'}\n")
    text = text.replace("clear_for: 10m", "clear_for: 0s")
    engine = make(campus, calendar, text)
    start = (ms("2026-10-14T04:58+08:00") - T0) / MIN
    events = series(engine, "wm-teach-1-f2", flow(300, 300, 300), start=start)
    assert [(ev.state, ev.ts_ms) for _, ev in events] == [
        ("firing", ms("2026-10-14T04:58+08:00")),
        ("resolved", ms("2026-10-14T05:00+08:00")),
    ]


def test_holidays_rule_does_not_fire_in_term(campus, calendar):
    text = BURST.replace("    for: 3m\n", "    schedule: {periods: [holidays]}\n")
    engine = make(campus, calendar, text)
    assert series(engine, "wm-teach-1-f2", flow(*[300] * 30)) == []  # 13 October: term
    # National Day (a closure inside the autumn term) counts as holidays.
    start = (ms("2026-10-20T10:00+08:00") - T0) / MIN
    assert series(engine, "wm-teach-1-f2", flow(*[300] * 5), start=start) == []  # term again
    other = make(campus, calendar, text)
    national_day = (ms("2026-10-02T10:00+08:00") - T0) / MIN
    events = series(other, "wm-teach-1-f2", flow(300), start=national_day)
    assert states(events) == [(national_day, "firing")]


# -------------------------------------------------------------- maintenance

MAINTENANCE = BURST.replace(
    "    severity: P1\n",
    "    severity: P1\n"
    "    maintenance:\n"
    "      - {start: '2026-10-13T09:00+08:00', end: '2026-10-13T10:30+08:00',"
    " devices: ['wm-teach-1-*'], reason: valve replacement}\n",
).replace("device: wm-teach-1-f2", "device: [wm-teach-1-f2, wm-teach-2-f2]")


def test_maintenance_holds_back_alerts_of_covered_devices(campus, calendar):
    engine = make(campus, calendar, MAINTENANCE)
    covered = series(engine, "wm-teach-1-f2", flow(*[300] * 30))
    other = series(engine, "wm-teach-2-f2", flow(*[300] * 30))
    assert covered == []
    assert states(other) == [(3, "firing")]
    # After the window (10:30) the condition still holds: the alert goes out.
    events = series(engine, "wm-teach-1-f2", flow(300, 300), start=30)
    assert states(events) == [(30, "firing")]
    assert events[0][1].since_ms == at(0)


def test_maintenance_condition_gone_within_the_window_says_nothing(campus, calendar):
    engine = make(campus, calendar, MAINTENANCE)
    assert series(engine, "wm-teach-1-f2", flow(*[300] * 10, *[100] * 15)) == []
    assert series(engine, "wm-teach-1-f2", flow(*[100] * 30), start=25) == []
    assert engine.advance(at(120)) == []
    assert engine.firing() == []


# --------------------------------------------------------------- escalation


def test_escalation_raises_severity_after_the_condition_held(campus, calendar):
    engine = make(
        campus,
        calendar,
        """
        rules:
          - id: dorm-overheating
            kind: threshold
            select: {device: dorm-1-r102}
            metric: temp_c
            params: {above: 32}
            for: 15m
            severity: P2
            escalate: {after: 1h, to: P1}
            trade: hvac
            title: "{building} room {room} at {value:.1f} °C ({severity})"
        """,
    )
    events = series(engine, "dorm-1-r102", [{"temp_c": 34.0}] * 30, step=5)  # 0..145 min
    assert [(m, ev.state, ev.severity, ev.escalated) for m, ev in events] == [
        (15, "firing", "P2", False),
        (60, "firing", "P1", True),
    ]
    first, second = (ev for _, ev in events)
    assert second.topic == "ops/alerts/P1/dorm-1"
    assert second.title == "dorm-1 room 102 at 34.0 °C (P1)"
    assert second.dedup_key == first.dedup_key
    assert second.since_ms == first.since_ms == at(0)


OFFLINE_ESCALATING = """
rules:
  - id: device-offline
    kind: offline
    select: {device: ahu-teach-1-1}
    severity: P3
    escalate: {after: 30m, to: P2}
    trade: general
    title: "{device} offline"
"""


def test_an_offline_alert_escalates_while_the_device_stays_offline(campus, calendar):
    engine = make(campus, calendar, OFFLINE_ESCALATING)
    (ev,) = engine.status("ahu-teach-1-1", False, at(0))
    assert (ev.state, ev.severity) == ("firing", "P3")
    events = [ev for m in range(1, 61) for ev in engine.advance(at(m))]
    assert [(ev.state, ev.severity, ev.escalated) for ev in events] == [("firing", "P2", True)]


def test_an_offline_alert_held_back_by_maintenance_goes_out_after_the_window(campus, calendar):
    text = OFFLINE_ESCALATING.replace("    escalate: {after: 30m, to: P2}\n", "").replace(
        "    trade: general\n",
        "    trade: general\n"
        "    maintenance:\n"
        "      - {start: '2026-10-13T09:00+08:00', end: '2026-10-13T10:30+08:00',"
        " devices: [ahu-teach-1-1]}\n",
    )
    engine = make(campus, calendar, text)
    assert engine.status("ahu-teach-1-1", False, at(0)) == []
    events = [(m, ev) for m in range(1, 60) for ev in engine.advance(at(m))]
    assert states(events) == [(30, "firing")]


# --------------------------------------------------------------- inhibition

OUTAGE = """
rules:
  - id: power-outage
    kind: threshold
    select: {kind: power, building: teach-1}
    metric: power_kw
    params: {below: 0.5}
    severity: P1
    trade: electrical
    inhibits_children: true
    title: "Power lost at {device}"
"""


def test_inhibition_parent_first(campus, calendar):
    engine = make(campus, calendar, OUTAGE)
    (parent,) = engine.feed("pm-teach-1", at(0), {"power_kw": 0.0})
    assert parent.inhibited_by is None
    (child,) = engine.feed("pm-teach-1-f1", at(0), {"power_kw": 0.0})
    assert child.inhibited_by == {"rule": "power-outage", "device": "pm-teach-1"}
    assert child.to_json()["inhibited"] is True


def test_inhibition_child_first_then_parent(campus, calendar):
    engine = make(campus, calendar, OUTAGE)
    (child,) = engine.feed("pm-teach-1-f3", at(0), {"power_kw": 0.0})
    assert child.inhibited_by is None
    events = engine.feed("pm-teach-1", at(1), {"power_kw": 0.0})
    assert [(ev.device, ev.state, ev.inhibited_by) for ev in events] == [
        ("pm-teach-1", "firing", None),
        ("pm-teach-1-f3", "firing", {"rule": "power-outage", "device": "pm-teach-1"}),
    ]


def test_a_sibling_does_not_inhibit(campus, calendar):
    engine = make(campus, calendar, OUTAGE)
    engine.feed("pm-teach-1-f1", at(0), {"power_kw": 0.0})
    (ev,) = engine.feed("pm-teach-1-f2", at(0), {"power_kw": 0.0})
    assert ev.inhibited_by is None


def test_inhibition_by_a_silent_parent(campus, calendar):
    engine = make(campus, calendar, STALE)
    for m in range(3):
        engine.feed("pm-teach-1", at(m), {"power_kw": 50.0})
        engine.feed("pm-teach-1-f1", at(m), {"power_kw": 10.0})
    events = engine.advance(at(6))
    by_device = {ev.device: ev for ev in events}
    assert set(by_device) == {"pm-teach-1", "pm-teach-1-f1"}
    assert by_device["pm-teach-1-f1"].inhibited_by == {
        "rule": "device-silent",
        "device": "pm-teach-1",
    }


# ------------------------------------------------------------ broken rules


class _Fragile(Threshold):
    """A threshold whose condition raises above 500 (a bug in a kind)."""

    name = "fragile"

    def condition(self):
        rule_metric = self.rule.metric

        class Boom(ThresholdCondition):
            def observe(self, source, ts_ms, metrics):
                if metrics.get("power_kw", 0) > 500:
                    raise ZeroDivisionError("boom")
                return super().observe(source, ts_ms, metrics)

        return Boom(rule_metric, self.p)


FRAGILE = """
rules:
  - id: fragile
    kind: fragile
    select: {device: pm-teach-1-f1}
    metric: power_kw
    params: {above: 100}
    for: 5m
    severity: P3
    trade: general
    title: "fragile {device}"
  - id: high-load
    kind: threshold
    select: {device: pm-teach-1-f1}
    metric: power_kw
    params: {above: 100}
    for: 2m
    severity: P3
    trade: electrical
    title: "high load {device}"
"""


@pytest.fixture
def fragile(monkeypatch, campus, calendar) -> Engine:
    monkeypatch.setitem(KINDS, "fragile", _Fragile)
    return make(campus, calendar, FRAGILE)


def test_a_rule_that_raises_is_disabled_and_the_others_go_on(fragile):
    assert fragile.feed("pm-teach-1-f1", at(0), {"power_kw": 600.0}) == []
    assert fragile.stats.disabled == {"fragile": "ZeroDivisionError: boom"}
    events = series(fragile, "pm-teach-1-f1", [{"power_kw": 600.0}] * 10, start=1)
    assert [(m, ev.rule, ev.state) for m, ev in events] == [(2, "high-load", "firing")]
    assert list(fragile.stats.disabled) == ["fragile"]


def test_a_disabled_rule_does_not_fire_later(fragile):
    fragile.feed("pm-teach-1-f1", at(0), {"power_kw": 200.0})  # fragile: pending
    fragile.feed("pm-teach-1-f1", at(1), {"power_kw": 600.0})  # raises: disabled
    assert "fragile" in fragile.stats.disabled
    events = [ev for m in range(2, 10) for ev in fragile.advance(at(m))]
    assert [ev.rule for ev in events if ev.state == "firing"] == ["high-load"]


# ------------------------------------------------------------------ anomaly

ANOMALY = """
rules:
  - id: anomaly-consumption
    kind: anomaly
    select: {device: [pm-teach-1-f1, pm-teach-1-f2]}
    params: {threshold: 4.0}
    for: 2m
    severity: P3
    trade: general
    title: "Unusual consumption at {device} (score {value:.1f})"
"""


class StubScorer:
    """Scores pm-teach-1-f1 high, everything else low; records its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def score(self, device: Device, ts_ms: int, metrics: Mapping[str, float]) -> float | None:
        self.calls.append((device.id, ts_ms))
        return 9.5 if device.id == "pm-teach-1-f1" else 1.0


def test_anomaly_without_a_scorer_is_silent(campus, calendar):
    engine = make(campus, calendar, ANOMALY)
    for dev in ("pm-teach-1-f1", "pm-teach-1-f2"):
        assert series(engine, dev, [{"power_kw": 1e4}] * 30) == []
    assert engine.stats.disabled == {}


def test_anomaly_with_a_scorer_fires_on_high_scores(campus, calendar):
    scorer = StubScorer()
    engine = make(campus, calendar, ANOMALY, scorer=scorer)
    events = series(engine, "pm-teach-1-f1", [{"power_kw": 10.0}] * 5)
    assert series(engine, "pm-teach-1-f2", [{"power_kw": 10.0}] * 5) == []
    assert states(events) == [(2, "firing")]
    assert events[0][1].value == 9.5
    assert events[0][1].title == "Unusual consumption at pm-teach-1-f1 (score 9.5)"
    assert ("pm-teach-1-f1", at(0)) in scorer.calls


def test_a_second_engine_does_not_silence_the_first_ones_scorer(campus, calendar):
    first = make(campus, calendar, ANOMALY, scorer=StubScorer())
    make(campus, calendar, ANOMALY)
    events = series(first, "pm-teach-1-f1", [{"power_kw": 10.0}] * 5)
    assert states(events) == [(2, "firing")]


class BatchStub(StubScorer):
    """A stub that also scores runs, recording each run it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.runs: list[tuple[str, int]] = []
        self.ready: dict[int, float] = {}

    def prepare(
        self, device: Device, readings: Sequence[tuple[int, Mapping[str, float]]]
    ) -> list[float]:
        self.runs.append((device.id, len(readings)))
        self.ready = {ts: 9.5 if device.id == "pm-teach-1-f1" else 1.0 for ts, _ in readings}
        return list(self.ready.values())

    def score(self, device: Device, ts_ms: int, metrics: Mapping[str, float]) -> float | None:
        if ts_ms in self.ready:
            return self.ready[ts_ms]
        return super().score(device, ts_ms, metrics)


def test_a_run_of_readings_is_scored_in_one_call_with_the_same_alerts(campus, calendar):
    run = [(at(i), {"power_kw": 10.0}) for i in range(5)]
    batch = BatchStub()
    engine = make(campus, calendar, ANOMALY, scorer=batch)
    events = engine.feed_many("pm-teach-1-f1", run)
    assert batch.runs == [("pm-teach-1-f1", 5)] and batch.calls == []  # one call, none alone
    one_by_one = make(campus, calendar, ANOMALY, scorer=StubScorer())
    expected = [ev for ts, m in run for ev in one_by_one.feed("pm-teach-1-f1", ts, m)]
    assert [(e.state, e.ts_ms, e.value) for e in events] == [
        (e.state, e.ts_ms, e.value) for e in expected
    ]
    assert [e.state for e in events] == ["firing"]
    # a device no anomaly rule watches is not scored at all; a lone reading is scored alone
    assert engine.feed_many("wm-teach-1-f1", [(at(9), {"flow_lpm": 1.0})] * 2) == []
    engine.feed_many("pm-teach-1-f2", [(at(9), {"power_kw": 1.0})])
    assert batch.runs == [("pm-teach-1-f1", 5)]
    assert batch.calls == [("pm-teach-1-f2", at(9))]


class _RaisingScorer:
    def score(self, device: Device, ts_ms: int, metrics: Mapping[str, float]) -> float | None:
        raise RuntimeError("model file truncated")


def test_a_scorer_that_raises_disables_only_the_anomaly_rule(campus, calendar):
    text = ANOMALY + OUTAGE.split("rules:\n", 1)[1]
    engine = make(campus, calendar, text, scorer=_RaisingScorer())
    events = series(engine, "pm-teach-1-f1", [{"power_kw": 0.0}] * 3)
    assert engine.stats.disabled == {"anomaly-consumption": "RuntimeError: model file truncated"}
    assert [(ev.rule, ev.state) for _, ev in events] == [("power-outage", "firing")]


class _RaisingBatch(_RaisingScorer):
    def prepare(
        self, device: Device, readings: Sequence[tuple[int, Mapping[str, float]]]
    ) -> list[float]:
        raise RuntimeError("model file truncated")


def test_a_run_whose_model_fails_is_treated_as_one_by_one(campus, calendar, caplog):
    """A model that fails on a run is asked again reading by reading, so the
    failure disables the anomaly rule as it would have without runs."""
    text = ANOMALY + OUTAGE.split("rules:\n", 1)[1]
    engine = make(campus, calendar, text, scorer=_RaisingBatch())
    events = engine.feed_many("pm-teach-1-f1", [(at(i), {"power_kw": 0.0}) for i in range(3)])
    assert engine.stats.disabled == {"anomaly-consumption": "RuntimeError: model file truncated"}
    assert [(ev.rule, ev.state) for ev in events] == [("power-outage", "firing")]
    assert "failed on a run of readings" in caplog.text


# --------------------------------------------------------- snapshot/restore


def test_snapshot_restore_keeps_a_firing_alert(campus, calendar):
    before = make(campus, calendar, BURST)
    series(before, "wm-teach-1-f2", flow(*[300] * 5))
    snap = json.loads(json.dumps(before.snapshot()))  # what a restart reads back
    after = make(campus, calendar, BURST)
    assert after.restore(snap) == 1
    assert [(s.rule.id, s.device.id) for s in after.firing()] == [("water-burst", "wm-teach-1-f2")]
    # The next active reading: no duplicate firing event.
    assert series(after, "wm-teach-1-f2", flow(300, 290), start=5) == []
    # A reading older than the snapshot's is still late after the restart.
    assert after.feed("wm-teach-1-f2", at(4), {"flow_lpm": 0}) == []
    assert after.stats.late == 1
    events = series(after, "wm-teach-1-f2", flow(*[100] * 11), start=7)
    assert states(events) == [(17, "resolved")]
    assert events[0][1].since_ms == at(0)
    assert after.firing() == []


def test_snapshot_restore_keeps_a_clearing_alert_clearing(campus, calendar):
    before = make(campus, calendar, BURST)
    series(before, "wm-teach-1-f2", flow(*[300] * 4, *[100] * 5))  # clear since minute 4
    after = make(campus, calendar, BURST)
    after.restore(json.loads(json.dumps(before.snapshot())))
    assert after.advance(at(13)) == []
    (ev,) = after.advance(at(14))
    assert (ev.state, ev.ts_ms) == ("resolved", at(14))


def test_restore_drops_alerts_of_rules_gone(campus, calendar):
    before = make(campus, calendar, BURST)
    series(before, "wm-teach-1-f2", flow(*[300] * 5))
    other = make(campus, calendar, OUTAGE)
    assert other.restore(json.loads(json.dumps(before.snapshot()))) == 0
    assert other.firing() == []


def test_stale_still_watches_after_a_restore(campus, calendar):
    before = make(campus, calendar, STALE)
    series(before, "pm-teach-1-f1", [{"power_kw": 10.0}] * 3)
    after = make(campus, calendar, STALE)
    after.restore(json.loads(json.dumps(before.snapshot())))
    series(after, "pm-teach-1-f1", [{"power_kw": 10.0}] * 2, start=3)  # then silence
    assert after.advance(at(7)) == []
    events = after.advance(at(8))
    assert [(ev.state, ev.device) for ev in events] == [("firing", "pm-teach-1-f1")]
