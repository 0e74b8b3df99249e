"""Unit tests of ``rules/replay.py``: recorded data through the real engine.

Small CSVs are written to ``tmp_path``: unit conversion, bad rows, an injected
fault, out-of-order rows, gaps, mapping mistakes, the day-level evaluation and
the CLI. InfluxDB replay runs against a fake client that answers the queries
(the real server is tested elsewhere). One test replays the LBNL SZCAV file,
when present, and checks the figures docs/rules-ahu.md states.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from campus.errors import ConfigError
from rules.model import load_rules, load_rules_text
from rules.replay import (
    Recording,
    conversion,
    evaluate,
    evaluation_lines,
    influx_queries,
    load_mapping_text,
    replay_csv,
    replay_influx,
    report_lines,
)
from tests.conftest import CONFIG, ROOT, SHARED

PACK = CONFIG / "rules-ahu.yaml"
LBNL = SHARED / "datasets" / "lbnl-fdd-ahu"
DOC = ROOT / "docs" / "rules-ahu.md"

MAPPING = """\
device: {id: test-ahu, model: ahu, building: lab}
time_column: time
time_format: "%Y-%m-%d %H:%M"
timezone: Etc/GMT+6
label_column: fault
max_gap: 1h
columns:
  sat: {metric: supply_temp_c, unit: degF}
  sp: {metric: setpoint_c, unit: degF}
  mat: {metric: mixed_temp_c, unit: degF}
  rat: {metric: return_temp_c, unit: degF}
  oat: {metric: outdoor_temp_c, unit: degF}
  fan: {metric: fan_on}
  cc: {metric: cooling_valve_pct, unit: fraction}
  hc: {metric: heating_valve_pct, unit: fraction}
  oad: {metric: oa_damper_pct, unit: fraction}
"""
HEADER = "time,sat,sp,mat,rat,oat,fan,cc,hc,oad,fault"
# A healthy air handler cooling to 55 °F; the outdoor and return air differ by
# too little for the outdoor-air checks.
NORMAL = {"sat": 55, "sp": 55, "mat": 70, "rat": 72, "oat": 65, "fan": 1, "cc": 0.5, "hc": 0}
NORMAL |= {"oad": 0.4, "fault": 0}
# The cooling valve is wide open but the supply air stays at 70 °F: G36 FC13.
NO_COOLING = NORMAL | {"sat": 70, "cc": 1.0, "fault": 1}

T0 = datetime(2024, 7, 1, 0, 0)


def rows(start: datetime, minutes: int, values: dict[str, float]) -> list[str]:
    """One CSV line per minute from ``start`` with ``values``."""
    cols = HEADER.split(",")[1:]
    return [
        ",".join(
            [(start + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M")]
            + [f"{values[c]:g}" for c in cols]
        )
        for i in range(minutes)
    ]


def write(tmp_path: Path, lines: list[str], name: str = "ahu.csv") -> Path:
    p = tmp_path / name
    p.write_text("\n".join([HEADER, *lines]) + "\n", encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def rec(campus) -> Recording:  # type: ignore[no-untyped-def]
    return load_mapping_text(MAPPING, "test-mapping.yaml", campus)


@pytest.fixture(scope="module")
def pack(rec: Recording):  # type: ignore[no-untyped-def]
    return load_rules(PACK, rec.rules_campus)


def fired(result) -> set[str]:  # type: ignore[no-untyped-def]
    return {e.rule for e in result.events if e.state == "firing"}


# ------------------------------------------------------------------ mapping


def test_units_convert_to_the_metric_s_unit() -> None:
    assert conversion("degF", "degC")(212) == pytest.approx(100)
    assert conversion("degF", "degC")(32) == pytest.approx(0)
    assert conversion("K", "degC")(273.15) == pytest.approx(0)
    assert conversion("fraction", "%")(0.4) == pytest.approx(40)
    assert conversion("pct", "%")(40) == pytest.approx(40)
    assert conversion("inH2O", "Pa")(1.4) == pytest.approx(348.72, abs=0.01)
    assert conversion("kW", "W")(2) == pytest.approx(2000)
    # scale and offset apply to the raw value, in the column's unit
    assert conversion("degF", "degC", scale=0.1, offset=32)(100) == pytest.approx(5 * 10 / 9)
    assert conversion(None, "degC", scale=2, offset=1)(3) == 7
    with pytest.raises(ValueError, match="cannot convert degF to the metric's unit %"):
        conversion("degF", "%")
    with pytest.raises(ValueError, match="unknown unit 'furlong'"):
        conversion("furlong", "degC")


def test_a_standalone_device_gets_a_campus_of_its_own(campus, rec: Recording) -> None:
    assert [d.id for d in rec.campus] == ["test-ahu"]
    assert rec.device.model == "ahu" and rec.device.building == "lab"
    assert rec.device.metrics == campus.config.models["ahu"].metrics
    assert rec.campus.timezone == "Etc/GMT+6"
    # rules are checked against the campus plus the device: the shipped file loads
    assert rec.rules_campus.get("test-ahu") is not None
    assert len(rec.rules_campus) == len(campus) + 1
    load_rules(CONFIG / "rules.yaml", rec.rules_campus)
    assert len(load_rules(PACK, campus)) == 12  # the pack lints against the demo campus


def test_fahrenheit_and_fractions_are_converted(tmp_path, rec, pack, calendar) -> None:
    csv = write(tmp_path, rows(T0, 10, NORMAL))
    result = replay_csv(csv, rec, pack, rec.campus, calendar, keep_series=True)
    assert result.rows == result.readings == 10 and result.bad_rows == 0
    s = {m: pts[0][1] for (_, m), pts in result.series.items()}
    assert s["supply_temp_c"] == pytest.approx(12.78, abs=0.01)  # 55 °F
    assert s["mixed_temp_c"] == pytest.approx(21.11, abs=0.01)  # 70 °F
    assert s["cooling_valve_pct"] == pytest.approx(50)
    assert s["oa_damper_pct"] == pytest.approx(40)
    assert s["fan_on"] == 1
    first = result.series[("test-ahu", "supply_temp_c")][0][0]
    assert first == int(datetime(2024, 7, 1, 6, 0, tzinfo=UTC).timestamp() * 1000)  # UTC-6
    assert not result.events


def test_values_outside_the_metric_s_range_are_dropped(tmp_path, rec, pack, calendar) -> None:
    lines = rows(T0, 5, NORMAL | {"sat": 200})  # 93 °C: above the ahu's 60 °C
    result = replay_csv(write(tmp_path, lines), rec, pack, rec.campus, calendar, keep_series=True)
    assert result.dropped == {"supply_temp_c": 5}
    assert "outside [-20, 60]" in result.dropped_examples["supply_temp_c"]
    assert ("test-ahu", "supply_temp_c") not in result.series
    assert result.readings == 5  # the other metrics still go in


# ------------------------------------------------------------------ bad rows


def test_bad_rows_are_skipped_counted_and_located(tmp_path, rec, pack, calendar) -> None:
    good = rows(T0, 6, NORMAL)
    lines = [
        good[0],
        "2024-07-01 00:01,55,55,#VALUE!,72,65,1,0.5,0,0.4,0",  # line 3
        good[2],
        "yesterday noon,55,55,70,72,65,1,0.5,0,0.4,0",  # line 5
        "2024-07-01 00:04,55,55",  # line 6: short
        good[5],
        "2024-07-01 00:06,nan,55,70,72,65,1,0.5,0,0.4,0",  # line 8: not finite
        "2024-07-01 00:07,,55,70,72,65,1,0.5,0,0.4,0",  # empty cell: no reading of it
        "",
    ]
    result = replay_csv(write(tmp_path, lines), rec, pack, rec.campus, calendar)
    assert result.rows == 8 and result.bad_rows == 4 and result.readings == 4
    assert result.bad == {
        "unreadable value in 'mat'": 1,
        "unreadable time": 1,
        "wrong number of fields": 1,
        "unreadable value in 'sat'": 1,
    }
    assert result.bad_examples == [
        "ahu.csv:3: column 'mat': '#VALUE!' is not a number",
        "ahu.csv:5: time 'yesterday noon' does not match '%Y-%m-%d %H:%M'",
        "ahu.csv:6: 3 fields, the header has 11",
        "ahu.csv:8: column 'sat': 'nan' is not a number",
    ]
    text = "\n".join(report_lines(result))
    assert "SKIPPED 1 rows: unreadable time" in text
    assert "ahu.csv:3: column 'mat'" in text


# ------------------------------------------------------------------- faults


def test_an_injected_fault_fires_the_expected_rule(tmp_path, rec, pack, calendar) -> None:
    lines = rows(T0, 180, NORMAL)
    lines += rows(T0 + timedelta(minutes=180), 120, NO_COOLING)
    lines += rows(T0 + timedelta(minutes=300), 60, NORMAL)
    result = replay_csv(write(tmp_path, lines), rec, pack, rec.campus, calendar)
    assert fired(result) == {"ahu-fc13-sat-high-full-cooling", "ahu-sat-off-setpoint"}
    fc13 = [e for e in result.events if e.rule == "ahu-fc13-sat-high-full-cooling"]
    assert [e.state for e in fc13] == ["firing", "resolved"]
    # for: 30m after the fault began at 03:00 local; clear_for: 15m after it ended
    assert result.local(fc13[0].ts_ms).strftime("%H:%M") == "03:30"
    assert result.local(fc13[1].ts_ms).strftime("%H:%M") == "05:15"
    assert fc13[0].value == pytest.approx(21.1, abs=0.05)
    assert "above set point with cooling at 100 %" in fc13[0].title
    (f,) = [f for f in result.firings if f.rule == "ahu-fc13-sat-high-full-cooling"]
    assert result.local(f.held_ms).strftime("%H:%M") == "05:00" and not f.open
    table = "\n".join(report_lines(result))
    assert re.search(
        r"FIRED ahu-fc13-sat-high-full-cooling +test-ahu +1x +first 2024-07-01T03:30", table
    )
    assert "quiet ahu-fc2-mat-too-low" in table


def test_out_of_order_rows_are_sorted(tmp_path, rec, pack, calendar) -> None:
    lines = rows(T0, 60, NORMAL) + rows(T0 + timedelta(minutes=60), 60, NO_COOLING)
    ordered = replay_csv(write(tmp_path, lines, "a.csv"), rec, pack, rec.campus, calendar)
    shuffled = lines[::-1][:50] + lines[:70]  # every row once, many backwards
    assert sorted(shuffled) == sorted(lines)
    result = replay_csv(write(tmp_path, shuffled, "b.csv"), rec, pack, rec.campus, calendar)
    assert result.out_of_order > 0 and "SORTED" in "\n".join(report_lines(result))
    assert [e.to_json() for e in result.events] == [e.to_json() for e in ordered.events]
    assert fired(result) == {"ahu-fc13-sat-high-full-cooling", "ahu-sat-off-setpoint"}


def test_repeated_times_keep_the_first_row(tmp_path, rec, pack, calendar) -> None:
    lines = rows(T0, 5, NORMAL)
    lines.insert(3, lines[2].replace(",55,55,", ",99,55,"))
    result = replay_csv(write(tmp_path, lines), rec, pack, rec.campus, calendar, keep_series=True)
    assert result.duplicates == 1 and result.readings == 5
    assert max(v for _, v in result.series[("test-ahu", "supply_temp_c")]) < 13


def test_a_gap_restarts_the_engine_so_alerts_do_not_carry_over(
    tmp_path, rec, pack, calendar
) -> None:
    day1 = rows(T0, 1440 - 120, NORMAL) + rows(T0 + timedelta(minutes=1320), 120, NO_COOLING)
    day3 = rows(T0 + timedelta(days=2), 1440, NORMAL)
    result = replay_csv(write(tmp_path, day1 + day3), rec, pack, rec.campus, calendar)
    assert len(result.segments) == 2
    fc13 = [f for f in result.firings if f.rule == "ahu-fc13-sat-high-full-cooling"]
    assert len(fc13) == 1 and fc13[0].open
    assert result.local(fc13[0].end_ms - 1).strftime("%m-%d %H:%M") == "07-01 23:59"
    ev = evaluate(result)
    assert [(d.day.isoformat(), d.faulted, d.rules) for d in ev.days] == [
        ("2024-07-01", True, ["ahu-fc13-sat-high-full-cooling", "ahu-sat-off-setpoint"]),
        ("2024-07-03", False, []),
    ]


def test_day_level_evaluation(tmp_path, rec, pack, calendar) -> None:
    # day 1 faulted and caught; day 2 healthy but a fault late on day 1 goes on
    # past midnight; day 3 faulted, missed; day 4 healthy and quiet
    d1 = rows(T0, 600, NORMAL | {"fault": 1}) + rows(T0 + timedelta(minutes=600), 840, NO_COOLING)
    d2 = rows(T0 + timedelta(days=1), 60, NO_COOLING | {"fault": 0})
    d2 += rows(T0 + timedelta(days=1, minutes=60), 1380, NORMAL)
    d3 = rows(T0 + timedelta(days=2), 1440, NORMAL | {"fault": 1})
    d4 = rows(T0 + timedelta(days=3), 1440, NORMAL)
    result = replay_csv(write(tmp_path, d1 + d2 + d3 + d4), rec, pack, rec.campus, calendar)
    ev = evaluate(result)
    days = {d.day.isoformat(): d for d in ev.days}
    assert days["2024-07-02"].carried and days["2024-07-02"].rules
    assert ev.pack.detected == [days["2024-07-01"].day]
    assert ev.pack.false_alarms == [days["2024-07-02"].day]
    assert (ev.pack.faulted_days, ev.pack.unfaulted_days, ev.pack.detection_rate) == (2, 2, 0.5)
    assert len(ev.rules["ahu-fc13-sat-high-full-cooling"].detected) == 1
    assert ev.rules["ahu-fc2-mat-too-low"].detected == []
    text = "\n".join(evaluation_lines(ev))
    assert "2024-07-02  ok     ahu-fc13" in text and "(carried over from the day before)" in text
    assert re.search(r"PACK \(any rule\) +1/2 \(50%\) +1/2", text)
    # the clear_for wait after a fault ends at midnight is not a detection
    d2b = rows(T0 + timedelta(days=1), 1440, NORMAL)
    ev2 = evaluate(replay_csv(write(tmp_path, d1 + d2b, "b.csv"), rec, pack, rec.campus, calendar))
    assert ev2.pack.false_alarms == []


def test_evaluation_needs_labels(tmp_path, campus, calendar) -> None:
    rec = load_mapping_text(MAPPING.replace("label_column: fault\n", ""), "m.yaml", campus)
    result = replay_csv(write(tmp_path, rows(T0, 3, NORMAL)), rec, [], rec.campus, calendar)
    with pytest.raises(ValueError, match="label_column"):
        evaluate(result)


# ----------------------------------------------------------- mapping errors


def issues(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [str(i) for i in exc.value.issues]


def test_an_unknown_column_is_named_with_a_suggestion(tmp_path, campus, calendar) -> None:
    text = MAPPING.replace("  sat: {", "  SAT_F: {")
    rec = load_mapping_text(text, "m.yaml", campus)
    with pytest.raises(ConfigError) as exc:
        replay_csv(write(tmp_path, rows(T0, 3, NORMAL)), rec, [], rec.campus, calendar)
    (msg,) = issues(exc)
    assert msg.startswith("m.yaml:8: columns.SAT_F: no column 'SAT_F' in ")
    assert "did you mean 'sat'?" in msg and "(columns: 'time', 'sat'," in msg


def test_a_missing_time_column_is_an_error(tmp_path, campus, calendar) -> None:
    rec = load_mapping_text(MAPPING.replace("time_column: time", "time_column: ts"), "m", campus)
    with pytest.raises(ConfigError) as exc:
        replay_csv(write(tmp_path, rows(T0, 3, NORMAL)), rec, [], rec.campus, calendar)
    assert issues(exc)[0].startswith("m:2: time_column: no column 'ts' in ")


def test_an_unknown_metric_is_named_with_the_known_ones(campus) -> None:
    text = MAPPING.replace("metric: mixed_temp_c", "metric: mixed_temp")
    with pytest.raises(ConfigError) as exc:
        load_mapping_text(text, "m.yaml", campus)
    (msg,) = issues(exc)
    assert msg.startswith(
        "m.yaml:10: columns.mat.metric: unknown metric 'mixed_temp' of device 'test-ahu'; "
        "did you mean 'mixed_temp_c'? (known: supply_temp_c, return_temp_c,"
    )


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "unit: degF}\n  sp",
            "unit: degC.}\n  sp",
            "m.yaml:8: columns.sat.unit: Value error, unknown unit 'degC.'",
        ),
        (
            "{metric: fan_on}",
            "{metric: fan_on, unit: degF}",
            "m.yaml:13: columns.fan.unit: cannot convert degF to the metric's unit bool",
        ),
        (
            "metric: setpoint_c",
            "metric: supply_temp_c",
            "m.yaml:9: columns.sp.metric: metric 'supply_temp_c' is already fed by 'sat'",
        ),
        ("model: ahu,", "model: ahu9,", "m.yaml:1: device.model: unknown model 'ahu9'"),
        (
            "id: test-ahu,",
            "id: ahu-admin-1-1,",
            "m.yaml:1: device.id: 'ahu-admin-1-1' is a device of the campus",
        ),
        ("id: test-ahu,", "id: 'bad id',", "m.yaml:1: device.id: String should match pattern"),
        (
            "building: lab}",
            "building: lab, colour: red}",
            "m.yaml:1: device.colour: Extra inputs are not permitted",
        ),
        (
            "timezone: Etc/GMT+6",
            "timezone: Mars/Olympus",
            "m.yaml:4: timezone: Value error, unknown time zone 'Mars/Olympus'",
        ),
        (
            'time_format: "%Y-%m-%d %H:%M"',
            "time_format: ymd",
            "m.yaml:3: time_format: Value error, use a strptime format",
        ),
        ("max_gap: 1h", "max_gap: soon", "m.yaml:6: max_gap: Value error, cannot read duration"),
    ],
)
def test_mapping_mistakes_name_line_and_field(campus, old: str, new: str, expected: str) -> None:
    assert old in MAPPING
    with pytest.raises(ConfigError) as exc:
        load_mapping_text(MAPPING.replace(old, new), "m.yaml", campus)
    assert any(m.startswith(expected) for m in issues(exc)), issues(exc)


def test_a_device_of_the_campus_replays_in_the_campus(tmp_path, campus, calendar) -> None:
    text = MAPPING.replace(
        "device: {id: test-ahu, model: ahu, building: lab}", "device: ahu-admin-1-1"
    )
    rec = load_mapping_text(text, "m.yaml", campus)
    assert rec.campus is campus and rec.device.id == "ahu-admin-1-1"
    pack = load_rules(PACK, campus)
    lines = rows(T0, 60, NORMAL) + rows(T0 + timedelta(minutes=60), 60, NO_COOLING)
    result = replay_csv(write(tmp_path, lines), rec, pack, campus, calendar)
    assert {e.device for e in result.events} == {"ahu-admin-1-1"}
    assert "ahu-fc13-sat-high-full-cooling" in fired(result)
    with pytest.raises(ConfigError, match="no device 'ahu-nowhere' in the campus"):
        load_mapping_text(text.replace("ahu-admin-1-1", "ahu-nowhere"), "m.yaml", campus)


# ------------------------------------------------------------------------ cli


def test_cli_replays_a_csv_and_prints_json(tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from campus.cli import main

    monkeypatch.chdir(ROOT)
    mapping = tmp_path / "m.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    lines = rows(T0, 60, NORMAL) + rows(T0 + timedelta(minutes=60), 60, NO_COOLING)
    csv = write(tmp_path, lines)
    args = ["rules", "replay", "--csv", str(csv), "--mapping", str(mapping), "--rules", str(PACK)]
    out = CliRunner().invoke(main, [*args, "--json", "--evaluate"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["rows"] == 120 and doc["skipped_rows"] == {}
    assert {a["rule"] for a in doc["alerts"]} == {
        "ahu-fc13-sat-high-full-cooling",
        "ahu-sat-off-setpoint",
    }
    assert doc["evaluation"]["pack"]["detected_days"] == 1
    plain = CliRunner().invoke(main, [*args, "--plot", str(tmp_path / "png")])
    assert plain.exit_code == 0, plain.output
    assert "FIRED ahu-fc13-sat-high-full-cooling" in plain.stdout
    assert (tmp_path / "png" / "ahu.png").stat().st_size > 10_000
    bad = CliRunner().invoke(main, [*args[:-2], "--rules", str(mapping)])
    assert bad.exit_code == 1
    assert "a rules file holds one key: rules" in bad.output


def test_cli_wants_one_source() -> None:
    from click.testing import CliRunner

    from campus.cli import main

    out = CliRunner().invoke(main, ["rules", "replay"])
    assert out.exit_code == 2 and "give either --csv FILE --mapping MAPPING.yaml, or --influx" in (
        out.output
    )


# --------------------------------------------------------------------- influx


class FakeInflux:
    """Answers replay queries from canned points: {(kind, device): [(ts_ms, fields)]}."""

    def __init__(self, points: dict[tuple[str, str], list[tuple[int, dict[str, float]]]]) -> None:
        self.points = points
        self.queries: list[str] = []

    def query(self, q: str, *, epoch: str = "ms", database: bool = True) -> list[dict[str, Any]]:
        self.queries.append(q)
        m = re.search(r'FROM "(\w+)" WHERE time >= (\d+)ms AND time < (\d+)ms', q)
        assert m, q
        kind, a, b = m.group(1), int(m.group(2)), int(m.group(3))
        fields = re.findall(r'"(\w+)"', q.split(" FROM ")[0])
        out = []
        for (k, device), pts in self.points.items():
            if k != kind or ("'" in q and f"'{device}'" not in q):
                continue
            values = [[t] + [f.get(x) for x in fields] for t, f in pts if a <= t < b]
            if values:
                out.append(
                    {
                        "name": kind,
                        "tags": {"device": device},
                        "columns": ["time", *fields],
                        "values": values,
                    }
                )
        return out


def test_influx_queries_are_quoted_and_chunked(campus) -> None:
    devs = [campus.get("ahu-admin-1-1"), campus.get("ahu-admin-1-2")]
    (q,) = influx_queries("hvac", devs, 1000, 2000, every=False)
    assert q.startswith('SELECT "cooling_valve_pct", "fan_on", ')
    assert ' FROM "hvac" WHERE time >= 1000ms AND time < 2000ms AND ' in q
    assert q.endswith(
        '("device" = \'ahu-admin-1-1\' OR "device" = \'ahu-admin-1-2\') GROUP BY "device"'
    )
    (every,) = influx_queries("hvac", devs, 1000, 2000, every=True)
    assert every.endswith('WHERE time >= 1000ms AND time < 2000ms GROUP BY "device"')


def test_replay_influx_feeds_chunks_in_time_order(campus, calendar) -> None:
    rules = load_rules_text(
        """
rules:
  - id: too-warm
    kind: expression
    select: {model: ahu}
    params: {expr: "supply_temp_c > 20", value: supply_temp_c}
    for: 30m
    clear_for: 5m
    severity: P3
    trade: hvac
    title: "{device} {value}"
""",
        "r.yaml",
        campus,
    )
    start = datetime(2026, 10, 13, tzinfo=UTC)
    t0 = int(start.timestamp() * 1000)
    warm = [(t0 + i * 60_000, {"supply_temp_c": 25.0 if i >= 100 else 13.0}) for i in range(240)]
    cool = [(t0 + i * 60_000 + 30_000, {"supply_temp_c": 13.0}) for i in range(240)]
    client = FakeInflux(
        {
            ("hvac", "ahu-admin-1-1"): warm,
            ("hvac", "ahu-admin-1-2"): cool,
            ("hvac", "ahu-teach-1-1"): warm,
        }
    )
    result = replay_influx(
        client,
        start,
        start + timedelta(hours=4),
        rules,
        campus,
        calendar,
        ["ahu-admin-1-*"],
        chunk=timedelta(hours=1),
    )
    assert len(client.queries) == 4
    assert all("'ahu-admin-1-1'" in q and "'ahu-teach-1-1'" not in q for q in client.queries)
    assert result.readings == 480 and result.rows == 480
    (ev,) = [e for e in result.events if e.state == "firing"]
    assert (ev.rule, ev.device) == ("too-warm", "ahu-admin-1-1")
    assert ev.ts_ms == t0 + 130 * 60_000  # warm from minute 100, for: 30m
    assert result.firings[0].open
    with pytest.raises(ValueError, match=r"no device of the campus matches nothing-\*"):
        replay_influx(
            client, start, start + timedelta(hours=1), rules, campus, calendar, ["nothing-*"]
        )


# ----------------------------------------------------------------- LBNL SZCAV


def cells(score: Any) -> str:
    """How docs/rules-ahu.md writes a score: ``| 3/14 (21 %) | 0/1 |``."""
    rate = f"{score.detection_rate:.0%}".replace("%", " %")
    found = f"{len(score.detected)}/{score.faulted_days} ({rate})"
    return f"| {found} | {len(score.false_alarms)}/{score.unfaulted_days} |"


@pytest.mark.skipif(not (LBNL / "SZCAV.csv").exists(), reason="LBNL data set not present")
def test_lbnl_szcav_figures_are_the_documented_ones(campus, calendar) -> None:
    from rules.replay import load_mapping

    rec = load_mapping(CONFIG / "replay" / "lbnl-szcav.yaml", campus)
    rules = load_rules(PACK, rec.rules_campus)
    result = replay_csv(LBNL / "SZCAV.csv", rec, rules, campus, calendar)
    assert result.rows == 21_600 and result.bad_rows == 90  # '#VALUE!' mixed-air readings
    ev = evaluate(result)
    assert (len(ev.pack.detected), ev.pack.faulted_days) == (11, 14)
    assert (len(ev.pack.false_alarms), ev.pack.unfaulted_days) == (0, 1)
    doc = DOC.read_text(encoding="utf-8")
    table = doc.split("<!-- szcav-table -->")[1].strip().split("\n\n")[0].splitlines()
    rows = {line.split(" | ")[0].strip("| `"): line for line in table[2:]}
    assert set(rows) == {*ev.rules, "pack (any rule)"}
    for rid, score in [*ev.rules.items(), ("pack (any rule)", ev.pack)]:
        assert rows[rid].endswith(cells(score)), (rows[rid], cells(score))
