"""The FastAPI application: ``create_app(settings)``; ``campus api`` serves it.

Errors have one shape, ``{"detail": "..."}``, and one status each:

* a ticket store that does not answer (PostgreSQL down or restarting, SQLite
  locked past its timeout) is **503** with ``Retry-After``, never a 500: the
  request changed nothing, and sending it again is safe;
* a ticket that does not exist, or that is not the caller's to see, is 404;
* a transition the ticket's state refuses is 409, with the reason;
* bad input is 422 naming the field: ``"building: ...; text: ..."`` (the
  input itself is not echoed back).
"""

from __future__ import annotations

import gc
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from api.routers import ROUTERS
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


def _open(settings: Settings) -> Tickets:
    from tickets.cli import open_tickets

    for attempt in range(3):  # the ticket service may load the same people at the same time
        try:
            return open_tickets(settings)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def create_app(settings: Settings, tickets: Tickets | None = None) -> FastAPI:
    """The API over the ticket store of ``settings`` (or the given ``tickets``)."""

    from campus.influx import InfluxClient
    from campus.registry import load_campus

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.tickets = _open(settings) if tickets is None else tickets
        app.state.influx = InfluxClient.from_settings(settings, timeout=10.0)
        try:
            for start in app.state.on_start:
                await start(app)
            if app.state.freeze_after_start:
                # What exists now (registry, config, routes) lives as long as the
                # process: kept out of the collector's full passes, which otherwise
                # took about 100 ms of every 40th ticket page (docs/performance.md).
                gc.collect()
                gc.freeze()
            yield
        finally:
            for stop in app.state.on_stop:
                await stop(app)
            app.state.influx.close()
            if tickets is None:
                app.state.tickets.store.close()

    app = FastAPI(
        title="Campus facility monitoring",
        summary="Campus state, readings, alerts, repair tickets, rules, reports and "
        "anonymous feedback of the campus facility-monitoring platform.",
        version="0.1",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.campus = load_campus(settings.campus_file)
    app.state.buildings = frozenset(app.state.campus.buildings)
    app.state.on_start = []  # async callables(app), run at startup (in this order)
    app.state.on_stop = []
    app.state.freeze_after_start = False  # run() sets it: a served process, not a test
    app.add_middleware(BodyLimit, limit=settings.api_max_body_bytes)  # inside the timing layer
    for module in ROUTERS:
        install = getattr(module, "install", None)
        if install is not None:  # a part with more than routes (middleware, background work)
            install(app, settings)
        app.include_router(module.router)
    _handlers(app)
    _one_error_shape(app)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses={503: {"description": "A part is down."}})
    def readyz(request: Request) -> JSONResponse:
        """The database, InfluxDB and the broker each answer."""
        checks = {
            "database": _check_db(request.app.state.tickets),
            # the app's kept client: a new one per probe builds a TLS context (30 ms of CPU)
            "influxdb": request.app.state.influx.health(),
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


_WHERE = {"body", "query", "path", "header", "cookie"}


def _handlers(app: FastAPI) -> None:
    for exc_type, status in REFUSALS:
        app.add_exception_handler(exc_type, _refusal(status))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # "field: what is wrong", without echoing the input: a lone surrogate or a
        # 1e400 in it would make the answer itself fail to encode
        problems = []
        for e in exc.errors()[:10]:
            loc = ".".join(str(p) for p in e.get("loc", ()) if p not in _WHERE) or "body"
            msg = str(e.get("msg", "invalid"))
            problems.append(f"{loc}: {msg}".encode("utf-8", "backslashreplace").decode())
        return _problem(422, "; ".join(problems))

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


class BodyLimit:
    """Refuse a request body over ``limit`` bytes with 413 before it is read whole:
    by its ``Content-Length`` when it states one, else as soon as the streamed
    body passes the limit."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = -1
                if length < 0 or length > self.limit:
                    await self._refuse(send, length)
                    return
        seen = 0
        refused = False

        async def limited() -> Any:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:  # answer now; the app sees a client that left
                    refused = True
                    await self._refuse(send, seen)
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Any) -> None:
            if not refused:
                await send(message)

        await self.app(scope, limited, guarded)

    async def _refuse(self, send: Any, length: int) -> None:
        if length < 0:
            response = _problem(400, "the Content-Length header is not a number")
        else:
            response = _problem(
                413, f"the request body is too large (over {self.limit} bytes; at most that)"
            )
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Any:
    return {"type": "http.disconnect"}


def _one_error_shape(app: FastAPI) -> None:
    """Make the OpenAPI document say what a 422 really is: ``{"detail": "..."}``
    (``_handlers`` answers validation errors as one string naming the fields)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            from fastapi.openapi.utils import get_openapi

            doc = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                routes=app.routes,
            )
            schemas = doc.get("components", {}).get("schemas", {})
            if "HTTPValidationError" in schemas:
                schemas["HTTPValidationError"] = {
                    "title": "HTTPValidationError",
                    "type": "object",
                    "properties": {"detail": {"title": "Detail", "type": "string"}},
                    "required": ["detail"],
                }
                schemas.pop("ValidationError", None)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


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
    app = create_app(settings)
    app.state.freeze_after_start = True
    uvicorn.run(app, host=host, port=port, **config)
