"""`campus rules replay --influx` against a real influxd: readings written to
InfluxDB are replayed through the rules engine, the fan-failure alert fires
inside the faulty stretch and resolves after it, and --devices leaves other
devices out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from campus.influx import InfluxClient
from campus.lineprotocol import point
from campus.registry import load_campus
from campus.settings import Settings
from tests.integration.procs import ROOT, run_campus

DEVICE = "ahu-teach-1-1"  # selected by the glob below
OTHER = "ahu-teach-2-1"  # same fault, but outside the glob: must stay quiet
GLOB = "ahu-teach-1-*"
RULE = "ahu-fan-failure"

MINUTE_MS = 60_000
HOURS = 4
FAULT_FROM = 60  # minutes after the start: fan off while drawing power...
FAULT_TO = 120  # ...until here (exclusive)

NORMAL = {
    "fan_on": 1.0,
    "power_kw": 6.0,
    "supply_temp_c": 13.0,
    "return_temp_c": 24.0,
    "mixed_temp_c": 20.0,
    "outdoor_temp_c": 18.0,
    "setpoint_c": 25.0,
    "cooling_valve_pct": 40.0,
    "heating_valve_pct": 0.0,
    "oa_damper_pct": 30.0,
    "fan_speed_pct": 60.0,
    "static_pressure_pa": 250.0,
    "static_setpoint_pa": 250.0,
}


def iso_ms(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, UTC).isoformat()


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def write_readings(influx: InfluxClient, start_ms: int) -> None:
    """Four hours of one-minute readings of both air handlers, the fan reported
    off while drawing 3 kW from FAULT_FROM to FAULT_TO minutes."""
    campus = load_campus(ROOT / "config" / "campus.yaml")
    lines = []
    for device_id in (DEVICE, OTHER):
        dev = campus.get(device_id)
        assert dev is not None and dev.model == "ahu" and dev.kind == "hvac"
        tags = dev.influx_tags()
        for i in range(HOURS * 60):
            fields = dict(NORMAL)
            # a little movement so the flat-line rule keeps out of the picture
            fields["supply_temp_c"] += 0.1 * (i % 3)
            if FAULT_FROM <= i < FAULT_TO:
                fields.update(fan_on=0.0, power_kw=3.0, fan_speed_pct=0.0)
            lines.append(point("hvac", tags, fields, start_ms + i * MINUTE_MS))
    influx.create_database()
    influx.write(lines)
    got = influx.query(f'SELECT count("fan_on") FROM "hvac" WHERE time >= {start_ms}ms')
    assert got and got[0]["values"][0][1] == 2 * HOURS * 60, got


def test_replay_influx_fires_and_resolves_fan_failure(
    settings: Settings, influx: InfluxClient
) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    start = now - timedelta(days=3)
    start_ms = int(start.timestamp() * 1000)
    write_readings(influx, start_ms)
    fault_from = start_ms + FAULT_FROM * MINUTE_MS
    fault_to = start_ms + FAULT_TO * MINUTE_MS
    end_ms = start_ms + HOURS * 60 * MINUTE_MS

    proc = run_campus(
        settings,
        "rules",
        "replay",
        "--influx",
        "--start",
        iso_ms(start_ms - 10 * MINUTE_MS),
        "--end",
        iso_ms(end_ms + 10 * MINUTE_MS),
        "--devices",
        GLOB,
        "--rules",
        str(ROOT / "config" / "rules.yaml"),
        "--json",
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)

    # every reading of the selected device was read, none of the other one
    assert doc["rows"] == HOURS * 60, doc["rows"]
    assert doc["readings"] == HOURS * 60

    fan = [f for f in doc["firings"] if f["rule"] == RULE and f["device"] == DEVICE]
    assert len(fan) == 1, doc["firings"]
    (firing,) = fan
    fired = ms(firing["start"])
    assert fault_from + 5 * MINUTE_MS <= fired < fault_to, (iso_ms(fired), firing)
    assert not firing["open"], firing
    assert ms(firing["end"]) >= fault_to, firing  # resolved after the stretch
    assert ms(firing["end"]) < end_ms, firing  # ... and before the data ended
    # its condition stopped holding when the stretch ended (end less clear_for)
    assert abs(ms(firing["held_until"]) - fault_to) <= MINUTE_MS, firing

    events = [e for e in doc["events"] if e["rule"] == RULE and e["device"] == DEVICE]
    assert [e["state"] for e in events] == ["firing", "resolved"], events
    assert fault_from + 5 * MINUTE_MS <= events[0]["ts_ms"] < fault_to
    assert events[1]["ts_ms"] >= fault_to

    alerts = [a for a in doc["alerts"] if a["rule"] == RULE and a["device"] == DEVICE]
    assert len(alerts) == 1 and alerts[0]["count"] == 1, doc["alerts"]
    assert ms(alerts[0]["first"]) == fired

    # the device outside --devices raised nothing, though its data is faulty too
    assert not [a for a in doc["alerts"] if a["device"] == OTHER], doc["alerts"]
    assert not [e for e in doc["events"] if e["device"] == OTHER], doc["events"]

    # the table (no --json) tells the same story
    table = run_campus(
        settings,
        "rules",
        "replay",
        "--influx",
        "--start",
        iso_ms(start_ms),
        "--end",
        iso_ms(end_ms),
        "--devices",
        GLOB,
        timeout=120,
    )
    assert table.returncode == 0, table.stderr
    fired_lines = [ln for ln in table.stdout.splitlines() if ln.strip().startswith("FIRED")]
    assert any(RULE in ln and DEVICE in ln for ln in fired_lines), table.stdout
    assert not any(OTHER in ln for ln in fired_lines), table.stdout


def test_replay_influx_bad_times(settings: Settings, influx: InfluxClient) -> None:
    base = ["rules", "replay", "--influx", "--devices", GLOB]

    backwards = run_campus(
        settings, *base, "--start", "2026-01-02T00:00:00Z", "--end", "2026-01-01T00:00:00Z"
    )
    assert backwards.returncode != 0
    assert "end must come after start" in backwards.stderr, backwards.stderr
    assert "Traceback" not in backwards.stderr
    assert not backwards.stdout.strip()

    unreadable = run_campus(settings, *base, "--start", "yesterday-ish", "--end", "now")
    assert unreadable.returncode != 0
    assert "cannot read time 'yesterday-ish'" in unreadable.stderr, unreadable.stderr
    assert "Traceback" not in unreadable.stderr

    bad_end = run_campus(settings, *base, "--start", "-1d", "--end", "2026-13-45")
    assert bad_end.returncode != 0
    assert "cannot read time '2026-13-45'" in bad_end.stderr, bad_end.stderr
    assert "Traceback" not in bad_end.stderr

    no_start = run_campus(settings, "rules", "replay", "--influx")
    assert no_start.returncode != 0
    assert "--influx needs --start" in no_start.stderr, no_start.stderr
