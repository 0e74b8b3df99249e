"""Grafana's macros and variables expanded as its InfluxDB datasource does (dashboards.macros)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dashboards.macros import (
    MacroError,
    Selection,
    TimeContext,
    calculate_interval,
    choose,
    escape_regex,
    expand,
    format_interval,
    parse_interval,
    parse_time,
    round_interval,
    time_filter,
    undefined_variables,
)

NOW = datetime(2026, 11, 27, 14, 30, 15, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
DAY_MS = 86_400_000


@pytest.mark.parametrize(
    ("raw_ms", "rounded"),
    [
        (5, 1),
        (14, 10),
        (1_499, 1_000),
        (1_500, 2_000),
        (7_499, 5_000),
        (12_000, 10_000),
        (86_400, 60_000),  # one day over 1000 points: 86.4 s -> 1m
        (90_000, 120_000),
        (449_999, 300_000),
        (1_049_999, 900_000),
        (3_600_000, 3_600_000),
        (86_399_999, 43_200_000),
        (86_400_000, 86_400_000),
        (604_800_000, 604_800_000),
        (3_000_000_000, 2_592_000_000),
        (4_000_000_000, 31_536_000_000),
    ],
)
def test_round_interval_follows_grafanas_table(raw_ms: int, rounded: int) -> None:
    assert round_interval(raw_ms) == rounded


@pytest.mark.parametrize(
    ("ms", "text"),
    [(1, "1ms"), (500, "500ms"), (1_000, "1s"), (60_000, "1m"), (120_000, "2m"),
     (3_600_000, "1h"), (43_200_000, "12h"), (DAY_MS, "1d"), (604_800_000, "7d"),
     (2_592_000_000, "30d"), (31_536_000_000, "1y")],
)  # fmt: skip
def test_interval_text_is_the_largest_whole_unit(ms: int, text: str) -> None:
    assert format_interval(ms) == text


def test_auto_interval_for_common_ranges_and_the_minimum() -> None:
    assert calculate_interval(0, DAY_MS, 1000) == 60_000  # 24 h -> 1m
    assert calculate_interval(0, 7 * DAY_MS, 1000) == 600_000  # 7 d -> 10m
    assert calculate_interval(0, 365 * DAY_MS, 1000) == 21_600_000  # 1 y -> 6h
    assert calculate_interval(0, 3_600_000, 1000) == 5_000  # 1 h -> 5s
    assert calculate_interval(0, 3_600_000, 1000, parse_interval("10s")) == 10_000
    assert parse_interval(">1m") == 60_000
    with pytest.raises(MacroError, match="cannot read interval"):
        parse_interval("soon")


def test_time_filter_and_builtins_are_expanded() -> None:
    ctx = TimeContext(1_000, 2_000, 60_000)
    q = 'SELECT mean("power_kw") FROM "power" WHERE $timeFilter GROUP BY time($__interval)'
    assert expand(q, ctx, {}) == (
        'SELECT mean("power_kw") FROM "power" WHERE time >= 1000ms and time <= 2000ms '
        "GROUP BY time(1m)"
    )
    assert time_filter(5, 6) == "time >= 5ms and time <= 6ms"
    assert expand("$__interval_ms ${__from} [[__to]] $__range", ctx, {}) == "60000 1000 2000 1s"


def test_multi_value_becomes_an_escaped_alternation_in_a_regex() -> None:
    building = Selection("building", ("teach-1", "lab.2", "a/b", "c(d)"), multi=True)
    q = 'SELECT * FROM "power" WHERE "building" =~ /^$building$/'
    assert expand(q, TimeContext(0, 1, 1), {"building": building}) == (
        'SELECT * FROM "power" WHERE "building" =~ /^(teach-1|lab\\.2|a\\/b|c\\(d\\))$/'
    )
    one = Selection("building", ("lab.2",), multi=True)
    assert expand("/^${building}$/", TimeContext(0, 1, 1), {"building": one}) == "/^lab\\.2$/"


def test_single_value_is_raw_in_quotes_and_escaped_in_a_regex() -> None:
    sel = {"building": Selection("building", ("lab.2",))}
    ctx = TimeContext(0, 1, 1)
    assert expand("\"building\" = '$building'", ctx, sel) == "\"building\" = 'lab.2'"
    assert expand('"building" =~ /^$building$/', ctx, sel) == '"building" =~ /^lab\\.2$/'
    assert expand('FROM "$building"."x"', ctx, sel) == 'FROM "lab.2"."x"'


def test_all_with_a_custom_all_value_is_used_unescaped() -> None:
    sel = choose("kind", ["power", "water"], {"value": ["$__all"]}, multi=True,
                 include_all=True, all_value=".*")  # fmt: skip
    assert sel.all_selected
    assert expand("/^$kind$/", TimeContext(0, 1, 1), {"kind": sel}) == "/^.*$/"
    plain = choose("kind", ["power", "water"], {}, multi=True, include_all=True)
    assert expand("/^$kind$/", TimeContext(0, 1, 1), {"kind": plain}) == "/^(power|water)$/"


def test_the_saved_current_value_is_kept_only_while_it_is_an_option() -> None:
    assert choose("b", ["x", "y"], {"value": "y"}).values == ("y",)
    assert choose("b", ["x", "y"], {"value": "gone"}).values == ("x",)
    assert choose("b", ["x", "y"], {"value": ["x", "y"]}, multi=True).values == ("x", "y")


def test_formats_and_undefined_variables() -> None:
    sel = {"b": Selection("b", ("x", "y"), multi=True)}
    ctx = TimeContext(0, 1, 1)
    assert expand("${b:csv} ${b:pipe} ${b:singlequote} [[b:raw]]", ctx, sel) == (
        "x,y x|y 'x','y' x,y"
    )
    with pytest.raises(MacroError, match=r"\$room is not defined"):
        expand("WHERE room = '$room'", ctx, sel)
    assert undefined_variables("$timeFilter $__interval $b ${room} [[zone]]", {"b"}) == [
        "room",
        "zone",
    ]


def test_escape_regex_covers_every_metacharacter() -> None:
    assert escape_regex(r"a.b*c+d?e^f$g|h(i)j[k]l{m}n/o\p") == (
        r"a\.b\*c\+d\?e\^f\$g\|h\(i\)j\[k\]l\{m\}n\/o\\p"
    )


def test_grafana_time_expressions() -> None:
    assert parse_time("now", NOW) == NOW_MS
    assert parse_time("now-24h", NOW) == NOW_MS - DAY_MS
    start_of_day = int(datetime(2026, 11, 27, tzinfo=UTC).timestamp() * 1000)
    assert parse_time("now/d", NOW) == start_of_day
    assert parse_time("now/d", NOW, round_up=True) == start_of_day + DAY_MS - 1
    assert parse_time("now-1d/d", NOW) == start_of_day - DAY_MS
    assert parse_time("now-1M", NOW) == int(
        datetime(2026, 10, 27, 14, 30, 15, tzinfo=UTC).timestamp() * 1000
    )
    assert parse_time("2026-11-01T00:00:00Z", NOW) == int(
        datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000
    )
    assert parse_time("1700000000000", NOW) == 1_700_000_000_000
    with pytest.raises(MacroError, match="cannot read time"):
        parse_time("yesterday", NOW)
    with pytest.raises(MacroError, match="cannot read time"):
        parse_time("now-2x", NOW)
