"""Building drill-down: every meter and sensor of one building.

One row per device kind of the registry, one chart per metric of that kind
(one line per device of ``$device``); counters are shown as consumption per
interval. On top, the status of the building's devices and its tickets.
"""

from __future__ import annotations

import re
import typing

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.models import dashboard as dm

from campus.influxql import quote_ident
from campus.registry import Device
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
from dashboards.influxql import datasource_ref

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
    return _metrics([d for d in ctx.campus if d.kind == kind])


def _metrics(devices: typing.Iterable[Device]) -> list[tuple[str, str, bool]]:
    seen: dict[str, tuple[str, str, bool]] = {}
    for device in devices:
        for name, spec in device.metrics.items():
            seen.setdefault(name, (name, spec.unit, spec.counter))
    return list(seen.values())


def split_metrics(
    ctx: Context, kind: str
) -> tuple[
    list[tuple[str, str, bool]], dict[str, tuple[list[Device], list[tuple[str, str, bool]]]]
]:
    """The metrics every device of ``kind`` reports, and per device model the
    devices and metrics only that model adds (an air handler's damper and
    valves). Shared metrics get one chart per metric for the chosen devices;
    a model's own metrics get a row per device of that model in the building,
    repeated by Grafana, so no chart waits for a metric the building's devices
    never report."""
    devices = [d for d in ctx.campus if d.kind == kind]
    everywhere = set.intersection(*(set(d.metrics) for d in devices)) if devices else set()
    common = [m for m in _metrics(devices) if m[0] in everywhere]
    extras: dict[str, tuple[list[Device], list[tuple[str, str, bool]]]] = {}
    for d in devices:
        if set(d.metrics) - everywhere:
            members, _ = extras.setdefault(d.model or d.id, ([], []))
            members.append(d)
    for members, metrics in extras.values():
        metrics.extend(m for m in _metrics(members) if m[0] not in everywhere)
    return common, dict(sorted(extras.items()))


def kind_here_variable(kind: str) -> db.QueryVariable:
    """Hidden ``$<kind>_here``: ``<kind>`` when the building has such devices, else
    nothing; the kind's row repeats over it, so a building shows only its own kinds."""
    return (
        db.QueryVariable(f"{kind}_here")
        .hide(dm.VariableHide.HIDE_VARIABLE)
        .datasource(datasource_ref())
        .query(
            f"SHOW MEASUREMENTS WITH MEASUREMENT = {quote_ident(kind)}"
            f" WHERE {tag_matches_var('building', 'building')}"
        )
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
    )


def model_variable(model: str, kind: str, members: typing.Sequence[Device]) -> db.QueryVariable:
    """``$<model>``: the building's devices of ``model`` (every one selected), which
    a repeated row walks through."""
    ids = "|".join(re.escape(d.id) for d in sorted(members, key=lambda d: d.id))
    return (
        db.QueryVariable(model)
        .label(f"{model} units")
        .datasource(datasource_ref())
        .query(
            f"SHOW TAG VALUES FROM {quote_ident(kind)} WITH KEY = {quote_ident('device')}"
            f' WHERE {tag_matches_var("building", "building")} AND "device" =~ /^({ids})$/'
        )
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(dm.VariableOption(text="All", value="$__all", selected=True))
    )


def metric_panel(
    kind: str, metric: str, unit: str, counter: bool, device_var: str = "device"
) -> typing.Any:
    """One chart of ``metric`` for the building's devices chosen by ``$device_var``."""
    where = [tag_matches_var("building", "building"), tag_matches_var("device", device_var)]
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
    split = {kind: split_metrics(ctx, kind) for kind in ctx.campus.kinds}
    board.variables(
        building_variable().current(_opening_building(ctx)),
        kind_variable(ctx.campus.kinds),
        device_variable(),
        *(kind_here_variable(kind) for kind in split),
        *(
            model_variable(model, kind, members)
            for kind, (_, extras) in split.items()
            for model, (members, _) in extras.items()
        ),
        rp_variable(),
    ).annotations(by_building=True)
    board.row("Status of $building").add(status_table(), tickets_table())
    for kind, (common, extras) in split.items():
        board.row(f"{kind.capitalize()}: $building", repeat=f"{kind}_here")
        board.add(*(metric_panel(kind, *m) for m in common))
        for model, (_, metrics) in extras.items():
            board.row(f"{model} ${model}", repeat=model)
            board.add(*(metric_panel(kind, *m, device_var=model) for m in metrics))
    return board.build()
