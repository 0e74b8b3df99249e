"""The outbox on a real SQLite store and a real local HTTP receiver: notices
commit with their ticket change, are sent after, retried with backoff when the
receiver fails, parked when it refuses, and sent again (same key) when the
sender dies between sending and recording."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import CONFIG
from tickets.db import open_store
from tickets.models import Attempt, OutboxItem, Source
from tickets.oncall import load_oncall
from tickets.outbox import Dispatcher, load_channels
from tickets.service import Alert, Tickets

from .webhook import WebhookReceiver

T0 = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.close()


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def setup(tmp_path: Path, receiver: WebhookReceiver, campus):
    """Tickets with the shipped on-call file and two channels on the receiver:
    ``ops`` (broadcast) and ``wecom`` (the technicians' own)."""
    notify = tmp_path / "notify.yaml"
    notify.write_text(
        "channels:\n"
        f"  ops: {{type: webhook, url: '{receiver.url}', timeout: 2}}\n"
        "  wecom: {type: webhook, url_env: TEST_WECOM_URL, timeout: 2}\n"
        "  email: {type: email, host_env: TEST_NO_SMTP, port: 25, sender: a@b.cn}\n"
        "broadcast: [ops]\n"
    )
    channels = load_channels(notify, env={"TEST_WECOM_URL": receiver.url + "?group"})
    assert set(channels.configs) == {"ops", "wecom"}  # email left out: no host
    clock = Clock()
    store = open_store(f"sqlite:///{tmp_path / 'tickets.db'}")
    oncall = load_oncall(CONFIG / "oncall.yaml", list(campus.buildings))
    tickets = Tickets(store, clock=clock, channels=channels)
    tickets.use_oncall(oncall)
    return tickets, Dispatcher(store, channels, clock), clock


def alert() -> Alert:
    return Alert(
        dedup_key="water-burst:wm-dorm-1",
        source=Source.rule,
        severity="P1",
        building="dorm-1",
        trade="plumbing",
        title="爆管",
        at=T0,
        rule="water-burst",
        device="wm-dorm-1",
    )


def items(tickets: Tickets) -> list[OutboxItem]:
    with tickets.store.session() as s:
        return list(s.scalars(select(OutboxItem).order_by(OutboxItem.id)))


@pytest.mark.integration
def test_a_new_ticket_reaches_the_broadcast_and_the_primary_on_call(setup, receiver) -> None:
    tickets, dispatcher, _ = setup
    tid = tickets.raise_alert(alert()).ticket_id
    queued = items(tickets)  # committed with the ticket, nothing sent yet
    primary = tickets.oncall.chain("plumbing", "dorm-1", T0)[0]
    assert [(i.channel, i.recipient, i.event) for i in queued] == [
        ("ops", None, "opened"),
        ("wecom", primary.id, "opened"),
    ]
    assert receiver.got == []
    assert dispatcher.dispatch() == 2
    assert dispatcher.dispatch() == 0  # sent once
    keys = [h["Idempotency-Key"] for h, _ in receiver.got]
    assert keys == [i.key for i in queued]
    bodies = [b for _, b in receiver.got]
    assert all(b["ticket_id"] == tid and b["event"] == "opened" for b in bodies)
    assert bodies[1]["language"] == primary.language.value
    assert "工单" in bodies[0]["title"]  # the campus default language


@pytest.mark.integration
def test_failures_are_retried_with_backoff_and_refusals_parked(setup, receiver) -> None:
    tickets, dispatcher, clock = setup
    receiver.statuses = [500, 503, 200, 400]  # ops fails twice; wecom refused for good
    tickets.raise_alert(alert())
    assert dispatcher.dispatch() == 0  # ops 500, wecom 503
    ops, wecom = items(tickets)
    assert ops.next_attempt_at == T0 + timedelta(seconds=5) and ops.attempts == 1
    clock.now += timedelta(seconds=4)
    assert dispatcher.dispatch() == 0  # not due yet
    clock.now += timedelta(seconds=1)
    assert dispatcher.dispatch() == 1  # ops 200, wecom 400
    ops, wecom = items(tickets)
    assert ops.sent_at == clock.now and ops.attempts == 2
    assert wecom.failed_at == clock.now and "400" in (wecom.last_error or "")
    clock.now += timedelta(hours=1)
    assert dispatcher.dispatch() == 0  # the refused one is not retried
    with tickets.store.session() as s:
        tries = s.scalars(select(Attempt.ok).order_by(Attempt.id)).all()
    assert tries == [False, False, True, False]


@pytest.mark.integration
def test_a_sender_dying_after_sending_sends_again_with_the_same_key(setup, receiver) -> None:
    tickets, dispatcher, clock = setup
    tickets.raise_alert(alert())

    class Dies(Dispatcher):
        def _send(self, s, item, ticket):  # type: ignore[no-untyped-def]
            super()._send(s, item, ticket)
            raise RuntimeError("killed before recording")  # the transaction rolls back

    with pytest.raises(RuntimeError):
        Dies(tickets.store, dispatcher.channels, clock).dispatch()
    assert dispatcher.dispatch() == 2
    keys = [h["Idempotency-Key"] for h, _ in receiver.got]
    assert keys[0] == keys[1]  # the same notice twice, one key: the receiver can drop it
    with tickets.store.session() as s:
        assert s.scalar(select(func.count()).where(OutboxItem.sent_at.is_(None))) == 0


@pytest.mark.integration
def test_an_escalation_reaches_the_person_it_names(setup, receiver) -> None:
    tickets, dispatcher, clock = setup
    tickets.raise_alert(alert())
    dispatcher.dispatch()
    clock.now += timedelta(minutes=15)
    assert "escalated to secondary" in [what for _, what in tickets.escalate()]
    dispatcher.dispatch()
    secondary = tickets.oncall.chain("plumbing", "dorm-1", clock.now)[1]
    escalated = [(h, b) for h, b in receiver.got if b["event"] == "escalated"]
    assert escalated and any(secondary.id in h["Idempotency-Key"] for h, _ in escalated)


@pytest.mark.integration
def test_the_technician_assigned_hears_of_it(setup, receiver) -> None:
    tickets, dispatcher, _ = setup
    tid = tickets.raise_alert(alert()).ticket_id
    tickets.acknowledge(tid, "supervisor")
    tickets.assign(tid, "supervisor", technician="tech-wang-jg")
    dispatcher.dispatch()
    assigned = [h["Idempotency-Key"] for h, b in receiver.got if b["event"] == "assigned"]
    assert any(k.endswith("-wecom-tech-wang-jg") for k in assigned), assigned
