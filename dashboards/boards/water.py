"""Water: flows, night flow per building, balance of parent and sub-meters.

The balance panel draws, for every meter with sub-meters in the registry, the
parent's flow minus the sum of its sub-meters' flows: water that no sub-meter
sees, from a leak between them, an unmetered tap or a sub-meter that stopped.
"""

from __future__ import annotations

import typing

from dashboards.boards import metering
from dashboards.boards.common import Context, target, thresholds, timeseries_panel

UID = "campus-water"
WATER = metering.Metering("water", "volume_m3", "m3", "flow_lpm", "flowlpm", "Water")


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
    campus = ctx.total_meters("water")
    board = metering.board(
        WATER,
        ctx,
        UID,
        "Water",
        "Flows, night flow per building, balance of parent and sub-meters.",
        since="now-7d",
        refresh="5m",
    )
    board.row("Campus").add(
        metering.in_range_stat(WATER, ctx),
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
        metering.per_building_panel(
            WATER,
            ctx,
            "Flow per building",
            "Mean flow per interval at each building's main water meter.",
            w=16,
            h=10,
        ),
        metering.top_consumers(WATER, ctx),
        metering.night_panel(
            WATER,
            ctx,
            "Night flow per building",
            "Lowest 4-hour mean flow of each day (01:00-05:00 on a normal night). Buildings"
            " should be near zero at night: a steady night flow is a leak or a running tap.",
        ).thresholds(thresholds("green", (5, "orange"), (20, "red"))),
        metering.per_day_panel(WATER, ctx, "m³", w=12),
    )
    board.row("Metering tree").add(balance_panel(ctx))
    return board.build()
