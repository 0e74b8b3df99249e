"""Ticket events into InfluxDB's ``tickets`` measurement (DESIGN.md section 4),
for dashboard annotations.

One point per notice: tags ``building``, ``severity``, ``trade``, ``event`` and
``ticket`` (the id), fields ``ticket_id``, ``state``, ``title`` and ``text``,
at the event's time. Sent through the outbox like any notice, so an InfluxDB
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
        at = notice.data.get("event_at") or notice.data.get("opened_at")
        ts = int(datetime.fromisoformat(str(at)).timestamp() * 1000)
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
                "state": str(notice.data.get("state", "")),
                "title": notice.title,
                "text": notice.body,
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
