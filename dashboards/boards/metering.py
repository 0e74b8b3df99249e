"""Queries and panels over the metering trees (power and water), shared by the boards.

A meter kind has a gauge (``power_kw``, ``flow_lpm``) and a counter
(``energy_kwh``, ``volume_m3``). Campus totals read only the campus main
meter(s), per-building figures only each building's main meter, so a sub-meter
is never added to the meter above it. Long-range panels read ``"$rp"."<kind>"``
so the rollups answer them; per-day figures use the campus time zone.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass

from grafana_foundation_sdk.builders import bargauge
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.models import common as cm

from campus.influxql import quote_ident
from dashboards.boards.common import (
    Board,
    Context,
    building_variable,
    measurement,
    regex_of,
    rp_variable,
    stat_panel,
    tag_matches_var,
    target,
    thresholds,
    timeseries_panel,
    transform,
)
from dashboards.influxql import datasource_ref

#: Night base load / night flow: the lowest 4-hour mean of each local day. The
#: buckets start at 01:00 local time, so 01:00-05:00 is one of them; on any
#: normal day it is the lowest, and a leak or a plant left running raises it.
NIGHT_BUCKET = "time(4h, 1h)"


def _in(meters: list[str]) -> str:
    return f'"device" =~ {regex_of(meters)}'


def per_building_gauge(kind: str, gauge: str, meters: list[str]) -> str:
    """Mean of ``gauge`` per interval at each building's main meter, one series per building."""
    return (
        f"SELECT mean({quote_ident(gauge)}) FROM {measurement(kind, rp=True)}"
        f" WHERE {_in(meters)} AND {tag_matches_var('building', 'building')} AND $timeFilter"
        ' GROUP BY time($__interval), "building" fill(none)'
    )


def campus_gauge(kind: str, gauge: str, meters: list[str], rp: bool = False) -> str:
    """Sum over the campus meters of the mean of ``gauge`` per interval (one series)."""
    return (
        f'SELECT sum("v") FROM (SELECT mean({quote_ident(gauge)}) AS "v"'
        f" FROM {measurement(kind, rp)} WHERE {_in(meters)} AND $timeFilter"
        ' GROUP BY time($__interval), "device" fill(none))'
        " WHERE $timeFilter GROUP BY time($__interval) fill(none)"
    )


def consumed(kind: str, counter: str, meters: list[str], rp: bool = False) -> str:
    """What ``meters`` counted over the time range; a counter reset is skipped, not subtracted."""
    return (
        f'SELECT sum("d") FROM (SELECT non_negative_difference({quote_ident(counter)}) AS "d"'
        f' FROM {measurement(kind, rp)} WHERE {_in(meters)} AND $timeFilter GROUP BY "device")'
    )


def consumed_by_building(kind: str, counter: str, meters: list[str], unit_alias: str) -> str:
    """What each building's main meter counted over the time range (table: building, total)."""
    return (
        f'SELECT sum("d") AS {quote_ident(unit_alias)} FROM'
        f' (SELECT non_negative_difference({quote_ident(counter)}) AS "d"'
        f" FROM {measurement(kind, rp=True)} WHERE {_in(meters)}"
        f' AND {tag_matches_var("building", "building")} AND $timeFilter GROUP BY "building")'
        ' GROUP BY "building"'
    )


def per_day_by_building(ctx: Context, kind: str, counter: str, meters: list[str]) -> str:
    """Consumption per local day at each building's main meter."""
    return (
        f"SELECT non_negative_difference(last({quote_ident(counter)}))"
        f" FROM {measurement(kind, rp=True)}"
        f" WHERE {_in(meters)} AND {tag_matches_var('building', 'building')} AND $timeFilter"
        f' GROUP BY time(1d), "building" fill(none) {ctx.tz_clause}'
    )


def per_day_campus(ctx: Context, kind: str, counter: str, meters: list[str]) -> str:
    """Campus consumption per local day (sum over the campus meters)."""
    return (
        f'SELECT sum("d") FROM (SELECT non_negative_difference(last({quote_ident(counter)})) AS "d"'
        f" FROM {measurement(kind, rp=True)} WHERE {_in(meters)} AND $timeFilter"
        f' GROUP BY time(1d), "device" {ctx.tz_clause})'
        f" WHERE $timeFilter GROUP BY time(1d) {ctx.tz_clause}"
    )


def night_floor(ctx: Context, kind: str, gauge: str, meters: list[str]) -> str:
    """Lowest 4-hour mean of ``gauge`` per local day and building (night base load, night flow)."""
    return (
        f'SELECT min("m") FROM (SELECT mean({quote_ident(gauge)}) AS "m"'
        f" FROM {measurement(kind, rp=True)} WHERE {_in(meters)}"
        f" AND {tag_matches_var('building', 'building')} AND $timeFilter"
        f' GROUP BY {NIGHT_BUCKET}, "building" {ctx.tz_clause})'
        f' WHERE $timeFilter GROUP BY time(1d), "building" fill(none) {ctx.tz_clause}'
    )


def balance(kind: str, gauge: str, parent: str, children: list[str]) -> str:
    """Parent meter minus the sum of its sub-meters, per interval: what no sub-meter sees
    (losses, leaks, unmetered loads, or a sub-meter that stopped)."""
    return (
        f'SELECT sum("v") FROM'
        f' (SELECT mean({quote_ident(gauge)}) AS "v" FROM {measurement(kind, rp=True)}'
        f" WHERE {_in([parent])} AND $timeFilter GROUP BY time($__interval) fill(none)),"
        f' (SELECT -1 * mean({quote_ident(gauge)}) AS "v" FROM {measurement(kind, rp=True)}'
        f" WHERE {_in(children)} AND $timeFilter"
        ' GROUP BY time($__interval), "device" fill(none))'
        " WHERE $timeFilter GROUP BY time($__interval) fill(none)"
    )


# ------------------------------------------------------------------- panels


@dataclass(frozen=True)
class Metering:
    """One metered utility as the energy and water boards show it."""

    kind: str  # measurement: power, water
    counter: str  # cumulative counter: energy_kwh, volume_m3
    counter_unit: str  # Grafana unit of the counter: kwatth, m3
    gauge: str  # instantaneous value: power_kw, flow_lpm
    gauge_unit: str  # kwatt, flowlpm
    noun: str  # "Energy", "Water": what the counter counts


def board(
    m: Metering, ctx: Context, uid: str, title: str, description: str, since: str, refresh: str
) -> Board:
    """A metering board with its multi-value ``$building`` (of the kind's
    buildings), the hidden ``$rp`` and the ticket annotations."""
    out = Board(uid, title, description, ctx, since=since, refresh=refresh)
    out.variables(building_variable(quote_ident(m.kind), multi=True), rp_variable())
    return out.annotations(by_building=True)


def in_range_stat(m: Metering, ctx: Context) -> typing.Any:
    """What the campus main meter counted over the time range."""
    return stat_panel(
        f"Campus {m.noun.lower()} in range",
        m.counter_unit,
        [target(consumed(m.kind, m.counter, ctx.total_meters(m.kind), rp=True))],
        f"{m.noun} the campus main meter counted over the time range.",
        w=6,
        h=6,
    )


def per_day_panel(m: Metering, ctx: Context, unit_text: str, w: int, h: int = 8) -> typing.Any:
    """Consumption per local day at each building's main meter, stacked bars."""
    return timeseries_panel(
        f"{m.noun} per building per day",
        m.counter_unit,
        [
            target(
                per_day_by_building(ctx, m.kind, m.counter, ctx.building_meters(m.kind)),
                alias="$tag_building",
            )
        ],
        f"{unit_text} per local day ({ctx.tz}) at each building's main meter, stacked.",
        w=w,
        h=h,
        bars=True,
        stacked=True,
    )


def night_panel(m: Metering, ctx: Context, title: str, text: str) -> typing.Any:
    """The lowest 4-hour mean of the gauge per day and building."""
    query = night_floor(ctx, m.kind, m.gauge, ctx.building_meters(m.kind))
    return timeseries_panel(title, m.gauge_unit, [target(query, alias="$tag_building")], text, w=12)


def per_building_panel(
    m: Metering, ctx: Context, title: str, text: str, w: int, h: int = 8
) -> typing.Any:
    """Mean of the gauge per interval at each building's main meter."""
    query = per_building_gauge(m.kind, m.gauge, ctx.building_meters(m.kind))
    return timeseries_panel(
        title, m.gauge_unit, [target(query, alias="$tag_building")], text, w=w, h=h
    )


def top_consumers(m: Metering, ctx: Context) -> bargauge.Panel:
    """Bars of what each building's main meter counted in the range, largest first."""
    query = consumed_by_building(m.kind, m.counter, ctx.building_meters(m.kind), "total")
    return (
        bargauge.Panel()
        .title("Top consumers")
        .description("Consumption over the time range per building (main meters), largest first.")
        .datasource(datasource_ref())
        .unit(m.counter_unit)
        .span(8)
        .height(12)
        .targets([target(query, table=True)])
        .transformations(
            [
                transform("sortBy", {"sort": [{"field": "total", "desc": True}]}),
                transform("organize", {"excludeByName": {"Time": True}}),
            ]
        )
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .value_mode(cm.BarGaugeValueMode.COLOR)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .reduce_options(
            cb.ReduceDataOptions().values(True).calcs(["lastNotNull"]).fields("/^total$/")
        )
        .thresholds(thresholds("blue"))
        .min_viz_height(16)
    )
