"""Ticket events into InfluxDB's ``tickets`` measurement (DESIGN.md section 4),
for dashboard annotations.

One point per notice: tags ``building``, ``severity``, ``trade``, ``event`` and
``ticket`` (the id), fields ``ticket_id``, ``state``, ``title`` and ``text``,
at the event's time. For the Tickets and SLA board the point also carries, as
numbers InfluxQL can aggregate: ``age_s`` (seconds from opening to this event,
so the ``acknowledged`` events' mean ``age_s`` is the time to acknowledge),
``ack_breached`` and ``resolve_breached`` (1 once the ticket missed that SLA,
else 0). Sent through the outbox like any notice, so an InfluxDB
that is away gets the point later; writing it again overwrites the same point.
"""

from __future__ import annotations

from datetime import datetime

from campus.errors import SinkError
from campus.influx import DatabaseNotFound, InfluxClient
from campus.lineprotocol import point
from tickets.notify.base import Notice, NotifyError


class InfluxNotifier:
    """Writes ticket events as points of the ``tickets`` measurement."""

    name = "influx"

    def __init__(
        self,
        url: str,
        database: str,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.client = InfluxClient(
            url, database, username=username, password=password, token=token, timeout=timeout
        )

    def send(self, notice: Notice) -> None:
        """Write the event's point; a refused or unreachable server is an error."""
        data = notice.data
        at = datetime.fromisoformat(str(data.get("event_at") or data.get("opened_at")))
        ts = int(at.timestamp() * 1000)
        opened = data.get("opened_at")
        age_s = (at - datetime.fromisoformat(str(opened))).total_seconds() if opened else 0.0
        line = point(
            "tickets",
            {
                "building": notice.building,
                "severity": notice.severity,
                "trade": notice.trade,
                "event": notice.event,
                "ticket": str(notice.ticket_id),
            },
            {
                "ticket_id": float(notice.ticket_id),
                "state": str(data.get("state", "")),
                "title": notice.title,
                "text": notice.body,
                "age_s": max(age_s, 0.0),
                "ack_breached": 1.0 if data.get("ack_breached_at") else 0.0,
                "resolve_breached": 1.0 if data.get("resolve_breached_at") else 0.0,
            },
            ts,
        )
        try:
            try:
                self.client.write([line])
            except DatabaseNotFound:  # a fresh server: the ingester may not have made it yet
                self.client.create_database()
                self.client.write([line])
        except SinkError as exc:
            raise NotifyError(self.name, str(exc), retryable=exc.retryable) from None

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self.client.close()
