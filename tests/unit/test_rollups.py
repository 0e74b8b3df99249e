"""Retention parsing, rollup queries and the ``rp`` choice table (no server)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from campus.errors import CampusError
from campus.rollups import (
    AGE_GRID_START,
    DAILY,
    DAY_MS,
    HOUR_MS,
    HOURLY,
    KindRollup,
    building_points,
    continuous_queries,
    day_offset_ms,
    day_spans,
    go_duration_ms,
    has_continuous_queries,
    kind_rollups,
    longest,
    parse_retention,
    range_points,
    raw_age_points,
    rollup_select,
    rollup_statements,
    rp_variable_query,
)

POWER = KindRollup("power", ("power_kw",), ("energy_kwh",))
SHANGHAI = 16 * HOUR_MS  # local midnight is 16:00 UTC


@pytest.mark.parametrize(
    ("text", "literal", "ms"),
    [
        ("90d", "90d", 90 * DAY_MS),
        (" 48H ", "48h", 48 * HOUR_MS),
        ("520w", "520w", 520 * 7 * DAY_MS),
        ("INF", "INF", None),
        ("inf", "INF", None),
        ("0", "INF", None),  # InfluxDB 2's way of saying forever
    ],
)
def test_retentions_read(text: str, literal: str, ms: int | None) -> None:
    ret = parse_retention(text)
    assert (ret.text, ret.ms) == (literal, ms)


@pytest.mark.parametrize("text", ["", "90", "ninety days", "1h30m", "30m", "0d", "-1d", "6000w"])
def test_bad_retentions_say_what_works(text: str) -> None:
    with pytest.raises(CampusError, match="retention"):
        parse_retention(text)


def test_longest_retention_keeps_raw_data_until_rolled_up() -> None:
    days90, inf = parse_retention("90d"), parse_retention("INF")
    assert longest(days90, inf) == inf
    assert longest(inf, days90) == inf
    assert longest(days90, parse_retention("52w")).text == "52w"
    assert longest(days90, parse_retention("7d")) == days90
    assert longest(days90, None) == days90


@pytest.mark.parametrize(
    ("version", "policies"),
    [("1.6.7~rc0", True), ("1.8.10", True), ("v2.7.10", False), ("2.7.1", False), ("3.2.0", False)],
)
def test_only_influxdb_1_runs_continuous_queries(version: str, policies: bool) -> None:
    assert has_continuous_queries(version) is policies


def test_influx_durations_read_back() -> None:
    assert go_duration_ms("2160h0m0s") == 90 * DAY_MS
    assert go_duration_ms("24h0m0s") == DAY_MS
    assert go_duration_ms("0s") is None  # infinite


def test_metrics_per_kind_come_from_the_registry(campus) -> None:
    kinds = {k.kind: k for k in kind_rollups(campus)}
    assert set(kinds) == {"power", "water", "hvac", "dorm"}
    assert kinds["power"].counters == ("energy_kwh",)
    assert "power_kw" in kinds["power"].gauges and "energy_kwh" not in kinds["power"].gauges
    assert kinds["water"].counters == ("volume_m3",)
    # air handlers add metrics to the hvac kind: the union of its devices
    assert {"supply_temp_c", "oa_damper_pct"} <= set(kinds["hvac"].gauges)


@pytest.mark.parametrize(
    ("zone", "offset"),
    [
        ("Asia/Shanghai", SHANGHAI),
        ("UTC", 0),
        ("Asia/Kolkata", 18 * HOUR_MS + 30 * 60_000),  # UTC+5:30
        ("America/New_York", 5 * HOUR_MS),  # standard time, UTC-5
        ("Australia/Sydney", 14 * HOUR_MS),  # standard time (July), UTC+10
    ],
)
def test_local_days_start_at_the_zones_midnight(zone: str, offset: int) -> None:
    assert day_offset_ms(zone) == offset
    if zone in ("Asia/Shanghai", "UTC", "Asia/Kolkata"):  # no daylight saving
        midnight = datetime(2026, 3, 1, tzinfo=ZoneInfo(zone)).astimezone(UTC)
        assert int(midnight.timestamp() * 1000) % DAY_MS == offset


def test_unknown_zone_is_a_clear_error() -> None:
    with pytest.raises(CampusError, match="unknown time zone 'Mars/Olympus'"):
        day_offset_ms("Mars/Olympus")


def test_hourly_rollup_reads_raw_and_keeps_every_tag() -> None:
    q = rollup_select("campus", POWER, HOURLY, SHANGHAI)
    assert q == (
        'SELECT mean("power_kw") AS "power_kw", min("power_kw") AS "power_kw_min", '
        'max("power_kw") AS "power_kw_max", last("energy_kwh") AS "energy_kwh" '
        'INTO "campus"."hourly"."power" FROM "campus"."autogen"."power" GROUP BY time(1h), *'
    )


def test_daily_rollup_reads_hourly_in_local_days() -> None:
    q = rollup_select("campus", POWER, DAILY, SHANGHAI, (1000, 2000))
    assert 'min("power_kw_min") AS "power_kw_min"' in q
    assert 'max("power_kw_max") AS "power_kw_max"' in q
    assert 'FROM "campus"."hourly"."power" WHERE time >= 1000ms AND time < 2000ms' in q
    assert q.endswith("GROUP BY time(1d, 16h), *")
    # a half-hour zone shifts the hours too
    india = rollup_select("campus", POWER, HOURLY, day_offset_ms("Asia/Kolkata"))
    assert india.endswith("GROUP BY time(1h, 30m), *")


def test_a_changed_kind_gets_new_query_names_and_only_it() -> None:
    water = KindRollup("water", ("flow_lpm",), ("volume_m3",))
    before = continuous_queries("campus", [POWER, water], SHANGHAI)
    again = continuous_queries("campus", [POWER, water], SHANGHAI)
    assert [cq.name for cq in before] == [cq.name for cq in again]
    assert len({cq.name for cq in before}) == 4
    more = KindRollup("power", ("power_kw", "voltage_v"), ("energy_kwh",))
    after = continuous_queries("campus", [more, water], SHANGHAI)
    changed = {cq.name for cq in after} ^ {cq.name for cq in before}
    assert len(changed) == 4 and all("_power_" in name for name in changed)
    hourly = next(cq for cq in before if cq.rp == "hourly" and cq.kind == "power")
    assert hourly.statement.startswith(f'CREATE CONTINUOUS QUERY "{hourly.name}" ON "campus" ')
    assert "RESAMPLE EVERY 15m FOR 2h BEGIN SELECT" in hourly.statement


def test_backfill_covers_whole_local_days_in_chunks() -> None:
    start = int(datetime(2026, 3, 3, 10, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp() * 1000)
    end = start + 20 * DAY_MS
    spans = list(day_spans(start, end, 7, SHANGHAI))
    assert all(a % DAY_MS == SHANGHAI and b % DAY_MS == SHANGHAI for a, b in spans)
    assert spans[0][0] <= start < spans[0][0] + DAY_MS and spans[-1][1] >= end
    assert [b - a for a, b in spans] == [7 * DAY_MS, 7 * DAY_MS, 7 * DAY_MS]
    assert all(b == c for (_, b), (c, _) in itertools.pairwise(spans))
    steps = rollup_statements("campus", [POWER], start, end, SHANGHAI)
    assert [s.rp for s in steps] == ["hourly"] * 3 + ["daily"] * 3  # daily reads hourly


def test_rp_variable_is_one_query_on_grafana_macros() -> None:
    q = rp_variable_query()
    assert q.startswith('SELECT "rp", max("rank") FROM (')  # the value comes first
    assert "$__from" in q and "$__to" in q and ";" not in q
    assert '"meta"."rp_config"' in q


def test_choice_table_rows() -> None:
    assert len(range_points()) == 3
    assert raw_age_points(parse_retention("INF")) == []
    rows = raw_age_points(parse_retention("90d"))
    assert len(rows) == 36525  # one per day of 2000-2099
    first = int(AGE_GRID_START.timestamp() * 1000)
    assert rows[0].endswith(f"start_ms={float(first)!r} {first + 90 * DAY_MS}")


def test_building_positions(campus) -> None:
    lines = building_points(campus)
    assert len(lines) == len(campus.buildings)
    assert all(line.startswith("buildings,building=") and line.endswith(" 0") for line in lines)
    assert all("lat=" in line and "name_zh=" in line and "floors=" in line for line in lines)
