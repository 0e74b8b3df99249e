"""``/api/stream``: a live stream (Server-Sent Events) of ticket changes, alerts
and the campus's state.

The ticket service and the rules engine are other processes; they publish
every ticket change on ``ops/tickets/{severity}/{building}`` and every alert
change on ``ops/alerts/{severity}/{building}``. The API holds one MQTT client
(QoS 0, a clean session under a client id of its own, so a restart replays
nothing and two API processes never take each other's place) subscribed to
both, and fans each message out to the open streams through one bounded queue
per client. A client too slow to keep up loses its oldest events, never
blocks the others, and is told with a ``gap`` event how many it missed.

Events (each ``data`` is one line of JSON):

* ``ticket``: the ticket notice as published (``key``, ``ticket_id``, ``event``,
  ``severity``, ``building``, ``trade``, ``title``, ``body``, ``data``: the ticket);
  a notice the broker delivers twice (QoS 1 upstream) is sent once;
* ``alert``: the rules engine's alert document (``rule``, ``device``,
  ``building``, ``state`` firing | resolved, ``severity``, ``trade``, ...);
* ``campus``: on connecting and every :data:`CAMPUS_EVERY_S` seconds, the
  campus state of ``/api/campus`` (:mod:`api.state`) in short: ``as_of``,
  ``telemetry``, the ``totals`` and, per building id, its ``state``,
  ``open_tickets``, ``firing_alerts``, ``worst_severity`` and ``devices_offline``;
* ``gap``: ``{"dropped": n}``, events lost because the client read too slowly:
  fetch ``/api/tickets`` again.

A technician's stream carries only the tickets and alerts of their scope (the
same test as ``/api/tickets``); the campus summary is the campus's, as on the
public board. Events have no ``id``: a client that reconnects (after the
``retry`` delay the stream announces) reads the current state from
``/api/tickets`` and ``/api/alerts`` and takes the stream from there, which is
simpler and as correct as replaying from a ``Last-Event-ID``. A comment line
every :data:`HEARTBEAT_S` seconds keeps proxies from closing an idle stream
and finds clients that left. A stream ends after :data:`MAX_STREAM_S` (the
client reconnects and its token is checked again), and as soon as the server
is told to stop (SIGTERM, SIGINT), so that stopping never waits for clients.

The stream needs a bearer token, so a browser reads it with ``fetch`` and a
stream reader rather than ``EventSource`` (which cannot send the header).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
from fastapi import APIRouter, FastAPI, HTTPException, Request, status
from fastapi.responses import StreamingResponse
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from api.deps import PrincipalDep, TicketsDep
from api.routers.tickets import scope_of
from api.schemas import Problem
from api.state import CampusOut
from campus.settings import Settings
from tickets.models import Ticket
from tickets.service import WorkScope

log = logging.getLogger("campus.api.stream")

router = APIRouter(prefix="/api", tags=["stream"])

TOPICS = ("ops/tickets/#", "ops/alerts/#")
QUEUE_SIZE = 256  # events waiting per client before its oldest are dropped
MAX_CLIENTS = 500  # open streams per API process
HEARTBEAT_S = 15.0
CAMPUS_EVERY_S = 30.0
RETRY_MS = 5000  # how long a client waits before reconnecting
MAX_STREAM_S = 3600.0
RECENT_KEYS = 2048  # notice keys remembered to drop duplicates
_CLOSE = ("", "")  # the sentinel that ends a stream


class Subscriber:
    """One open stream: its queue and what its reader may see."""

    def __init__(self, scope: WorkScope | None) -> None:
        self.scope = scope
        self.queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue(QUEUE_SIZE)
        self.missed = 0  # dropped since the last ``gap`` event

    def offer(self, item: tuple[str, str]) -> int:
        """Queue ``item``, dropping the oldest when full; returns how many were dropped."""
        dropped = 0
        while True:
            try:
                self.queue.put_nowait(item)
                return dropped
            except asyncio.QueueFull:
                self.queue.get_nowait()
                dropped += 1
                self.missed += 1


class Hub:
    """The MQTT subscription and the open streams it feeds."""

    def __init__(self, app: FastAPI, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.clients: set[Subscriber] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client: mqtt.Client | None = None
        self.subscribed = threading.Event()  # the broker confirmed both subscriptions
        self.closing = False
        self.received = 0  # messages from the broker
        self.malformed = 0  # ... that were not a JSON object
        self.duplicates = 0
        self.dropped = 0  # events dropped from slow clients' queues
        self._recent: deque[str] = deque(maxlen=RECENT_KEYS)
        self._recent_set: set[str] = set()
        self._summary: tuple[Any, str] | None = None  # (snapshot, its event data)
        self._chained: dict[int, tuple[Any, Any]] = {}  # signal -> (our handler, the previous)

    # ----------------------------------------------------------- lifecycle

    async def start(self, app: FastAPI) -> None:
        """Connect in the background (a broker that is down delays nothing)."""
        self.loop = asyncio.get_running_loop()
        self.closing = False
        client_id = f"campus-api-{os.getpid()}-{secrets.token_hex(4)}"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        target = self.settings.mqtt
        target.secure(client)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.connect_async(target.host, target.port, keepalive=30, clean_start=True)
        client.loop_start()
        self.client = client
        self._chain_exit_signals(self.loop)

    def _chain_exit_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        """End the streams as soon as the server is told to stop.

        Uvicorn waits for every open response to finish before it runs the
        app's shutdown, and an event stream never finishes by itself: without
        this, ``campus api`` would wait for its clients to leave. So the hub
        puts itself in front of the SIGINT and SIGTERM handlers the server
        installed (the server restores its own when it exits); where signals
        cannot be handled (not the main thread), the server's
        ``timeout_graceful_shutdown`` is what ends the streams."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue  # default or ignored: nobody stops gracefully on it

            def ours(signum: int, frame: Any, previous: Callable[..., Any] = previous) -> None:
                loop.call_soon_threadsafe(self.close)
                previous(signum, frame)

            signal.signal(sig, ours)
            self._chained[sig] = (ours, previous)

    async def stop(self, app: FastAPI) -> None:
        """End every stream and disconnect."""
        self.close()
        for sig, (ours, previous) in self._chained.items():
            if signal.getsignal(sig) is ours:
                signal.signal(sig, previous)
        self._chained.clear()
        client, self.client = self.client, None
        if client is not None:
            client.disconnect()
            await asyncio.to_thread(client.loop_stop)

    def close(self) -> None:
        """Wake every stream with the end sentinel."""
        self.closing = True
        for sub in list(self.clients):
            sub.offer(_CLOSE)

    # ------------------------------------------------- MQTT (network thread)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if getattr(rc, "is_failure", False):
            log.error("broker refused the live stream's connection: %s", rc)
            return
        client.subscribe([(t, 0) for t in TOPICS])

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, codes: Any, props: Any) -> None:
        if all(not getattr(c, "is_failure", False) for c in codes):
            self.subscribed.set()
            log.info("live stream subscribed to %s", ", ".join(TOPICS))
        else:
            log.error("broker refused the live stream's subscriptions: %s", codes)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self.subscribed.clear()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self.received += 1
        kind = "ticket" if msg.topic.startswith("ops/tickets/") else "alert"
        try:
            doc = json.loads(msg.payload)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            self.malformed += 1
            return
        loop = self.loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.publish, kind, doc)

    # --------------------------------------------------------- event loop

    def publish(self, kind: str, doc: dict[str, Any]) -> None:
        """Hand one event to every stream allowed to see it."""
        if kind == "ticket" and isinstance(doc.get("key"), str):
            key = doc["key"]
            if key in self._recent_set:
                self.duplicates += 1
                return
            if len(self._recent) == self._recent.maxlen:
                self._recent_set.discard(self._recent[0])
            self._recent.append(key)
            self._recent_set.add(key)
        if not self.clients:
            return
        subject = _subject(kind, doc)
        data = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str)
        for sub in list(self.clients):
            if sub.scope is None or (subject is not None and sub.scope.covers(subject)):
                self.dropped += sub.offer((kind, data))

    async def summary(self) -> str | None:
        """The campus state in short, as one line of JSON (made once per
        snapshot however many streams ask); None while it cannot be had."""
        state = getattr(self.app.state, "campus_state", None)
        if state is None:
            return None
        try:
            snap = await asyncio.to_thread(state.snapshot)
        except Exception as exc:  # the stream goes on; the next tick tries again
            log.warning("campus state not read for the live stream: %s", exc)
            return None
        cached = self._summary
        if cached is not None and cached[0] is snap:
            return cached[1]
        data = json.dumps(campus_summary(snap.out), ensure_ascii=False, separators=(",", ":"))
        self._summary = (snap, data)
        return data

    async def events(self, sub: Subscriber) -> AsyncIterator[str]:
        """The text of one stream, until the client leaves, the app stops or
        the stream is :data:`MAX_STREAM_S` old."""
        loop = asyncio.get_running_loop()
        self.clients.add(sub)
        try:
            yield f"retry: {RETRY_MS}\n\n"
            started = loop.time()
            next_campus = started
            next_beat = started + HEARTBEAT_S
            while not self.closing and loop.time() - started < MAX_STREAM_S:
                now = loop.time()
                if now >= next_campus:
                    next_campus = now + CAMPUS_EVERY_S
                    summary = await self.summary()
                    if summary is not None:
                        yield frame("campus", summary)
                        next_beat = loop.time() + HEARTBEAT_S
                    continue
                if now >= next_beat:
                    yield ": ping\n\n"
                    next_beat = now + HEARTBEAT_S
                    continue
                try:
                    kind, data = await asyncio.wait_for(
                        sub.queue.get(), min(next_campus, next_beat) - now
                    )
                except TimeoutError:
                    continue
                if (kind, data) == _CLOSE:
                    return
                if sub.missed:
                    yield frame("gap", json.dumps({"dropped": sub.missed}))
                    sub.missed = 0
                yield frame(kind, data)
                next_beat = loop.time() + HEARTBEAT_S
        finally:
            self.clients.discard(sub)


def frame(event: str, data: str) -> str:
    """One SSE event (``data`` is one line of JSON)."""
    return f"event: {event}\ndata: {data}\n\n"


def _subject(kind: str, doc: dict[str, Any]) -> Ticket | None:
    """What a technician's scope is tested on: the ticket (or, for an alert,
    its building and trade), unsaved."""
    ticket = doc.get("data") if kind == "ticket" else None
    src = ticket if isinstance(ticket, dict) else doc
    building, trade = src.get("building", doc.get("building")), src.get("trade", doc.get("trade"))
    if not isinstance(building, str) or not isinstance(trade, str):
        return None
    tech = src.get("technician_id") if kind == "ticket" else None
    return Ticket(
        building=building, trade=trade, technician_id=tech if isinstance(tech, str) else None
    )


def campus_summary(out: CampusOut) -> dict[str, Any]:
    """The ``campus`` event: the totals and each building's state, without
    names, coordinates or readings (``/api/campus`` has those)."""
    return {
        "as_of": out.as_of.isoformat(),
        "telemetry": out.telemetry,
        "totals": out.totals.model_dump(),
        "buildings": {
            b.id: {
                "state": b.state,
                "open_tickets": b.open_tickets,
                "firing_alerts": b.firing_alerts,
                "worst_severity": b.worst_severity,
                "devices_offline": b.devices_offline,
            }
            for b in out.buildings
        },
    }


class _StreamCollector(Collector):
    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        h = self.hub
        yield GaugeMetricFamily(
            "campus_api_stream_clients", "Open live streams", value=len(h.clients)
        )
        yield GaugeMetricFamily(
            "campus_api_stream_subscribed",
            "1 while the broker confirms the live stream's subscriptions",
            value=1 if h.subscribed.is_set() else 0,
        )
        yield CounterMetricFamily(
            "campus_api_stream_messages",
            "Messages from ops/tickets and ops/alerts",
            value=h.received,
        )
        yield CounterMetricFamily(
            "campus_api_stream_malformed", "Messages that were not a JSON object", value=h.malformed
        )
        yield CounterMetricFamily(
            "campus_api_stream_dropped",
            "Events dropped from the queues of clients that read too slowly",
            value=h.dropped,
        )


def install(app: FastAPI, settings: Settings) -> None:
    """One hub per app, started and stopped with it."""
    hub = Hub(app, settings)
    app.state.stream = hub
    app.state.on_start.append(hub.start)
    app.state.on_stop.append(hub.stop)
    metrics = getattr(app.state, "metrics", None)
    if metrics is not None:
        metrics.registry.register(_StreamCollector(hub))


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Events: ticket, alert, campus, gap (see docs/api.md).",
        },
        401: {"model": Problem, "description": "No valid bearer token."},
        503: {"model": Problem, "description": "Too many open streams; try again."},
    },
)
async def stream(request: Request, svc: TicketsDep, who: PrincipalDep) -> StreamingResponse:
    """Ticket changes, alerts and the campus state as they happen (Server-Sent
    Events); a technician receives only the tickets and alerts of their scope."""
    hub: Hub = request.app.state.stream
    if len(hub.clients) >= MAX_CLIENTS or hub.closing:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "too many open streams; try again",
            headers={"Retry-After": str(RETRY_MS // 1000)},
        )
    sub = Subscriber(scope_of(svc, who))
    return StreamingResponse(
        hub.events(sub),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
