"""``campus tickets serve``: alerts from ``ops/alerts/#`` become tickets.

A ``firing`` alert raises (or updates) its ticket; a ``resolved`` one records
that its rule is clear. A clock closes the resolved tickets whose rule stayed
clear long enough (:meth:`tickets.service.Tickets.verify`), records missed
SLA deadlines and moves unacknowledged tickets up their escalation chain
(:meth:`tickets.service.Tickets.escalate`).

Alerts are QoS 1 on a persistent MQTT 5 session, and each is acknowledged
only after its change is committed: an alert that arrives while the service
is down, or while it dies mid-change, is delivered again (raising is
idempotent through dedup, so a redelivery only counts once more). A document
that cannot be read is logged, kept in ``var/tickets-rejected.jsonl`` and
acknowledged, so it cannot block the ones behind it; a database that does not
answer leaves the alert unacknowledged and the service retries it.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.exc import OperationalError

from campus.settings import Settings, subscribe_on_connect
from ingest.deadletter import DeadLetter
from tickets.outbox import Dispatcher
from tickets.service import Alert, TicketError, Tickets

log = logging.getLogger(__name__)

ALERTS_TOPIC = "ops/alerts/#"
VERIFY_EVERY_S = 10.0  # closing by telemetry, SLA breaches and escalation
RETRY_S = 2.0


class TicketService:
    """Consumes alerts into :class:`Tickets`; :meth:`run` blocks until :meth:`stop`."""

    def __init__(self, settings: Settings, tickets: Tickets, client_id: str = "campus-tickets"):
        self.settings = settings
        self.tickets = tickets
        self.client_id = client_id
        self.rejected_file = settings.var_dir / "tickets-rejected.jsonl"
        self._rejected = DeadLetter(self.rejected_file)
        self.connected = threading.Event()
        self.handled = 0
        self.rejected = 0
        self._stop = threading.Event()
        # the network thread only queues; one worker thread writes the store in order
        self._inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue(maxsize=10_000)
        self.client = self._make_client()
        self.dispatcher: Dispatcher | None = None
        if tickets.channels is not None:
            from api.links import ticket_link

            self.dispatcher = Dispatcher(
                tickets.store, tickets.channels, tickets.clock, link=ticket_link(settings)
            )
        self._sender = threading.Thread(target=self._send_loop, name="outbox", daemon=True)

    def _make_client(self) -> mqtt.Client:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        self.settings.mqtt.secure(client)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_message = lambda c, u, msg: self._inbox.put(msg)
        subscribe_on_connect(client, ALERTS_TOPIC, self.connected, "ticket service")
        return client

    # --------------------------------------------------------------- handling

    def handle(self, payload: bytes) -> int | None:
        """Apply one alert document; the ticket id it touched, if any. The
        alert's latest state is kept for ``/api/alerts``, linked to its ticket.

        Raises :class:`TicketError` for a document that cannot be used, and the
        database's own errors when the store does not answer."""
        try:
            doc = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise TicketError(f"not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise TicketError("an alert must be a JSON object")
        state = doc.get("state")
        if state == "firing":
            ticket_id = self.tickets.raise_alert(Alert.from_rule_event(doc)).ticket_id
            self.tickets.record_alert(doc)  # after raising: it links the ticket
            return ticket_id
        if state == "resolved":
            try:
                at = datetime.fromtimestamp(int(doc["ts_ms"]) / 1000, UTC)
                key = str(doc["dedup_key"])
            except (KeyError, TypeError, ValueError) as exc:
                raise TicketError(f"resolved alert refused: {exc!r}") from None
            cleared = self.tickets.alert_cleared(key, at)
            self.tickets.record_alert(doc)
            return cleared
        raise TicketError(f"state must be 'firing' or 'resolved', got {state!r}")

    def _work(self, msg: mqtt.MQTTMessage) -> None:
        """Handle one message until it is stored or refused, then acknowledge it."""
        while not self._stop.is_set():
            try:
                self.handle(bytes(msg.payload))
                self.handled += 1
                break
            except TicketError as exc:
                self._reject(msg, str(exc))
                break
            except OperationalError as exc:  # the database is away: keep the alert
                log.warning("ticket store not answering (%s); retrying", exc.orig)
                self._stop.wait(RETRY_S)
        else:
            return  # stopping: left unacknowledged, delivered again next start
        if msg.qos > 0:
            self.client.ack(msg.mid, msg.qos)

    def _reject(self, msg: mqtt.MQTTMessage, reason: str) -> None:
        self.rejected += 1
        log.warning("alert on %s refused: %s", msg.topic, reason)
        self._rejected.add(msg.topic, bytes(msg.payload), reason)
        self._rejected.flush()  # on record before the broker forgets the alert

    def run(self) -> None:
        """Connect, handle alerts in order, and every 10 s close verified tickets,
        record missed deadlines and climb escalation chains."""
        self.settings.mqtt.connect_session(self.client, 86_400)  # alerts wait a day
        if self.dispatcher is not None:
            self._sender.start()
        next_verify = time.monotonic()
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_verify:
                    self._verify()
                    next_verify = time.monotonic() + VERIFY_EVERY_S
                try:
                    msg = self._inbox.get(timeout=0.5)
                except queue.Empty:
                    continue
                self._work(msg)
        finally:
            if self._sender.is_alive():
                self._sender.join(10)
            self.client.disconnect()
            self.client.loop_stop()
            self.tickets.store.close()
            self._rejected.close()
            log.info("ticket service stopped: %d alerts, %d refused", self.handled, self.rejected)

    def _send_loop(self) -> None:
        """Send the outbox's due notices, about once a second."""
        assert self.dispatcher is not None
        while not self._stop.wait(1.0):
            try:
                self.dispatcher.dispatch()
            except OperationalError as exc:
                log.warning("ticket store not answering (%s); sending later", exc.orig)
            except Exception:  # a bug must not stop the notices for good
                log.exception("outbox round failed")
        self.dispatcher.close()

    def _verify(self) -> None:
        try:
            for tid in self.tickets.verify():
                log.info("ticket %d closed: its rule stayed clear after the repair", tid)
            for tid, what in self.tickets.escalate():
                log.warning("ticket %d: %s", tid, what)
        except OperationalError as exc:
            log.warning("ticket store not answering (%s); checking later", exc.orig)

    def stop(self) -> None:
        """Ask :meth:`run` to return (safe from a signal handler)."""
        self._stop.set()
