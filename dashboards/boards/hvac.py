"""HVAC: supply and return temperatures against set point, fans, plant power.

Air handlers, chillers, boilers and fresh-air units all report supply and
return temperature, set point, fan state and power, so one set of panels
serves them all; ``$device`` narrows to a unit or a plant room.
"""

from __future__ import annotations

import typing

from grafana_foundation_sdk.builders import statetimeline
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from dashboards.boards.common import (
    Board,
    Context,
    building_variable,
    by_interval,
    by_name,
    device_variable,
    no_legend,
    rp_variable,
    single_tooltip,
    stat_panel,
    tag_matches_var,
    target,
    threshold_lines,
    thresholds,
    timeseries_panel,
)
from dashboards.influxql import datasource_ref

UID = "campus-hvac"
WHERE = (tag_matches_var("building", "building"), tag_matches_var("device", "device"))


def temperatures(ctx: Context) -> list[typing.Any]:
    """Supply against set point, the gap between them, and return temperature."""
    units = sorted(d.id for d in ctx.campus if d.kind == "hvac")
    supply = timeseries_panel(
        "Supply temperature and set point",
        "celsius",
        [
            target(
                by_interval('mean("supply_temp_c")', "hvac", WHERE, rp=True),
                "A",
                "$tag_device supply",
            ),
            target(
                by_interval('mean("setpoint_c")', "hvac", WHERE, rp=True),
                "B",
                "$tag_device set point",
            ),
        ],
        "Supply air or water temperature (solid) against its set point (dashed), per unit.",
    )
    supply = by_name(
        supply,
        [f"{u} set point" for u in units],
        custom__lineStyle={"fill": "dash", "dash": [10, 10]},
    )
    gap = threshold_lines(
        timeseries_panel(
            "Supply minus set point",
            "celsius",
            [
                target(
                    by_interval(
                        'mean("supply_temp_c") - mean("setpoint_c")', "hvac", WHERE, rp=True
                    ),
                    alias="$tag_device",
                )
            ],
            "How far each unit runs from its set point; beyond ±2 °C for long means it cannot"
            " hold it (valve, coil, fan or capacity).",
        ),
        thresholds("red", (-2, "green"), (2, "red")),
    )
    ret = timeseries_panel(
        "Return temperature",
        "celsius",
        [target(by_interval('mean("return_temp_c")', "hvac", WHERE, rp=True), alias="$tag_device")],
        "Return air or water temperature per unit.",
        w=24,
    )
    return [supply, gap, ret]


def fans() -> list[typing.Any]:
    """Fan on/off per unit as a state timeline, and fan speed."""
    state = (
        statetimeline.Panel()
        .title("Fans")
        .description("Fan running (green) or stopped (grey) per unit.")
        .datasource(datasource_ref())
        .span(12)
        .height(10)
        .targets(
            [target(by_interval('last("fan_on")', "hvac", WHERE, rp=True), alias="$tag_device")]
        )
        .mappings(
            [
                dm.ValueMap(
                    options={
                        "0": dm.ValueMappingResult(text="off", color="text", index=0),
                        "1": dm.ValueMappingResult(text="on", color="green", index=1),
                    }
                )
            ]
        )
        .show_value(cm.VisibilityMode.NEVER)
        .merge_values(True)
        .row_height(0.9)
        .legend(no_legend())
        .tooltip(single_tooltip())
    )
    speed = timeseries_panel(
        "Fan speed",
        "percent",
        [target(by_interval('mean("fan_speed_pct")', "hvac", WHERE, rp=True), alias="$tag_device")],
        "Supply fan speed of the air handlers that report it.",
        h=10,
    )
    return [state, speed]


def plant_power() -> list[typing.Any]:
    """Power of the chosen units now, over the range, and energy used."""
    total = (
        'SELECT sum("v") FROM (SELECT mean("power_kw") AS "v" FROM "hvac"'
        f" WHERE {' AND '.join(WHERE)} AND $timeFilter"
        ' GROUP BY time($__interval), "device" fill(none))'
        " WHERE $timeFilter GROUP BY time($__interval) fill(none)"
    )
    energy = (
        'SELECT sum("e") FROM (SELECT integral("power_kw", 1h) AS "e" FROM "$rp"."hvac"'
        f' WHERE {" AND ".join(WHERE)} AND $timeFilter GROUP BY "device")'
    )
    return [
        stat_panel(
            "HVAC power now",
            "kwatt",
            [target(total)],
            "Demand of the chosen units.",
            w=6,
            graph=True,
        ),
        stat_panel(
            "HVAC energy in range",
            "kwatth",
            [target(energy)],
            "Energy of the chosen units over the time range (integral of their demand).",
            w=6,
        ),
        timeseries_panel(
            "Power per unit",
            "kwatt",
            [target(by_interval('mean("power_kw")', "hvac", WHERE, rp=True), alias="$tag_device")],
            "Demand per unit, stacked: chillers and boilers dominate the plant.",
            h=8,
            stacked=True,
        ),
    ]


def build(ctx: Context) -> dict[str, typing.Any]:
    """The HVAC board."""
    board = Board(UID, "HVAC", "Temperatures against set point, fans, plant power.", ctx)
    board.variables(
        building_variable('"hvac"', multi=True), device_variable('"hvac"'), rp_variable()
    ).annotations(by_building=True)
    board.row("Temperatures").add(*temperatures(ctx))
    board.row("Fans").add(*fans())
    board.row("Plant power").add(*plant_power())
    return board.build()
