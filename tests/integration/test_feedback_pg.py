"""Feedback triage on a real PostgreSQL under concurrency: twenty reports about
one place sent at the same instant, through two stores (as two API processes
would), raise exactly one ticket and all end linked to it."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from api import feedback as fb
from campus.registry import Campus
from campus.settings import Settings
from tests.conftest import CONFIG
from tickets.db import open_store
from tickets.models import Comment, Feedback, Ticket
from tickets.service import Tickets

from .pg import DEFAULT, PrivateCluster, answers

SENDERS = 20


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A fresh schema on the test PostgreSQL (``pg.py`` says which)."""
    server = os.environ.get("CAMPUS_TEST_PG_URL", DEFAULT)
    cluster = None
    if not answers(server):
        cluster = PrivateCluster()
        server = cluster.start()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in server else "?"
    try:
        yield f"{server}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
        if cluster is not None:
            cluster.stop()


@pytest.mark.integration
def test_twenty_concurrent_reports_about_one_place_raise_one_ticket(
    pg_url: str, campus: Campus, tmp_path: Path
) -> None:
    settings = Settings(var_dir=tmp_path, config_dir=CONFIG, db_url=pg_url)
    assert settings.feedback_ticket_threshold < SENDERS
    stores = [open_store(pg_url), open_store(pg_url, upgrade=False)]
    services = [Tickets(s) for s in stores]
    barrier = threading.Barrier(SENDERS)
    receipts: list[fb.Receipt] = []
    errors: list[BaseException] = []

    def send(n: int) -> None:
        sub = fb.Submission("no_hot_water", "dorm-5", f"5-{300 + n}", f"没有热水 #{n}", None)
        try:
            barrier.wait(30)
            receipts.append(fb.submit(services[n % 2], settings, campus, sub))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(SENDERS)]
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not errors, errors
        assert len(receipts) == SENDERS
        with stores[0].session() as s:
            tickets = s.scalars(select(Ticket)).all()
            assert [(t.dedup_key, t.source, t.state) for t in tickets] == [
                ("feedback:dorm-5:plumbing", "feedback", "open")
            ]
            tid = tickets[0].id
            linked = s.scalars(select(Feedback.ticket_id)).all()
            notes = s.scalar(select(func.count()).where(Comment.ticket_id == tid))
        assert linked == [tid] * SENDERS  # every report joined the one ticket
        assert notes and notes >= 1
        views = [fb.lookup(services[0], r.token) for r in receipts]
        assert {(v.status, v.ticket_id) for v in views if v is not None} == {("linked", tid)}
        listed, total = fb.page(services[1], building="dorm-5", status="linked", limit=5)
        assert total == SENDERS and [v.ticket_id for v in listed] == [tid] * 5
    finally:
        for s in stores:
            s.close()
