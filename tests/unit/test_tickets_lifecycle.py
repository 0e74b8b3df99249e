"""The ticket lifecycle on a real SQLite file: every transition and every
refused one, dedup, reopening, and closing by telemetry with a controllable clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from tests.conftest import CONFIG
from tickets.db import MIGRATIONS, migrate, open_store
from tickets.models import Base, Source, State
from tickets.oncall import load_oncall
from tickets.service import (
    TRANSITIONS,
    Alert,
    InvalidTransition,
    TicketError,
    TicketNotFound,
    Tickets,
    UnknownPerson,
)

T0 = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def tickets(tmp_path: Path, clock: Clock) -> Tickets:
    store = open_store(f"sqlite:///{tmp_path / 'tickets.db'}")
    t = Tickets(store, verify_clear=timedelta(minutes=15), clock=clock)
    t.upsert_people(
        teams=[{"id": "team-water", "name": "Water", "trade": "plumbing"}],
        technicians=[{"id": "tech-wang", "name": "王建国", "team": "team-water"}],
        contractors=[{"id": "acme-pipes", "name": "Acme Pipes", "trades": ["plumbing"]}],
    )
    return t


def alert(key: str = "leak:wm-dorm-1", severity: str = "P2", **kw: object) -> Alert:
    fields: dict = {
        "dedup_key": key,
        "source": Source.rule,
        "severity": severity,
        "building": "dorm-1",
        "trade": "plumbing",
        "title": "Night flow in dorm-1",
        "at": T0,
        "device": "wm-dorm-1",
        "rule": "leak",
    }
    fields.update(kw)
    return Alert(**fields)


def history(t: Tickets, ticket_id: int) -> list[tuple[str, str | None, str | None]]:
    return [(e.action, e.from_state, e.to_state) for e in t.get(ticket_id).events]


def test_migrations_create_the_schema_with_the_partial_unique_index(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    insp = inspect(store.engine)
    assert {"tickets", "ticket_events", "ticket_comments", "technicians"} <= set(
        insp.get_table_names()
    )
    with store.engine.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
    open_store(f"sqlite:///{tmp_path / 'x.db'}")  # a second start migrates nothing, breaks nothing
    # the migrations build exactly the tables and columns the code reads and writes
    with store.engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), Base.metadata)
    assert diff == []


def test_a_store_at_an_older_revision_is_upgraded_with_its_tickets(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    store = open_store(url, upgrade=False)
    migrate(store.engine, "0001")
    with store.engine.begin() as c:
        c.execute(
            text(
                "INSERT INTO tickets (dedup_key, source, state, severity, building, trade, "
                "title, description, count, first_seen, last_seen, opened_at, reopen_count, "
                "escalation_level, alert_firing, version) VALUES ('k', 'manual', 'open', "
                "'P2', 'dorm-1', 'plumbing', 'old', '', 1, :t, :t, :t, 0, 0, 0, 1)"
            ),
            {"t": T0.replace(tzinfo=None)},
        )
    store.close()
    t = Tickets(open_store(url))  # upgrades to the newest revision
    (old,) = t.list()
    assert (old.title, old.ack_due) == ("old", None)
    t.acknowledge(old.id, "a")


def test_the_whole_lifecycle_is_logged(tickets: Tickets, clock: Clock) -> None:
    r = tickets.raise_alert(alert())
    assert r.created
    tid = r.ticket_id
    clock.advance(minutes=3)
    tickets.acknowledge(tid, "tech-wang")
    tickets.assign(tid, "supervisor-li", technician="tech-wang")
    tickets.start(tid, "tech-wang")
    tickets.resolve(tid, "tech-wang", note="valve replaced")
    ticket = tickets.get(tid)
    assert ticket.state == State.resolved
    assert ticket.acknowledged_at == T0 + timedelta(minutes=3)
    assert ticket.technician_id == "tech-wang"
    assert history(tickets, tid) == [
        ("open", None, "open"),
        ("acknowledge", "open", "acknowledged"),
        ("assign", "acknowledged", "assigned"),
        ("start", "assigned", "in_progress"),
        ("resolve", "in_progress", "resolved"),
    ]
    assert ticket.events[-1].detail == {"note": "valve replaced"}
    assert ticket.events[1].actor == "tech-wang"


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("action", sorted(TRANSITIONS))
def test_every_action_from_every_state_is_allowed_or_refused_with_a_reason(
    tickets: Tickets, clock: Clock, state: State, action: str
) -> None:
    tid = tickets.raise_alert(alert(source=Source.manual, rule=None)).ticket_id
    path = {
        State.open: [],
        State.acknowledged: ["acknowledge"],
        State.assigned: ["acknowledge", "assign"],
        State.in_progress: ["acknowledge", "assign", "start"],
        State.resolved: ["acknowledge", "assign", "start", "resolve"],
        State.closed: ["acknowledge", "assign", "start", "resolve", "close"],
    }[state]
    do = {
        "acknowledge": lambda: tickets.acknowledge(tid, "a"),
        "assign": lambda: tickets.assign(tid, "a", technician="tech-wang"),
        "start": lambda: tickets.start(tid, "a"),
        "resolve": lambda: tickets.resolve(tid, "a"),
        "close": lambda: tickets.close(tid, "a"),
        "reopen": lambda: tickets.reopen(tid, "a", "leaking again"),
    }
    for step in path:
        do[step]()
    before = history(tickets, tid)
    allowed, target = TRANSITIONS[action]
    if state in allowed:
        do[action]()
        assert tickets.get(tid).state == target
        assert history(tickets, tid)[-1] == (action, state.value, target.value)
    else:
        with pytest.raises(InvalidTransition, match=f"cannot {action}: it is {state.value}"):
            do[action]()
        assert tickets.get(tid).state == state  # nothing written
        assert history(tickets, tid) == before


def test_refusals_say_what_to_do_first(tickets: Tickets) -> None:
    tid = tickets.raise_alert(alert()).ticket_id
    with pytest.raises(InvalidTransition, match="acknowledge it first"):
        tickets.assign(tid, "boss", technician="tech-wang")
    with pytest.raises(TicketNotFound, match="no ticket 999"):
        tickets.acknowledge(999, "x")
    with pytest.raises(TicketError, match="--by"):
        tickets.acknowledge(tid, " ")


def test_unknown_technician_or_contractor_is_refused_by_name(tickets: Tickets) -> None:
    tid = tickets.raise_alert(alert()).ticket_id
    tickets.acknowledge(tid, "a")
    with pytest.raises(UnknownPerson, match=r"unknown technician 'tech-nobody' \(known: tech-wang"):
        tickets.assign(tid, "a", technician="tech-nobody")
    with pytest.raises(UnknownPerson, match="unknown contractor 'x'"):
        tickets.assign(tid, "a", contractor="x")
    with pytest.raises(TicketError, match="exactly one"):
        tickets.assign(tid, "a", technician="tech-wang", contractor="acme-pipes")
    tickets.assign(tid, "a", contractor="acme-pipes")
    assert tickets.get(tid).contractor_id == "acme-pipes"


def test_dedup_updates_the_open_ticket_and_raises_its_severity(
    tickets: Tickets, clock: Clock
) -> None:
    first = tickets.raise_alert(alert(severity="P3"))
    second = tickets.raise_alert(alert(severity="P4", at=T0 + timedelta(minutes=5)))
    third = tickets.raise_alert(alert(severity="P1", at=T0 + timedelta(minutes=9)))
    assert first.created and not second.created and not third.created
    assert not second.severity_raised and third.severity_raised
    assert first.ticket_id == second.ticket_id == third.ticket_id
    t = tickets.get(first.ticket_id)
    assert (t.count, t.severity, t.last_seen) == (3, "P1", T0 + timedelta(minutes=9))
    assert history(tickets, t.id)[-1] == ("severity", "open", "open")
    assert len(tickets.list()) == 1
    other = tickets.raise_alert(alert(key="leak:wm-dorm-2"))
    assert other.created and other.ticket_id != first.ticket_id


def test_a_closed_ticket_makes_way_for_a_new_one(tickets: Tickets) -> None:
    tid = tickets.raise_alert(alert(source=Source.manual, rule=None)).ticket_id
    for step in ("acknowledge", "resolve", "close"):
        getattr(tickets, step)(tid, "a")
    again = tickets.raise_alert(alert(source=Source.manual, rule=None))
    assert again.created and again.ticket_id != tid
    with pytest.raises(InvalidTransition, match="another ticket for the same alert is open"):
        tickets.reopen(tid, "a", "same leak")


def test_the_database_refuses_a_second_open_ticket_for_one_key(tickets: Tickets) -> None:
    tickets.raise_alert(alert())
    with tickets.store.engine.begin() as c, pytest.raises(Exception, match="UNIQUE"):
        c.execute(
            text(
                "INSERT INTO tickets (dedup_key, source, state, severity, building, trade, "
                "title, description, count, first_seen, last_seen, opened_at, reopen_count, "
                "escalation_level, alert_firing, version) VALUES ('leak:wm-dorm-1', 'rule', "
                "'assigned', 'P2', 'dorm-1', 'plumbing', 't', '', 1, :t, :t, :t, 0, 0, 1, 1)"
            ),
            {"t": T0.replace(tzinfo=None)},
        )


def test_a_rule_ticket_closes_only_after_its_rule_stayed_clear(
    tickets: Tickets, clock: Clock
) -> None:
    tid = tickets.raise_alert(alert()).ticket_id
    tickets.acknowledge(tid, "tech-wang")
    tickets.resolve(tid, "tech-wang")
    assert tickets.verify() == []  # the alert still fires
    with pytest.raises(InvalidTransition, match="still fires"):
        tickets.close(tid, "tech-wang")
    clock.advance(minutes=2)
    tickets.alert_cleared("leak:wm-dorm-1", clock.now)
    clock.advance(minutes=14)
    assert tickets.verify() == []  # clear for 14 of 15 minutes
    with pytest.raises(InvalidTransition, match="closes itself"):
        tickets.close(tid, "tech-wang")
    clock.advance(minutes=1)
    assert tickets.verify() == [tid]
    t = tickets.get(tid)
    assert t.state == State.closed and t.closed_at == clock.now
    assert t.events[-1].actor == "telemetry"


def test_a_new_firing_reopens_a_resolved_ticket(tickets: Tickets, clock: Clock) -> None:
    tid = tickets.raise_alert(alert()).ticket_id
    tickets.acknowledge(tid, "tech-wang")
    tickets.resolve(tid, "tech-wang")
    tickets.alert_cleared("leak:wm-dorm-1", clock.now)
    clock.advance(minutes=5)
    r = tickets.raise_alert(alert(at=clock.now))
    assert r.reopened and r.ticket_id == tid
    t = tickets.get(tid)
    assert (t.state, t.reopen_count, t.alert_firing, t.resolved_at) == ("open", 1, True, None)
    assert history(tickets, tid)[-1] == ("reopen", "resolved", "open")
    clock.advance(minutes=30)
    assert tickets.verify() == []


def test_force_close_is_recorded(tickets: Tickets) -> None:
    tid = tickets.raise_alert(alert()).ticket_id
    tickets.acknowledge(tid, "a")
    tickets.resolve(tid, "a")
    tickets.close(tid, "supervisor-li", force=True)
    assert tickets.get(tid).events[-1].detail == {"forced": True}


def test_comments_and_bad_alerts(tickets: Tickets) -> None:
    tid = tickets.raise_alert(alert()).ticket_id
    tickets.comment(tid, "tech-wang", "需要更换阀门")
    assert [c.text for c in tickets.get(tid).comments] == ["需要更换阀门"]
    with pytest.raises(TicketError, match="needs text"):
        tickets.comment(tid, "x", "  ")
    with pytest.raises(TicketError, match=r"severity 'P9' is not one of P1.*trade 'magic'"):
        alert(severity="P9", trade="magic")
    with pytest.raises(TicketError, match="UTC-aware"):
        alert(at=datetime(2026, 1, 1))  # naive: the point of the test


def test_alert_from_a_rules_engine_document() -> None:
    doc = {
        "state": "firing",
        "rule": "leak",
        "device": "wm-dorm-1",
        "building": "dorm-1",
        "severity": "P2",
        "trade": "plumbing",
        "ts_ms": 1_790_000_000_000,
        "title": "Night flow",
        "text": "flow 0.4 m3/h at 03:00",
        "dedup_key": "leak:wm-dorm-1",
    }
    a = Alert.from_rule_event(doc)
    assert (a.dedup_key, a.source, a.at) == (
        "leak:wm-dorm-1",
        Source.rule,
        datetime.fromtimestamp(1_790_000_000, UTC),
    )
    assert a.description == "flow 0.4 m3/h at 03:00"
    with pytest.raises(TicketError, match="alert document refused"):
        Alert.from_rule_event({"rule": "x"})
    # an anomaly alert's ticket says what the model expected, and links its plot
    odd = Alert.from_rule_event(
        {**doc, "detail": "anomaly score 0.97 > 0.9: expected 42 kW", "plot": "var/anomaly/x.png"}
    )
    assert odd.description == (
        "flow 0.4 m3/h at 03:00\n\nanomaly score 0.97 > 0.9: expected 42 kW"
        "\n\nPlot of the last day: var/anomaly/x.png"
    )


# ----------------------------------------------------------- SLA and escalation


@pytest.fixture
def sla_tickets(tickets: Tickets, campus) -> Tickets:
    """The store above with the shipped config/oncall.yaml (P1: acknowledge 15m,
    resolve 4h; chain primary -> secondary -> supervisor, 15m each for P1)."""
    tickets.oncall = load_oncall(CONFIG / "oncall.yaml", list(campus.buildings))
    return tickets


def test_deadlines_come_from_the_severity(sla_tickets: Tickets, clock: Clock) -> None:
    tid = sla_tickets.raise_alert(alert(severity="P3")).ticket_id
    t = sla_tickets.get(tid)
    assert (t.ack_due, t.resolve_due) == (T0 + timedelta(hours=4), T0 + timedelta(hours=72))
    clock.advance(minutes=10)
    sla_tickets.raise_alert(alert(severity="P1", at=clock.now))  # more urgent: tighter
    t = sla_tickets.get(tid)
    assert (t.ack_due, t.resolve_due) == (T0 + timedelta(minutes=15), T0 + timedelta(hours=4))


def test_an_unacknowledged_ticket_climbs_the_chain_and_breaches_are_recorded(
    sla_tickets: Tickets, clock: Clock
) -> None:
    tid = sla_tickets.raise_alert(alert(severity="P1")).ticket_id
    clock.advance(minutes=14)
    assert sla_tickets.escalate() == []
    clock.advance(minutes=1)  # 15 min: acknowledge deadline, secondary paged
    assert sla_tickets.escalate() == [
        (tid, "acknowledge deadline missed"),
        (tid, "escalated to secondary"),
    ]
    assert sla_tickets.escalate() == []  # each recorded once
    clock.advance(minutes=15)  # 30 min: the supervisor
    assert sla_tickets.escalate() == [(tid, "escalated to supervisor")]
    clock.advance(hours=5)
    assert sla_tickets.escalate() == [(tid, "resolve deadline missed")]  # no level past the last
    t = sla_tickets.get(tid)
    assert t.escalation_level == 2
    assert t.ack_breached_at == T0 + timedelta(minutes=15)
    escalations = [e.detail for e in t.events if e.action == "escalate"]
    assert [d["role"] for d in escalations] == ["secondary", "supervisor"]
    oncall = sla_tickets.oncall
    assert oncall is not None
    chain = oncall.chain("plumbing", "dorm-1", T0 + timedelta(minutes=15))
    assert escalations[0]["technician"] == chain[1].id  # the secondary on call then


def test_acknowledging_stops_the_climb(sla_tickets: Tickets, clock: Clock) -> None:
    tid = sla_tickets.raise_alert(alert(severity="P1")).ticket_id
    clock.advance(minutes=5)
    sla_tickets.acknowledge(tid, "tech-wang")
    clock.advance(minutes=40)
    assert sla_tickets.escalate() == []
    t = sla_tickets.get(tid)
    assert (t.escalation_level, t.ack_breached_at) == (0, None)


def test_a_reopened_ticket_gets_new_deadlines(sla_tickets: Tickets, clock: Clock) -> None:
    tid = sla_tickets.raise_alert(alert(severity="P1", source=Source.manual)).ticket_id
    sla_tickets.acknowledge(tid, "a")
    sla_tickets.resolve(tid, "a")
    clock.advance(hours=6)
    sla_tickets.reopen(tid, "a", "leaking again")
    t = sla_tickets.get(tid)
    assert t.ack_due == clock.now + timedelta(minutes=15)
    clock.advance(minutes=15)
    assert sla_tickets.escalate() == [
        (tid, "acknowledge deadline missed"),
        (tid, "escalated to secondary"),
    ]
