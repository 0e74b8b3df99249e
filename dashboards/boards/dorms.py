"""Dormitories: room temperature, humidity and CO2 by room and time.

Two views of each quantity. A status history with one row per room of the
chosen floor and one coloured cell per time interval is the room-by-time
heatmap: Grafana's heatmap panel draws *value buckets* on its y axis, never
series names, so only the status history keeps rooms as rows (each InfluxQL
series ``GROUP BY "room"`` becomes a row, coloured by the same thresholds the
office uses for comfort). Beside it a real heatmap shows how all rooms of the
building are distributed over temperature (or humidity, CO2) through time, so a
building drifting warm shows at a glance even when no single room stands out.
"""

from __future__ import annotations

import typing

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import heatmap, statushistory
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm

from campus.influxql import quote_ident
from dashboards.boards.common import (
    Board,
    Context,
    above,
    building_variable,
    by_interval,
    no_legend,
    rp_variable,
    single_tooltip,
    stat_panel,
    tag_matches_var,
    target,
    thresholds,
)
from dashboards.influxql import datasource_ref

UID = "campus-dorms"
BUILDING = tag_matches_var("building", "building")
FLOOR = tag_matches_var("floor", "floor")

#: (metric, title, Grafana unit, comfort thresholds) of each room quantity.
QUANTITIES = (
    (
        "temp_c",
        "Temperature",
        "celsius",
        thresholds("blue", (18, "green"), (26, "orange"), (30, "red")),
    ),
    (
        "humidity_pct",
        "Humidity",
        "humidity",
        thresholds("orange", (30, "green"), (60, "orange"), (70, "red")),
    ),
    (
        "co2_ppm",
        "CO2",
        "ppm",
        thresholds("green", (1000, "yellow"), (1500, "orange"), (2500, "red")),
    ),
)


def floor_variable() -> db.QueryVariable:
    """``$floor``: the floors of the chosen dormitory."""
    return (
        db.QueryVariable("floor")
        .label("Floor")
        .datasource(datasource_ref())
        .query(f'SHOW TAG VALUES FROM "dorm" WITH KEY = "floor" WHERE {BUILDING}')
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dm.VariableSort.NUMERICAL_ASC)
    )


def by_room(metric: str, title: str, unit: str, steps: db.ThresholdsConfig) -> statushistory.Panel:
    """Rooms of ``$floor`` as rows, time as columns, cells coloured by ``steps``."""
    query = by_interval(
        f"mean({quote_ident(metric)})", "dorm", [BUILDING, FLOOR], by="room", rp=True
    )
    return (
        statushistory.Panel()
        .title(f"{title} by room, floor $floor")
        .description(f"Mean {title.lower()} of each room per interval; one row per room.")
        .datasource(datasource_ref())
        .unit(unit)
        .span(14)
        .height(12)
        .max_data_points(48)
        .targets([target(query, alias="$tag_room")])
        .thresholds(steps)
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .show_value(cm.VisibilityMode.NEVER)
        .row_height(0.9)
        .legend(no_legend())
        .tooltip(single_tooltip())
    )


def distribution(metric: str, title: str, unit: str) -> heatmap.Panel:
    """How the building's rooms spread over ``metric`` through time (rooms per bucket)."""
    query = by_interval(f"mean({quote_ident(metric)})", "dorm", [BUILDING], by="device", rp=True)
    return (
        heatmap.Panel()
        .title(f"{title}: rooms of $building")
        .description(
            f"Number of rooms in each {title.lower()} band per interval (darker: more rooms)."
        )
        .datasource(datasource_ref())
        .span(10)
        .height(12)
        .max_data_points(48)
        .targets([target(query, alias="$tag_device")])
        .calculate(True)
        .color(
            heatmap.HeatmapColorOptions()
            .mode(hm.HeatmapColorMode.SCHEME)
            .scheme("Oranges")
            .scale(hm.HeatmapColorScale.EXPONENTIAL)
            .exponent(0.5)
            .fill("dark-orange")
            .steps(64)
            .reverse(False)
        )
        .y_axis(heatmap.YAxisConfig().unit(unit))
        .cell_values(heatmap.CellValues().unit("short"))
        .show_legend()
        .tooltip(heatmap.HeatmapTooltip().mode(cm.TooltipDisplayMode.SINGLE).y_histogram(True))
    )


def now_stats() -> list[typing.Any]:
    """Rooms out of bounds now, and smoke alarms."""

    def rooms_where(metric: str, limit: float, sign: int = 1) -> str:
        latest = f"{sign} * last({quote_ident(metric)})"
        return (
            f'SELECT sum("n") FROM (SELECT {above(latest, sign * limit)} AS "n" FROM "dorm"'
            f' WHERE {BUILDING} AND $timeFilter GROUP BY "device")'
        )

    red = thresholds("green", (1, "red"))
    return [
        stat_panel(
            "Rooms above 28 °C",
            "none",
            [target(rooms_where("temp_c", 28))],
            "Rooms of the building whose latest temperature is above 28 °C.",
            steps=red,
            w=6,
        ),
        stat_panel(
            "Rooms below 16 °C",
            "none",
            [target(rooms_where("temp_c", 16, -1))],
            "Rooms of the building whose latest temperature is below 16 °C.",
            steps=red,
            w=6,
        ),
        stat_panel(
            "Rooms above 1500 ppm CO2",
            "none",
            [target(rooms_where("co2_ppm", 1500))],
            "Rooms with stale air (latest CO2 above 1500 ppm).",
            steps=red,
            w=6,
        ),
        stat_panel(
            "Smoke alarms",
            "none",
            [target(rooms_where("smoke", 0))],
            "Rooms whose smoke sensor reports smoke now.",
            steps=red,
            w=6,
        ),
    ]


def build(ctx: Context) -> dict[str, typing.Any]:
    """The dormitories board."""
    board = Board(UID, "Dormitories", "Room temperature, humidity and CO2 by room.", ctx)
    board.variables(building_variable('"dorm"'), floor_variable(), rp_variable())
    board.annotations(by_building=True)
    board.row("Now in $building").add(*now_stats())
    for metric, title, unit, steps in QUANTITIES:
        board.row(title).add(by_room(metric, title, unit, steps), distribution(metric, title, unit))
    return board.build()
