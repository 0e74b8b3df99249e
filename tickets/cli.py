"""``campus tickets``: list, show and move repair tickets through their lifecycle.

Every command works on the store named by ``CAMPUS_DB_URL`` (SQLite under
``var/`` by default; PostgreSQL with ``postgresql://...``), whose schema is
migrated on first use. ``--json`` prints what scripts and the API read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tickets.enums import State

if TYPE_CHECKING:  # SQLAlchemy is imported by the commands that use the store, not here
    from tickets.models import Ticket
    from tickets.service import Tickets

BY = click.option("--by", "actor", required=True, help="Who does it (a technician id or name).")
JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def open_tickets(settings: Any, verify_clear: timedelta | None = None) -> Tickets:
    """The store of ``settings`` with the people of ``config/oncall.yaml`` in it
    (so a ticket can be given to anyone there), its SLA deadlines and escalation
    chain, and closing by telemetry after the file's ``verify_clear`` unless
    told otherwise."""
    from campus.registry import load_campus
    from tickets.db import open_store
    from tickets.oncall import load_oncall
    from tickets.service import Tickets

    tickets = Tickets(open_store(settings.db_url))
    if settings.oncall_file.exists():
        buildings = list(load_campus(settings.campus_file).buildings)
        tickets.use_oncall(load_oncall(settings.oncall_file, buildings))
    if settings.tickets_verify_clear_s is not None:
        tickets.verify_clear = timedelta(seconds=settings.tickets_verify_clear_s)
    if verify_clear is not None:
        tickets.verify_clear = verify_clear
    if settings.notify_file.exists():
        from tickets.outbox import load_channels

        tickets.channels = load_channels(settings.notify_file, settings=settings)
    return tickets


def _tickets() -> Tickets:
    from campus.settings import Settings

    return open_tickets(Settings())


def _print(ticket: Ticket, as_json: bool, *, full: bool = False) -> None:
    if as_json:
        doc = ticket.as_json()
        if full:
            doc["events"] = [e.as_json() for e in ticket.events]
            doc["comments"] = [
                {"at": c.at.isoformat(), "author": c.author, "text": c.text}
                for c in ticket.comments
            ]
        click.echo(json.dumps(doc, ensure_ascii=False))
        return
    assignee = ticket.technician_id or ticket.contractor_id or "-"
    click.echo(
        f"#{ticket.id} {ticket.severity} {ticket.state:<12} {ticket.building:<12} "
        f"{ticket.trade:<10} {assignee:<14} x{ticket.count}  {ticket.title}"
    )
    if full:
        click.echo(f"  dedup key {ticket.dedup_key}; source {ticket.source}; rule {ticket.rule}")
        click.echo(f"  opened {ticket.opened_at.isoformat(timespec='seconds')}")
        for e in ticket.events:
            move = f"{e.from_state or '-'} -> {e.to_state}" if e.to_state else ""
            detail = f" {json.dumps(e.detail, ensure_ascii=False)}" if e.detail else ""
            click.echo(
                f"  {e.at.isoformat(timespec='seconds')} {e.actor}: {e.action} {move}{detail}"
            )
        for c in ticket.comments:
            click.echo(f"  {c.at.isoformat(timespec='seconds')} {c.author} says: {c.text}")


STORE_AWAY = 75  # EX_TEMPFAIL: the ticket store did not answer; nothing was changed


class StoreGroup(click.Group):
    """A ticket store that does not answer is one clear line and exit status 75
    (try again later), not a traceback; the command changed nothing."""

    def invoke(self, ctx: click.Context) -> Any:
        from sqlalchemy.exc import OperationalError

        try:
            return super().invoke(ctx)
        except OperationalError as exc:
            message = f"Error: the ticket store is not answering ({exc.orig}); try again"
            click.echo(message, err=True)
            ctx.exit(STORE_AWAY)


@click.group(cls=StoreGroup)
def tickets() -> None:
    """Emergency-repair tickets: list, show, acknowledge, assign, resolve, close."""


@tickets.command("list")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in State]),
    help="Only tickets in this state (repeatable). Default: all but closed.",
)
@click.option("--all", "show_all", is_flag=True, help="Closed tickets too.")
@click.option("--building", default=None)
@click.option("--severity", type=click.Choice(["P1", "P2", "P3", "P4"]), default=None)
@click.option("--limit", type=click.IntRange(1, 10_000), default=200, show_default=True)
@JSON
def list_(
    states: tuple[str, ...],
    show_all: bool,
    building: str | None,
    severity: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Tickets, newest first."""
    chosen = list(states) or ([] if show_all else [s.value for s in State if s != State.closed])
    found = _tickets().list(states=chosen, building=building, severity=severity, limit=limit)
    if as_json:
        click.echo(json.dumps([t.as_json() for t in found], ensure_ascii=False))
        return
    for t in found:
        _print(t, False)
    if not found:
        click.echo("no tickets")


@tickets.command("show")
@click.argument("ticket_id", type=int)
@JSON
def show(ticket_id: int, as_json: bool) -> None:
    """One ticket with its history and comments."""
    _print(_tickets().get(ticket_id), as_json, full=True)


def _simple(name: str, help_text: str, act: Callable[[Tickets, int, str], Any]) -> None:
    """A command that applies one transition taking only the actor."""

    @tickets.command(name, help=help_text)
    @click.argument("ticket_id", type=int)
    @BY
    @JSON
    def command(ticket_id: int, actor: str, as_json: bool) -> None:
        t = _tickets()
        act(t, ticket_id, actor)
        _print(t.get(ticket_id), as_json)


_simple(
    "ack",
    "Acknowledge a ticket: you have seen it and take charge.",
    lambda t, ticket_id, actor: t.acknowledge(ticket_id, actor),
)
_simple("start", "Work on site has begun.", lambda t, ticket_id, actor: t.start(ticket_id, actor))


@tickets.command("assign")
@click.argument("ticket_id", type=int)
@click.option("--technician", default=None, help="A technician id from config/oncall.yaml.")
@click.option("--contractor", default=None, help="A contractor id from config/oncall.yaml.")
@BY
@JSON
def assign(
    ticket_id: int, technician: str | None, contractor: str | None, actor: str, as_json: bool
) -> None:
    """Give a ticket to one technician or one contractor."""
    t = _tickets()
    t.assign(ticket_id, actor, technician=technician, contractor=contractor)
    _print(t.get(ticket_id), as_json)


@tickets.command("resolve")
@click.argument("ticket_id", type=int)
@click.option("--note", default="", help="What was done.")
@BY
@JSON
def resolve(ticket_id: int, note: str, actor: str, as_json: bool) -> None:
    """The repair is done (a rule's ticket then closes itself once readings stay normal)."""
    t = _tickets()
    t.resolve(ticket_id, actor, note)
    _print(t.get(ticket_id), as_json)


@tickets.command("close")
@click.argument("ticket_id", type=int)
@click.option("--force", is_flag=True, help="Close a rule's ticket before telemetry verified it.")
@BY
@JSON
def close(ticket_id: int, force: bool, actor: str, as_json: bool) -> None:
    """Close a resolved ticket."""
    t = _tickets()
    t.close(ticket_id, actor, force=force)
    _print(t.get(ticket_id), as_json)


@tickets.command("reopen")
@click.argument("ticket_id", type=int)
@click.option("--reason", required=True, help="Why: the fault is back, the repair failed.")
@BY
@JSON
def reopen(ticket_id: int, reason: str, actor: str, as_json: bool) -> None:
    """Reopen a resolved or closed ticket."""
    t = _tickets()
    t.reopen(ticket_id, actor, reason)
    _print(t.get(ticket_id), as_json)


@tickets.command("comment")
@click.argument("ticket_id", type=int)
@click.argument("text")
@BY
def comment(ticket_id: int, text: str, actor: str) -> None:
    """Add a note to a ticket."""
    _tickets().comment(ticket_id, actor, text)
    click.echo(f"noted on #{ticket_id}")


@tickets.command("serve")
@click.option(
    "--verify-clear",
    default=None,
    help="How long a rule must stay clear after a repair before its ticket closes "
    "itself (default: CAMPUS_TICKETS_VERIFY_CLEAR_S, else verify_clear in "
    "config/oncall.yaml, else 15m).",
)
def serve(verify_clear: str | None) -> None:
    """Turn the alerts on ops/alerts/# into tickets (runs until stopped)."""
    from campus.cli import _on_signals
    from campus.settings import Settings
    from rules.model import duration
    from tickets.serve import TicketService

    window = None
    if verify_clear is not None:
        try:
            window = duration(verify_clear)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--verify-clear") from None
    settings = Settings()
    service = TicketService(
        settings, open_tickets(settings, window), client_id=settings.tickets_client_id
    )
    with _on_signals(service.stop):
        service.run()


@click.command("report")
@click.option("--since", default="-30d", show_default=True, help="Tickets opened from (time).")
@click.option("--until", default="now", show_default=True, help="... up to (time).")
@click.option("--by", "period", type=click.Choice(["week", "month"]), default="month")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for report.md, report.html and the CSVs (default: var/reports).",
)
def report(since: str, until: str, period: str, out: Path | None) -> None:
    """Assess repair teams, technicians and contractors: tickets, time to
    acknowledge and resolve (median, p90), SLA met, reopened."""
    from campus.registry import load_campus
    from campus.settings import Settings
    from campus.timeparse import parse_time
    from tickets.db import open_store
    from tickets.report import build_report, write_report

    settings = Settings()
    now = datetime.now(UTC)
    try:
        start, end = parse_time(since, now), parse_time(until, now)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if end <= start:
        raise click.BadParameter(f"--until {until} is not after --since {since}")
    tz = load_campus(settings.campus_file).timezone
    store = open_store(settings.db_url)
    try:
        built = build_report(store, start, end, now, period, tz)
    finally:
        store.close()
    for path in write_report(built, out or settings.var_dir / "reports"):
        click.echo(path)
