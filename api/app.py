"""The FastAPI application: ``create_app(settings)``; ``campus api`` serves it.

Errors have one shape, ``{"detail": "..."}``, and one status each:

* a ticket store that does not answer (PostgreSQL down or restarting, SQLite
  locked past its timeout) is **503** with ``Retry-After``, never a 500: the
  request changed nothing, and sending it again is safe;
* a ticket that does not exist, or that is not the caller's to see, is 404;
* a transition the ticket's state refuses is 409, with the reason;
* bad input is 422 naming the field.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from api.routers import tickets as tickets_router
from campus.settings import Settings
from tickets.service import InvalidTransition, TicketError, TicketNotFound, Tickets, UnknownPerson

log = logging.getLogger("campus.api")

RETRY_AFTER_S = 5


def store_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says the ticket store is away (not that the request is wrong)."""
    if isinstance(exc, OperationalError | DisconnectionError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def _problem(status: int, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers or None)


def _open(settings: Settings) -> tuple[Tickets, frozenset[str]]:
    from campus.registry import load_campus
    from tickets.cli import open_tickets

    buildings = frozenset(load_campus(settings.campus_file).buildings)
    for attempt in range(3):  # the ticket service may load the same people at the same time
        try:
            return open_tickets(settings), buildings
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def create_app(settings: Settings, tickets: Tickets | None = None) -> FastAPI:
    """The API over the ticket store of ``settings`` (or the given ``tickets``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if tickets is None:
            app.state.tickets, app.state.buildings = _open(settings)
        else:
            from campus.registry import load_campus

            app.state.tickets = tickets
            app.state.buildings = frozenset(load_campus(settings.campus_file).buildings)
        try:
            yield
        finally:
            if tickets is None:
                app.state.tickets.store.close()

    app = FastAPI(
        title="Campus facility monitoring",
        summary="Repair tickets of the campus facility-monitoring platform.",
        version="0.1",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.include_router(tickets_router.router)
    _handlers(app)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "A part is down."}})
    def readyz(request: Request) -> JSONResponse:
        """The database, InfluxDB and the broker each answer."""
        checks = {
            "database": _check_db(request.app.state.tickets),
            "influxdb": _check_influx(settings),
            "broker": _check_broker(settings),
        }
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)

    return app


# what each refusal of the ticket service answers (the most specific class decides)
REFUSALS: tuple[tuple[type[Exception], int], ...] = (
    (TicketNotFound, 404),
    (InvalidTransition, 409),
    (UnknownPerson, 422),
    (TicketError, 422),
)


def _handlers(app: FastAPI) -> None:
    for exc_type, status in REFUSALS:
        app.add_exception_handler(exc_type, _refusal(status))

    @app.exception_handler(DBAPIError)
    @app.exception_handler(DisconnectionError)
    @app.exception_handler(PoolTimeout)
    async def _store(request: Request, exc: Exception) -> JSONResponse:
        if not store_unavailable(exc):
            raise exc  # a bug, not an outage: the server error it is
        log.warning("ticket store not answering: %s", getattr(exc, "orig", exc))
        return _problem(
            503,
            "the ticket store is not answering; nothing was changed, try again",
            **{"Retry-After": str(RETRY_AFTER_S)},
        )


def _refusal(status: int) -> Any:
    """A handler answering ``status`` with the exception's message."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return _problem(status, str(exc))

    return handle


def _check_db(tickets: Tickets) -> str:
    try:
        with tickets.store.engine.connect() as c:
            c.execute(text("SELECT 1"))
        return "ok"
    except Exception as exc:
        return f"down: {type(exc).__name__}"


def _check_influx(settings: Settings) -> str:
    import httpx

    try:
        r = httpx.get(f"{settings.influx_url}/ping", timeout=2)
        return "ok" if r.status_code == 204 else f"down: HTTP {r.status_code}"
    except httpx.HTTPError as exc:
        return f"down: {type(exc).__name__}"


def _check_broker(settings: Settings) -> str:
    parts = urlsplit(settings.mqtt_url)
    port = parts.port or (8883 if parts.scheme == "mqtts" else 1883)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", port), timeout=2):
            return "ok"
    except OSError as exc:
        return f"down: {exc.strerror or type(exc).__name__}"


def run(settings: Settings, host: str, port: int) -> None:
    """Serve the API until stopped (SIGINT/SIGTERM end it cleanly)."""
    import uvicorn

    config: dict[str, Any] = {"log_level": settings.log_level.lower(), "access_log": False}
    uvicorn.run(create_app(settings), host=host, port=port, **config)
