"""Tickets and SLA: opened and closed per day, time to acknowledge and resolve, breaches.

Everything comes from the ``tickets`` measurement, one point per ticket event
(tags ``event``, ``severity``, ``building``, ``ticket``). Times to acknowledge
and resolve are the ``age_s`` field of a ticket's ``acknowledged`` or
``resolved`` point: the ticket service writes the seconds since the ticket
opened into every event, so a ticket opened before the time range is measured
right. A breach is a ticket whose time exceeds its severity's SLA from
``config/oncall.yaml``; tickets still open past their deadline are not counted
until they are resolved.
"""

from __future__ import annotations

import typing

from dashboards.boards.common import (
    SEVERITIES,
    Board,
    Context,
    above,
    building_variable,
    severity_colours,
    stat_panel,
    table_panel,
    tag_is,
    tag_matches_var,
    target,
    thresholds,
    timeseries_panel,
)

UID = "campus-tickets"
BUILDING = tag_matches_var("building", "building")
#: Which event ends the wait, for each measured time.
STEPS = {"acknowledge": "acknowledged", "resolve": "resolved"}


def events_per_day(ctx: Context, event: str, by_severity: bool) -> str:
    """Tickets with ``event`` per local day (per severity, or all)."""
    group = 'time(1d), "severity"' if by_severity else "time(1d)"
    return (
        f'SELECT count("ticket_id") FROM "tickets" WHERE {tag_is("event", event)}'
        f" AND {BUILDING} AND $timeFilter GROUP BY {group} fill(0) {ctx.tz_clause}"
    )


def waits(end_event: str, extra: str = "") -> str:
    """Seconds from each ticket's opening to its ``end_event`` (one value per ticket)."""
    return (
        f'SELECT "age_s" AS "wait" FROM "tickets" WHERE {tag_is("event", end_event)}'
        f' AND {BUILDING}{extra} AND $timeFilter GROUP BY "ticket", "severity"'
    )


def wait_per_day(ctx: Context, end_event: str) -> str:
    """Mean wait per local day and severity."""
    return (
        f'SELECT mean("wait") FROM ({waits(end_event)}) WHERE $timeFilter'
        f' GROUP BY time(1d), "severity" fill(none) {ctx.tz_clause}'
    )


def mean_wait(end_event: str, severity: str) -> str:
    """Mean wait of ``severity`` tickets over the time range."""
    return f'SELECT mean("wait") FROM ({waits(end_event, " AND " + tag_is("severity", severity))})'


def breaches(end_event: str, severity: str, limit_s: int) -> str:
    """Tickets of ``severity`` whose wait exceeded ``limit_s`` seconds."""
    inner = waits(end_event, " AND " + tag_is("severity", severity))
    late = above('"wait"', limit_s)
    return f'SELECT sum("late") FROM (SELECT {late} AS "late" FROM ({inner}))'


def flow_panels(ctx: Context) -> list[typing.Any]:
    """Opened, resolved and closed per day; opened per day by severity."""
    return [
        timeseries_panel(
            "Opened, resolved and closed per day",
            "none",
            [
                target(events_per_day(ctx, "opened", False), "A", "opened"),
                target(events_per_day(ctx, "resolved", False), "B", "resolved"),
                target(events_per_day(ctx, "closed", False), "C", "closed"),
            ],
            f"Ticket events per local day ({ctx.tz})."
            " Opened above resolved for days: a backlog grows.",
            bars=True,
        ),
        severity_colours(
            timeseries_panel(
                "Opened per day by severity",
                "none",
                [target(events_per_day(ctx, "opened", True), alias="$tag_severity")],
                "New tickets per local day, P1 (emergency repair) to P4.",
                bars=True,
                stacked=True,
            )
        ),
    ]


def sla_panels(ctx: Context, step: str) -> list[typing.Any]:
    """Mean time to ``step`` per severity against its SLA, per day, and breaches."""
    end = STEPS[step]
    stats = []
    for sev in SEVERITIES:
        limit = ctx.sla[sev][0 if step == "acknowledge" else 1]
        stats.append(
            stat_panel(
                f"{sev} time to {step}",
                "s",
                [target(mean_wait(end, sev), alias=sev)],
                f"Mean time from opened to {end} of {sev} tickets in the range;"
                f" SLA {limit // 60} min (orange from 80 %, red beyond).",
                steps=thresholds("green", (round(limit * 0.8), "orange"), (limit, "red")),
                w=3,
            )
        )
    for sev in SEVERITIES:
        limit = ctx.sla[sev][0 if step == "acknowledge" else 1]
        stats.append(
            stat_panel(
                f"{sev} {step} breaches",
                "none",
                [target(breaches(end, sev, limit), alias=sev)],
                f"{sev} tickets {end} later than the SLA ({limit // 60} min) in the range.",
                steps=thresholds("green", (1, "red")),
                w=3,
            )
        )
    trend = severity_colours(
        timeseries_panel(
            f"Time to {step} per day",
            "s",
            [target(wait_per_day(ctx, end), alias="$tag_severity")],
            f"Mean time from opened to {end} per local day and severity.",
            w=24,
        )
    )
    return [*stats, trend]


def ticket_table() -> typing.Any:
    """Tickets with an event in the range and their latest state."""
    query = (
        'SELECT last("state") AS "state", last("title") AS "title" FROM "tickets"'
        f' WHERE {BUILDING} AND $timeFilter GROUP BY "ticket", "severity", "building", "trade"'
    )
    return table_panel(
        "Tickets",
        [target(query, table=True)],
        "Every ticket with an event in the time range and its latest state.",
        w=24,
        h=10,
    )


def build(ctx: Context) -> dict[str, typing.Any]:
    """The tickets and SLA board."""
    board = Board(
        UID,
        "Tickets and SLA",
        "Ticket flow, times to acknowledge and resolve, SLA breaches.",
        ctx,
        since="now-7d",
        refresh="1m",
    )
    board.variables(building_variable('"tickets"', multi=True))
    board.annotations(by_building=True)
    board.row("Flow").add(*flow_panels(ctx))
    board.row("Acknowledge").add(*sla_panels(ctx, "acknowledge"))
    board.row("Resolve").add(*sla_panels(ctx, "resolve"))
    board.row("Tickets").add(ticket_table())
    return board.build()
