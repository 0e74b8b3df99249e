"""Building drill-down: every meter and sensor of one building.

One row per device kind of the registry, one chart per metric of that kind
(one line per device of ``$device``); counters are shown as consumption per
interval. On top, the status of the building's devices and its tickets.
"""

from __future__ import annotations

import typing

from grafana_foundation_sdk.models import dashboard as dm

from campus.influxql import quote_ident
from dashboards.boards.common import (
    Board,
    Context,
    building_variable,
    by_interval,
    device_variable,
    kind_variable,
    rp_variable,
    table_panel,
    tag_matches_var,
    target,
    timeseries_panel,
)

UID = "campus-building"

#: Registry units -> Grafana unit ids.
UNITS = {
    "kW": "kwatt",
    "kWh": "kwatth",
    "V": "volt",
    "A": "amp",
    "1": "none",
    "L/min": "flowlpm",
    "m3": "m3",
    "kPa": "pressurekpa",
    "Pa": "suffix: Pa",
    "degC": "celsius",
    "bool": "bool_on_off",
    "%": "percent",
    "ppm": "ppm",
}


def metrics_of(ctx: Context, kind: str) -> list[tuple[str, str, bool]]:
    """(metric, unit, counter) of every metric devices of ``kind`` report, in registry order."""
    seen: dict[str, tuple[str, str, bool]] = {}
    for device in ctx.campus:
        if device.kind != kind:
            continue
        for name, spec in device.metrics.items():
            seen.setdefault(name, (name, spec.unit, spec.counter))
    return list(seen.values())


def metric_panel(kind: str, metric: str, unit: str, counter: bool) -> typing.Any:
    """One chart of ``metric`` for the chosen devices of the building."""
    where = [tag_matches_var("building", "building"), tag_matches_var("device", "device")]
    field = quote_ident(metric)
    if counter:
        select = f"non_negative_difference(last({field}))"
        title, what = f"{metric} per interval", "consumption in each interval (counter differences)"
        unit = UNITS.get(unit, "none")
        return timeseries_panel(
            title,
            unit,
            [target(by_interval(select, kind, where, rp=True), alias="$tag_device")],
            f"{kind} {metric}: {what}.",
            w=8,
            bars=True,
        )
    return timeseries_panel(
        metric,
        UNITS.get(unit, "none"),
        [target(by_interval(f"mean({field})", kind, where, rp=True), alias="$tag_device")],
        f"{kind} {metric} ({unit}), mean per interval, one line per device.",
        w=8,
    )


def status_table() -> typing.Any:
    """Latest status of the building's devices of the chosen kinds."""
    query = (
        'SELECT last("status") AS "status", last("online") AS "online" FROM "device_status"'
        f" WHERE {tag_matches_var('building', 'building')} AND {tag_matches_var('kind', 'kind')}"
        ' GROUP BY "kind", "device"'
    )
    return table_panel(
        "Device status",
        [target(query, table=True)],
        "Last status each device announced (online, or offline by its last will).",
        w=12,
    )


def tickets_table() -> typing.Any:
    """The building's tickets with their latest state."""
    query = (
        'SELECT last("state") AS "state", last("title") AS "title" FROM "tickets"'
        f" WHERE {tag_matches_var('building', 'building')} AND $timeFilter"
        ' GROUP BY "ticket", "severity", "trade"'
    )
    return table_panel(
        "Tickets",
        [target(query, table=True)],
        "Tickets of the building with an event in the time range, and their latest state.",
        w=12,
    )


def _opening_building(ctx: Context) -> dm.VariableOption:
    """The building the board opens on: the first with every kind of device, so
    a first look shows every row with data (the overview's map links to any)."""
    kinds: dict[str, set[str]] = {}
    for d in ctx.campus:
        kinds.setdefault(d.building, set()).add(d.kind)
    full = sorted(b for b, k in kinds.items() if k >= set(ctx.campus.kinds)) or sorted(kinds)
    return dm.VariableOption(text=full[0], value=full[0], selected=True)


def build(ctx: Context) -> dict[str, typing.Any]:
    """The building drill-down board."""
    board = Board(UID, "Building", "Every meter and sensor of one building.", ctx)
    board.variables(
        building_variable().current(_opening_building(ctx)),
        kind_variable(ctx.campus.kinds),
        device_variable(),
        rp_variable(),
    ).annotations(by_building=True)
    board.row("Status of $building").add(status_table(), tickets_table())
    for kind in ctx.campus.kinds:
        board.row(f"{kind.capitalize()}: $building")
        board.add(*(metric_panel(kind, *m) for m in metrics_of(ctx, kind)))
    return board.build()
