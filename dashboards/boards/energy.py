"""Energy: kWh per building per day, top consumers, night base load.

Every figure comes from each building's main power meter (or the campus main
meter for campus totals), read from ``"$rp"."power"`` so ranges of months or
years are answered by the hourly or daily rollups.
"""

from __future__ import annotations

import typing

from grafana_foundation_sdk.builders import bargauge
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.models import common as cm

from dashboards.boards import metering
from dashboards.boards.common import (
    Board,
    Context,
    building_variable,
    rp_variable,
    stat_panel,
    target,
    thresholds,
    timeseries_panel,
    transform,
)
from dashboards.influxql import datasource_ref

UID = "campus-energy"


def top_consumers(ctx: Context, kind: str, counter: str, unit: str, title: str) -> bargauge.Panel:
    """Bars of what each building's main meter counted in the range, largest first."""
    query = metering.consumed_by_building(kind, counter, ctx.building_meters(kind), "total")
    return (
        bargauge.Panel()
        .title(title)
        .description("Consumption over the time range per building (main meters), largest first.")
        .datasource(datasource_ref())
        .unit(unit)
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


def build(ctx: Context) -> dict[str, typing.Any]:
    """The energy board."""
    mains, campus = ctx.building_meters("power"), ctx.total_meters("power")
    board = Board(
        UID,
        "Energy",
        "Electricity per building and day, top consumers, night base load.",
        ctx,
        since="now-30d",
        refresh="15m",
    )
    board.variables(building_variable('"power"', multi=True), rp_variable())
    board.annotations(by_building=True)
    board.row("Campus").add(
        stat_panel(
            "Campus energy in range",
            "kwatth",
            [target(metering.consumed("power", "energy_kwh", campus, rp=True))],
            "Energy the campus main meter counted over the time range.",
            w=6,
            h=6,
        ),
        timeseries_panel(
            "Campus energy per day",
            "kwatth",
            [target(metering.per_day_campus(ctx, "power", "energy_kwh", campus), alias="campus")],
            f"Energy per local day ({ctx.tz}) at the campus main meter.",
            w=18,
            h=6,
            bars=True,
        ),
    )
    board.row("Buildings").add(
        timeseries_panel(
            "Energy per building per day",
            "kwatth",
            [
                target(
                    metering.per_day_by_building(ctx, "power", "energy_kwh", mains),
                    alias="$tag_building",
                )
            ],
            f"kWh per local day ({ctx.tz}) at each building's main meter, stacked.",
            w=16,
            h=12,
            bars=True,
            stacked=True,
        ),
        top_consumers(ctx, "power", "energy_kwh", "kwatth", "Top consumers"),
        timeseries_panel(
            "Night base load",
            "kwatt",
            [target(metering.night_floor(ctx, "power", "power_kw", mains), alias="$tag_building")],
            "Lowest 4-hour mean demand of each day (the 01:00-05:00 window on a normal night):"
            " what stays on when the building is empty. A rise means equipment left running.",
            w=12,
        ),
        timeseries_panel(
            "Demand per building",
            "kwatt",
            [
                target(
                    metering.per_building_gauge("power", "power_kw", mains), alias="$tag_building"
                )
            ],
            "Mean demand per interval at each building's main meter.",
            w=12,
        ),
    )
    return board.build()
