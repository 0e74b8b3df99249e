"""Campus overview: the whole campus at a glance.

Power and water now and today from the campus meters, open tickets by
severity, devices offline, and a map of the buildings coloured by their trouble
(open tickets plus offline devices), each linking to its building drill-down.
"""

from __future__ import annotations

import typing

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import geomap
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import geomap as gm

from dashboards.boards import metering
from dashboards.boards.common import (
    SEVERITIES,
    Board,
    Context,
    dashboard_link,
    severity_colours,
    stat_panel,
    table_panel,
    tag_is,
    target,
    thresholds,
    timeseries_panel,
    transform,
)
from dashboards.influxql import datasource_ref

UID = "campus-overview"
BUILDING_UID = "campus-building"

#: Last known position of every building (written once by ``campus db init``).
POSITIONS = (
    'SELECT last("lat") AS "lat", last("lon") AS "lon", last("name") AS "name"'
    ' FROM "meta"."buildings" GROUP BY "building"'
)
#: Tickets whose latest event leaves them open, per building.
OPEN_BY_BUILDING = (
    'SELECT count("state") AS "open_tickets" FROM'
    ' (SELECT last("state") AS "state" FROM "tickets" GROUP BY "ticket", "building")'
    ' WHERE "state" != \'resolved\' AND "state" != \'closed\' GROUP BY "building"'
)
#: Devices whose latest status is offline, per building.
OFFLINE_BY_BUILDING = (
    'SELECT sum("off") AS "offline" FROM'
    ' (SELECT 1 - last("online") AS "off" FROM "device_status" GROUP BY "building", "device")'
    ' GROUP BY "building"'
)


def open_tickets(severity: str) -> str:
    """Tickets of ``severity`` whose latest event leaves them open."""
    return (
        'SELECT count("state") FROM'
        f' (SELECT last("state") AS "state" FROM "tickets" WHERE {tag_is("severity", severity)}'
        ' GROUP BY "ticket")'
        " WHERE \"state\" != 'resolved' AND \"state\" != 'closed'"
    )


def now_row(ctx: Context) -> list[typing.Any]:
    """Power and water now and today, open tickets, devices offline."""
    power, water = ctx.total_meters("power"), ctx.total_meters("water")
    return [
        stat_panel(
            "Campus power now",
            "kwatt",
            [target(metering.campus_gauge("power", "power_kw", power))],
            f"Demand at the campus main meter(s) {', '.join(power)}; sub-meters are not added.",
            graph=True,
        ),
        stat_panel(
            "Energy today",
            "kwatth",
            [target(metering.consumed("power", "energy_kwh", power))],
            "Energy the campus main meter(s) counted since local midnight.",
        ).time_from("now/d"),
        stat_panel(
            "Campus water flow now",
            "flowlpm",
            [target(metering.campus_gauge("water", "flow_lpm", water))],
            f"Flow at the campus main water meter(s) {', '.join(water)}.",
            graph=True,
        ),
        stat_panel(
            "Water today",
            "m3",
            [target(metering.consumed("water", "volume_m3", water))],
            "Water the campus main meter(s) counted since local midnight.",
        ).time_from("now/d"),
        severity_colours(
            stat_panel(
                "Open tickets",
                "none",
                [target(open_tickets(s), chr(ord("A") + i), s) for i, s in enumerate(SEVERITIES)],
                "Tickets not yet resolved, by severity (P1 emergency repair).",
            )
        ),
        stat_panel(
            "Devices offline",
            "none",
            [
                target(
                    'SELECT sum("off") FROM (SELECT 1 - last("online") AS "off"'
                    ' FROM "device_status" GROUP BY "device")'
                )
            ],
            "Devices whose last status message (their MQTT last will) says offline.",
            steps=thresholds("green", (1, "orange"), (10, "red")),
        ),
    ]


def building_map() -> geomap.Panel:
    """The buildings at their positions, coloured by open tickets plus offline devices."""
    return (
        geomap.Panel()
        .title("Buildings")
        .description(
            "Each building at its position; colour: open tickets plus offline devices"
            " (green none, orange some, red five or more). Click for the building's board."
        )
        .datasource(datasource_ref())
        .span(16)
        .height(14)
        .targets(
            [
                target(POSITIONS, "A", table=True),
                target(OPEN_BY_BUILDING, "B", table=True),
                target(OFFLINE_BY_BUILDING, "C", table=True),
            ]
        )
        .transformations(building_state_transforms())
        .thresholds(thresholds("green", (1, "orange"), (5, "red")))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .data_links(
            [
                dashboard_link(
                    "Building board", BUILDING_UID, "building", "${__data.fields.building}"
                )
            ]
        )
        .view(geomap_view())
        .controls(geomap_controls())
        .basemap(geomap_basemap())
        .layers([geomap_markers()])
        .tooltip(geomap_tooltip())
    )


def building_state_transforms() -> list[typing.Any]:
    """Join positions, open tickets and offline devices by building; add up the trouble."""
    return [
        transform("joinByField", {"byField": "building", "mode": "outer"}),
        transform(
            "calculateField",
            {
                "mode": "reduceRow",
                "reduce": {"include": ["open_tickets", "offline"], "reducer": "sum"},
                "alias": "trouble",
                "replaceFields": False,
            },
        ),
        transform(
            "organize",
            {"excludeByName": {"Time": True, "Time 1": True, "Time 2": True, "Time 3": True}},
        ),
    ]


def geomap_view() -> geomap.MapViewConfig:
    """Fit the view to the buildings."""
    return geomap.MapViewConfig().id("fit").padding(10).max_zoom(18).all_layers(True)


def geomap_controls() -> geomap.ControlsOptions:
    """Zoom buttons and mouse-wheel zoom."""
    return geomap.ControlsOptions().show_zoom(True).mouse_wheel_zoom(True).show_attribution(True)


def geomap_basemap() -> cb.MapLayerOptions:
    """OpenStreetMap tiles under the markers."""
    return cb.MapLayerOptions().type("osm-standard").name("Streets")


def geomap_markers() -> cb.MapLayerOptions:
    """One marker per building from the lat/lon columns, coloured by ``trouble``."""
    return (
        cb.MapLayerOptions()
        .type("markers")
        .name("Buildings")
        .location(
            cb.FrameGeometrySource()
            .mode(cm.FrameGeometrySourceMode.COORDS)
            .latitude("lat")
            .longitude("lon")
        )
        .tooltip(True)
        .config(
            {
                "showLegend": True,
                "style": {
                    "color": {"field": "trouble", "fixed": "green"},
                    "size": {"fixed": 12},
                    "symbol": {"fixed": "img/icons/marker/circle.svg", "mode": "fixed"},
                    "text": {"field": "building", "fixed": "", "mode": "field"},
                    "textConfig": {"fontSize": 11, "offsetY": -14, "textAlign": "center"},
                },
            }
        )
    )


def geomap_tooltip() -> geomap.TooltipOptions:
    """Details of the building under the pointer."""
    return geomap.TooltipOptions().mode(gm.TooltipMode.DETAILS)


def building_table() -> typing.Any:
    """The same facts as the map, as a sortable list with links."""
    return (
        table_panel(
            "Buildings in trouble",
            [
                target(POSITIONS, "A", table=True),
                target(OPEN_BY_BUILDING, "B", table=True),
                target(OFFLINE_BY_BUILDING, "C", table=True),
            ],
            "Open tickets and offline devices per building; click a building for its board.",
            w=8,
            h=14,
        )
        .transformations(
            [
                *building_state_transforms(),
                transform(
                    "organize",
                    {"excludeByName": {"lat": True, "lon": True}, "renameByName": {"name": "Name"}},
                ),
                transform("sortBy", {"sort": [{"field": "trouble", "desc": True}]}),
            ]
        )
        .data_links(
            [
                dashboard_link(
                    "Building board", BUILDING_UID, "building", "${__data.fields.building}"
                )
            ]
        )
        .thresholds(thresholds("green", (1, "orange"), (5, "red")))
    )


def trend_row(ctx: Context) -> list[typing.Any]:
    """Campus power and water over the time range."""
    return [
        timeseries_panel(
            "Campus power",
            "kwatt",
            [
                target(
                    metering.campus_gauge("power", "power_kw", ctx.total_meters("power")),
                    alias="campus",
                )
            ],
            "Campus demand over the time range (main meter).",
        ),
        timeseries_panel(
            "Campus water flow",
            "flowlpm",
            [
                target(
                    metering.campus_gauge("water", "flow_lpm", ctx.total_meters("water")),
                    alias="campus",
                )
            ],
            "Campus water flow over the time range (main meter);"
            " a raised night floor hints at a leak.",
        ),
    ]


def build(ctx: Context) -> dict[str, typing.Any]:
    """The campus overview board."""
    board = Board(UID, "Campus overview", "The whole campus at a glance.", ctx)
    board.annotations(by_building=False)
    board.row("Now").add(*now_row(ctx))
    board.row("Buildings").add(building_map(), building_table())
    board.row("Today").add(*trend_row(ctx))
    return board.build()
