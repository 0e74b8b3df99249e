"""Ticket events in the ``tickets`` measurement carry the SLA figures the
Tickets and SLA board aggregates (time to acknowledge, breaches)."""

from __future__ import annotations

from typing import Any

from campus.influx import InfluxClient
from campus.settings import Settings
from tickets.notify.base import Notice
from tickets.notify.influx import InfluxNotifier


def notice(event: str, at: str, **data: Any) -> Notice:
    ticket = {"opened_at": "2026-11-02T08:00:00+00:00", "state": event, "event_at": at}
    return Notice(
        key=f"k-{event}",
        ticket_id=42,
        event=event,
        severity="P1",
        building="dorm-3",
        trade="plumbing",
        title="Burst pipe",
        body="Water on floor 2",
        language="en",
        data=ticket | data,
    )


def test_events_carry_age_and_breaches(settings: Settings, influx: InfluxClient) -> None:
    sink = InfluxNotifier(settings.influx_url, settings.influx_db)
    try:
        sink.send(notice("opened", "2026-11-02T08:00:00+00:00"))
        sink.send(
            notice(
                "acknowledged",
                "2026-11-02T08:25:00+00:00",
                ack_breached_at="2026-11-02T08:15:00+00:00",
            )
        )
        sink.send(notice("resolved", "2026-11-02T10:30:00+00:00"))
    finally:
        sink.close()
    got = influx.query(
        'SELECT "age_s", "ack_breached", "resolve_breached" FROM "tickets" GROUP BY "event"'
    )
    by_event = {s["tags"]["event"]: s["values"][0][1:] for s in got}
    assert by_event == {
        "opened": [0.0, 0.0, 0.0],
        "acknowledged": [1500.0, 1.0, 0.0],  # 25 minutes, past its 15-minute SLA
        "resolved": [9000.0, 0.0, 0.0],
    }
    ack = influx.query('SELECT mean("age_s") / 60 FROM "tickets" WHERE "event" = \'acknowledged\'')
    assert ack[0]["values"][0][1] == 25.0
