"""The ticket store on a real PostgreSQL (``pg.py`` says which): migrations,
the lifecycle, and dedup under concurrency.

Each test works in a schema of its own, dropped afterwards."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from tickets.db import MIGRATIONS, open_store
from tickets.models import Base, Source, State
from tickets.service import Alert, InvalidTransition, Tickets

from .pg import DEFAULT, PrivateCluster, answers

T0 = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """The PostgreSQL to test against (see ``pg.py``): a URL to its ``test`` database."""
    url = os.environ.get("CAMPUS_TEST_PG_URL", DEFAULT)
    if answers(url):
        yield url
        return
    cluster = PrivateCluster()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A URL whose connections use a fresh schema."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_server)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg_server else "?"
    yield f"{pg_server}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as c:
        c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def alert(key: str, severity: str = "P2", at: datetime = T0) -> Alert:
    return Alert(
        dedup_key=key,
        source=Source.rule,
        severity=severity,
        building="dorm-1",
        trade="plumbing",
        title="Night flow in dorm-1",
        at=at,
        device="wm-dorm-1",
        rule="leak",
    )


@pytest.mark.integration
def test_lifecycle_and_partial_index_on_postgresql(pg_url: str) -> None:
    store = open_store(pg_url)
    try:
        with store.engine.connect() as c:
            assert c.execute(text("SELECT version_num FROM alembic_version")).scalar() == HEAD
            indexdef = c.execute(
                text("SELECT indexdef FROM pg_indexes WHERE indexname = :n"),
                {"n": "uq_tickets_open_dedup_key"},
            ).scalar()
            # the migrations build on PostgreSQL exactly the schema the code uses
            assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
        assert "UNIQUE" in indexdef and "closed" in indexdef
        t = Tickets(store)
        t.upsert_people(
            teams=[{"id": "team-water", "name": "Water", "trade": "plumbing"}],
            technicians=[{"id": "tech-wang", "name": "王建国", "team": "team-water"}],
        )
        tid = t.raise_alert(alert("leak:a")).ticket_id
        t.acknowledge(tid, "tech-wang")
        t.assign(tid, "tech-wang", technician="tech-wang")
        with pytest.raises(InvalidTransition, match="cannot close: it is assigned"):
            t.close(tid, "tech-wang")
        t.resolve(tid, "tech-wang")
        got = t.get(tid)
        assert got.state == State.resolved
        assert got.acknowledged_at is not None and got.acknowledged_at.tzinfo is not None
        assert [e.action for e in got.events] == ["open", "acknowledge", "assign", "resolve"]
    finally:
        store.close()


@pytest.mark.integration
def test_two_writers_raising_the_same_alerts_make_one_ticket_each(pg_url: str) -> None:
    """Two ticket services (separate engines, as two processes would have) raise
    the same 20 alerts at the same instants: 20 tickets, every raise counted."""
    stores = [open_store(pg_url), open_store(pg_url, upgrade=False)]
    services = [Tickets(s) for s in stores]
    keys = [f"rule-{i}:dev" for i in range(20)]
    barrier = threading.Barrier(2)
    results: list[list[bool]] = [[], []]
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for k in keys:
                barrier.wait(10)  # both raise the same key at the same instant
                results[n].append(services[n].raise_alert(alert(k)).created)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=writer, args=(n,)) for n in (0, 1)]
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not errors, errors
        tickets = services[0].list(limit=1000)
        assert len(tickets) == 20
        assert all(tk.count == 2 for tk in tickets)
        assert [a or b for a, b in zip(*results, strict=True)] == [True] * 20  # one created each
        assert not any(a and b for a, b in zip(*results, strict=True))  # never both
    finally:
        for s in stores:
            s.close()


@pytest.mark.integration
def test_a_resolved_ticket_reopens_and_verifies_on_postgresql(pg_url: str) -> None:
    now = [T0]
    store = open_store(pg_url)
    try:
        t = Tickets(store, verify_clear=timedelta(minutes=10), clock=lambda: now[0])
        tid = t.raise_alert(alert("leak:b")).ticket_id
        t.acknowledge(tid, "x")
        t.resolve(tid, "x")
        t.alert_cleared("leak:b", now[0])
        now[0] += timedelta(minutes=10)
        assert t.verify() == [tid]
        assert t.get(tid).state == State.closed
        again = t.raise_alert(alert("leak:b", at=now[0]))
        assert again.created and again.ticket_id != tid
    finally:
        store.close()
