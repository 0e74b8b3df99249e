"""Water: flows, night flow per building, balance of parent and sub-meters.

The balance panel draws, for every meter with sub-meters in the registry, the
parent's flow minus the sum of its sub-meters' flows: water that no sub-meter
sees, from a leak between them, an unmetered tap or a sub-meter that stopped.
"""

from __future__ import annotations

import typing

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
)
from dashboards.boards.energy import top_consumers

UID = "campus-water"


def balance_panel(ctx: Context) -> typing.Any:
    """Parent minus children for every water meter with sub-meters."""
    targets = []
    for i, parent in enumerate(ctx.parent_meters("water")):
        children = [c.id for c in ctx.children_of(parent)]
        ref = f"{chr(ord('A') + i % 26)}{i // 26 or ''}"
        targets.append(target(metering.balance("water", "flow_lpm", parent, children), ref, parent))
    return timeseries_panel(
        "Balance: parent minus sub-meters",
        "flowlpm",
        targets,
        "For each meter with sub-meters (registry 'parent' field): its flow minus the sum of"
        " its sub-meters' flows. Near zero is healthy; a lasting positive gap is unmetered"
        " water (a leak between meters), a negative one a parent meter reading low.",
        w=24,
        h=10,
    )


def build(ctx: Context) -> dict[str, typing.Any]:
    """The water board."""
    mains, campus = ctx.building_meters("water"), ctx.total_meters("water")
    board = Board(
        UID,
        "Water",
        "Flows, night flow per building, balance of parent and sub-meters.",
        ctx,
        since="now-7d",
        refresh="5m",
    )
    board.variables(building_variable('"water"', multi=True), rp_variable())
    board.annotations(by_building=True)
    board.row("Campus").add(
        stat_panel(
            "Campus water in range",
            "m3",
            [target(metering.consumed("water", "volume_m3", campus, rp=True))],
            "Water the campus main meter counted over the time range.",
            w=6,
            h=6,
        ),
        timeseries_panel(
            "Campus flow",
            "flowlpm",
            [target(metering.campus_gauge("water", "flow_lpm", campus, rp=True), alias="campus")],
            "Flow at the campus main water meter.",
            w=18,
            h=6,
        ),
    )
    board.row("Buildings").add(
        timeseries_panel(
            "Flow per building",
            "flowlpm",
            [
                target(
                    metering.per_building_gauge("water", "flow_lpm", mains), alias="$tag_building"
                )
            ],
            "Mean flow per interval at each building's main water meter.",
            w=16,
            h=10,
        ),
        top_consumers(ctx, "water", "volume_m3", "m3", "Top consumers"),
        timeseries_panel(
            "Night flow per building",
            "flowlpm",
            [target(metering.night_floor(ctx, "water", "flow_lpm", mains), alias="$tag_building")],
            "Lowest 4-hour mean flow of each day (01:00-05:00 on a normal night). Buildings"
            " should be near zero at night: a steady night flow is a leak or a running tap.",
            w=12,
        ).thresholds(thresholds("green", (5, "orange"), (20, "red"))),
        timeseries_panel(
            "Water per building per day",
            "m3",
            [
                target(
                    metering.per_day_by_building(ctx, "water", "volume_m3", mains),
                    alias="$tag_building",
                )
            ],
            f"m³ per local day ({ctx.tz}) at each building's main meter, stacked.",
            w=12,
            bars=True,
            stacked=True,
        ),
    )
    board.row("Metering tree").add(balance_panel(ctx))
    return board.build()
