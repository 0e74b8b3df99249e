"""``/metrics``: the API's figures in the Prometheus text format.

Each app has a registry of its own (``app.state.metrics``), never the process's
global one, so several apps in one process (tests, a bench) do not clash.

* ``campus_api_requests_total{route, method, status}``: requests answered, by
  route *template* (``/api/tickets/{ticket_id}``, never the raw path, so ids
  cannot grow the label set; a path no route knows is ``unmatched``, a method
  outside the usual seven ``other``);
* ``campus_api_request_seconds{route, method}``: time to answer (event streams
  are left out: they last as long as the client stays);
* ``campus_api_tickets_open{severity}``: tickets open, acknowledged, assigned
  or in progress (as in ``/api/campus``), counted in the store at every scrape
  (one grouped query on an indexed column), and
  ``campus_api_ticket_store_up`` (0 when that query failed: the scrape itself
  still answers);
* what other parts add to the registry (the live stream's clients and drops).

Requests refused by the body limit (413) are answered before this timing
layer and are not counted.

``/metrics`` needs no token: Prometheus scrapes without one, and the figures
hold no ticket content. Serve it on a private interface only (docs/api.md:
the reverse proxy answers ``/metrics`` only to the monitoring network).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from api.state import OPEN_STATES, SEVERITIES
from campus.settings import Settings
from tickets.models import Ticket

router = APIRouter(tags=["health"])

UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ApiMetrics:
    """The figures of one app, in a registry of its own."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "campus_api_requests",
            "Requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.seconds = Histogram(
            "campus_api_request_seconds",
            "Time to answer a request (event streams excepted), by route template and method",
            ["route", "method"],
            buckets=BUCKETS,
            registry=r,
        )

    def observe(self, route: str, method: str, status: int, seconds: float | None) -> None:
        """Count one answered request (and time it, unless ``seconds`` is None)."""
        self.requests.labels(route, method, str(status)).inc()
        if seconds is not None:
            self.seconds.labels(route, method).observe(seconds)


class Timing:
    """Pure-ASGI middleware: counts and times every HTTP request by the route
    template the router matched (read from the scope after the app ran)."""

    def __init__(self, app: Any, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500  # an exception that escapes the app becomes a server error
        streaming = False

        async def watch(message: Any) -> None:
            nonlocal status, streaming
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"content-type" and value.startswith(b"text/event-stream"):
                        streaming = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or UNMATCHED
            elapsed = None if streaming else time.perf_counter() - t0
            method = scope.get("method", "")
            method = method if method in METHODS else "other"  # a client picks any word
            self.metrics.observe(template, method, status, elapsed)


class _TicketsCollector(Collector):
    """Open tickets by severity, read from the store at each scrape."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        tickets = getattr(self.app.state, "tickets", None)
        up = GaugeMetricFamily(
            "campus_api_ticket_store_up", "1 when the ticket store answered this scrape"
        )
        if tickets is None:  # not started yet
            return
        try:
            counts = open_by_severity(tickets.store)
        except Exception:  # the scrape must answer even when the store does not
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        family = GaugeMetricFamily(
            "campus_api_tickets_open",
            "Tickets open to in progress, by severity",
            labels=["severity"],
        )
        for severity in SEVERITIES:
            family.add_metric([severity], counts.get(severity, 0))
        yield family


def open_by_severity(store: Any) -> dict[str, int]:
    """How many tickets are open (not resolved or closed), per severity."""
    q = (
        select(Ticket.severity, func.count())
        .where(Ticket.state.in_([s.value for s in OPEN_STATES]))
        .group_by(Ticket.severity)
    )
    with store.session() as s:
        return {str(sev): int(n) for sev, n in s.execute(q).all()}


def install(app: FastAPI, settings: Settings) -> None:
    """Make the app's registry and time every request (this part comes first)."""
    metrics = ApiMetrics()
    metrics.registry.register(_TicketsCollector(app))
    app.state.metrics = metrics
    app.add_middleware(Timing, metrics=metrics)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
)
def metrics(request: Request) -> Response:
    """The API's figures in the Prometheus text format (no token; see docs/api.md)."""
    registry: CollectorRegistry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
