"""Energy: kWh per building per day, top consumers, night base load.

Every figure comes from each building's main power meter (or the campus main
meter for campus totals), read from ``"$rp"."power"`` so ranges of months or
years are answered by the hourly or daily rollups.
"""

from __future__ import annotations

import typing

from dashboards.boards import metering
from dashboards.boards.common import Context, target, timeseries_panel

UID = "campus-energy"
POWER = metering.Metering("power", "energy_kwh", "kwatth", "power_kw", "kwatt", "Energy")


def build(ctx: Context) -> dict[str, typing.Any]:
    """The energy board."""
    campus = ctx.total_meters("power")
    board = metering.board(
        POWER,
        ctx,
        UID,
        "Energy",
        "Electricity per building and day, top consumers, night base load.",
        since="now-30d",
        refresh="15m",
    )
    board.row("Campus").add(
        metering.in_range_stat(POWER, ctx),
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
        metering.per_day_panel(POWER, ctx, "kWh", w=16, h=12),
        metering.top_consumers(POWER, ctx),
        metering.night_panel(
            POWER,
            ctx,
            "Night base load",
            "Lowest 4-hour mean demand of each day (the 01:00-05:00 window on a normal night):"
            " what stays on when the building is empty. A rise means equipment left running.",
        ),
        metering.per_building_panel(
            POWER,
            ctx,
            "Demand per building",
            "Mean demand per interval at each building's main meter.",
            w=12,
        ),
    )
    return board.build()
