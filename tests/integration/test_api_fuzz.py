"""Schemathesis against the whole API (S8), and what the public routes show (S6).

The real API (uvicorn on a free port, in this process) over a SQLite ticket
store, the shipped config and a real influxd holding the last two hours of the
simulated demo campus. Every operation of its OpenAPI document is tried in the
examples, coverage and fuzzing phases, with valid and invalid data (mode
``all``), once with an admin's token and once with none (the fuzzer then makes
up its own Authorization headers); a stateful run chains calls along the
links schemathesis infers; and the HTML pages, which the API's document leaves
out, are fuzzed from a document made of their own routes.

Checks on every API answer:

* ``not_a_server_error``: no 5xx, whatever the input;
* ``response_schema_conformance``: a JSON body matches the documented schema
  of its status code;
* ``content_type_conformance``: the Content-Type is the documented one;
* ``response_headers_conformance``: documented headers are there and valid.

The pages answer HTML, so only ``not_a_server_error`` applies to them.

Left out: ``/api/stream`` (Server-Sent Events, an answer that never ends);
``status_code_conformance`` (400 for a body that is not JSON at all is not in
the document); ``negative_data_rejection``/``positive_data_acceptance``, which
cannot know what the schema cannot say (a known building, a state that allows
the move): the routers' own tests check those. The examples phase finds no
examples in the document, so it sends nothing.

Bounded for ``make test``: 15 fuzzed cases per operation (coverage adds its
boundary cases, about 2,600 in all), 25 stateful runs of up to 10 steps,
deterministic generation (the same cases every run), no Hypothesis deadline:
about 25 s.
"""

from __future__ import annotations

import copy
import re
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)
from sqlalchemy import select

from api.accounts import add_user, create_token
from api.app import create_app
from api.routers import ROUTERS
from campus.calendar import load_calendar
from campus.influx import InfluxClient
from campus.lineprotocol import line, series
from campus.registry import load_campus
from campus.settings import Settings
from campus.stack import Influxd, Mosquitto, free_port
from simulators.engine import CampusSimulator
from tests.conftest import CONFIG
from tickets.cli import open_tickets
from tickets.models import Contractor, Role, Source, State, Technician, Ticket, User
from tickets.service import Alert, Tickets

pytestmark = pytest.mark.integration

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
]

MAX_EXAMPLES = 15  # per operation in the fuzzing phase (examples and coverage add theirs)
FUZZ = schemathesis.Config.from_dict(
    {
        "generation": {"mode": "all", "max-examples": MAX_EXAMPLES, "deterministic": True},
        "phases": {
            "examples": {"enabled": True},
            "coverage": {"enabled": True},
            "fuzzing": {"enabled": True},
            "stateful": {"enabled": True, "max-steps": 10},
        },
        "suppress-health-check": ["too_slow", "filter_too_much", "data_too_large"],
        "request-timeout": 30,
    }
)
HYPOTHESIS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
    max_examples=MAX_EXAMPLES,
)
EXCLUDED_PATHS = ["/api/stream"]  # an event stream: the answer never ends
HISTORY = timedelta(hours=2)  # simulated readings in influxd, up to now


@dataclass
class Served:
    """The running API and what was put in it."""

    url: str
    token: str
    tickets: Tickets
    settings: Settings
    private: set[str] = field(default_factory=set)  # values no public answer may carry

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _fill_influx(settings: Settings) -> int:
    """The last two hours of the simulated demo campus, tagged as the ingester tags."""
    campus = load_campus(settings.campus_file)
    sim = CampusSimulator(campus, load_calendar(settings.calendar_file), seed=7)
    end = int(time.time()) // 60 * 60
    heads: dict[str, str] = {}
    lines: list[str] = []
    with InfluxClient.from_settings(settings) as client:
        client.create_database()
        start = sim.first_tick(end - HISTORY.total_seconds())
        for t in range(start, end, sim.step):
            for device, metrics in sim.readings_at(t):
                head = heads.get(device.id)
                if head is None:
                    head = heads[device.id] = series(device.kind, device.influx_tags())
                lines.append(line(head, metrics, t * 1000))
            if len(lines) >= 20_000:
                client.write(lines)
                lines.clear()
        if lines:
            client.write(lines)
    return len(heads)


def _fill_tickets(tickets: Tickets) -> set[str]:
    """Tickets in every state, assigned, commented, one marked internal; what
    identifies a person or a device in them."""
    now = datetime.now(UTC)
    made: list[int] = []
    for i, (building, device, trade) in enumerate(
        [
            ("dorm-3", "wm-dorm-3", "plumbing"),
            ("teach-1", "pm-teach-1", "electrical"),
            ("lab-2", None, "hvac"),
            ("library", None, "general"),
            ("dorm-5", None, "plumbing"),
        ]
    ):
        raised = tickets.raise_alert(
            Alert(
                dedup_key=f"fuzz:{i}",
                source=Source.rule if device else Source.manual,
                severity=f"P{i % 4 + 1}",
                building=building,
                trade=trade,
                title=f"{trade} fault in {building}",
                description="seen by the fuzz fixture",
                device=device,
                rule="fuzz-rule" if device else None,
                at=now - timedelta(minutes=30 - i),
            ),
            actor="rules",
        )
        made.append(raised.ticket_id)
    with tickets.store.session() as s:
        techs = list(s.scalars(select(Technician)))
        contractors = list(s.scalars(select(Contractor)))
    plumber = next(t.id for t in techs if t.team_id == "plumb-living")
    tickets.acknowledge(made[0], plumber)
    tickets.assign(made[0], plumber, technician=plumber)
    tickets.start(made[0], plumber)
    tickets.comment(made[0], plumber, f"PRIVATE-NOTE {plumber} on site")
    tickets.acknowledge(made[1], "office")
    tickets.resolve(made[1], "office", "breaker reset")
    tickets.close(made[1], "office", force=True)
    if contractors:
        tickets.acknowledge(made[2], "office")
        tickets.assign(made[2], "office", contractor=contractors[0].id)
    with tickets.store.session() as s:
        internal = s.get(Ticket, made[3])
        assert internal is not None
        internal.internal = True
        internal.title = "INTERNAL-ONLY staff matter"
    private = {"PRIVATE-NOTE", "INTERNAL-ONLY", "wm-dorm-3", "pm-teach-1", "fuzz-rule"}
    for t in techs:
        private |= {t.id, t.name} | ({t.email} if t.email else set())
    for c in contractors:
        private |= {c.id, c.name} | ({c.email} if c.email else set())
    return private


@pytest.fixture(scope="module")
def served(
    influxd: Influxd, broker: Mosquitto, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """The API on a free port, over a filled ticket store and influxd."""
    port = free_port()
    settings = Settings(
        mqtt_url=broker.url,
        influx_url=influxd.url,
        influx_db=f"fuzz{uuid.uuid4().hex[:8]}",
        var_dir=tmp_path_factory.mktemp("api-fuzz"),
        config_dir=CONFIG,
        api_port=port,
        public_url=f"http://127.0.0.1:{port}",
        feedback_rate_per_hour=10_000,  # the fuzzer reaches the handler, not the limit
        log_level="WARNING",
    )
    _fill_influx(settings)
    tickets = open_tickets(settings)
    private = _fill_tickets(tickets)
    add_user(tickets.store, "fuzz-admin", "Fuzz Admin", Role.admin)
    token = create_token(tickets.store, "fuzz-admin")
    with tickets.store.session() as s:
        private |= {u.id for u in s.scalars(select(User))}
    app = create_app(settings, tickets)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, name="api-under-fuzz", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.05)
    try:
        yield Served(f"http://127.0.0.1:{port}", token, tickets, settings, private)
    finally:
        server.should_exit = True
        thread.join(30)
        tickets.store.close()


# ------------------------------------------------------------------ over-exposure (S6)


def _public_gets(spec: dict[str, Any]) -> list[str]:
    """GET paths of the operations that need no token."""
    paths = []
    for path, ops in spec["paths"].items():
        op = ops.get("get")
        if op is None or op.get("security") or path in EXCLUDED_PATHS:
            continue
        paths.append(path)
    return paths


def test_public_answers_carry_no_personal_data_or_device_ids(served: Served) -> None:
    """Every public GET (and the public pages) over a store holding assigned,
    commented and internal tickets: no technician, contractor or account, no
    device id or rule, nothing marked internal, in any language."""
    with httpx.Client(base_url=served.url, timeout=30) as http:
        spec = http.get("/openapi.json").json()
        checked = []
        for path in _public_gets(spec):
            if "{" in path:
                continue  # a public route with a parameter is fetched by its own tests
            for lang in ("zh", "en"):
                r = http.get(path, params={"lang": lang})
                assert r.status_code < 500, (path, r.status_code, r.text[:300])
                found = sorted(v for v in served.private if v and v in r.text)
                assert not found, (path, lang, found)
                checked.append(path)
        for page in ("/", "/feedback"):
            for lang in ("zh", "en"):
                r = http.get(page, params={"lang": lang})
                assert r.status_code == 200, (page, r.status_code)
                found = sorted(v for v in served.private if v and v in r.text)
                assert not found, (page, lang, found)
        # the board does describe the open tickets, so there was something to leak
        board = http.get("/api/notices", params={"lang": "en"}).json()
        assert {"dorm-3", "dorm-5"} <= {n["building"] for n in board["notices"]}, board
    assert "/api/notices" in checked


def test_the_seeded_data_is_reachable_with_a_token(served: Served) -> None:
    """The private values are really in the store and shown to staff, so the
    test above cannot pass for want of data."""
    with httpx.Client(base_url=served.url, timeout=30, headers=served.auth) as http:
        r = http.get("/api/tickets", params={"state": [s.value for s in State]})
        assert r.status_code == 200, r.text
        assert "wm-dorm-3" in r.text and "INTERNAL-ONLY" in r.text
        ids = [t["id"] for t in r.json()["items"] if t["device"] == "wm-dorm-3"]
        detail = http.get(f"/api/tickets/{ids[0]}").json()
        assert any(re.match(r"PRIVATE-NOTE", c["text"]) for c in detail["comments"])


# ------------------------------------------------------------------ schemathesis (S8)


def _spec() -> dict[str, Any]:
    """The OpenAPI document of the app (the one ``served`` serves), made at import
    so that each operation is a test of its own."""
    with tempfile.TemporaryDirectory() as var:
        return create_app(Settings(config_dir=CONFIG, var_dir=Path(var))).openapi()


SPEC = _spec()
PHASES: Counter[str] = Counter()  # cases sent, by phase
schema = schemathesis.openapi.from_dict(SPEC, config=FUZZ).exclude(path=EXCLUDED_PATHS)


@schema.parametrize()
@HYPOTHESIS
def test_no_server_error_with_an_admin_token(case: Any, served: Served) -> None:
    PHASES[case.meta.phase.name] += 1
    case.call_and_validate(base_url=served.url, headers=served.auth, checks=CHECKS)


@schema.parametrize()
@HYPOTHESIS
def test_no_server_error_without_a_token(case: Any, served: Served) -> None:
    PHASES[case.meta.phase.name] += 1
    case.call_and_validate(base_url=served.url, checks=CHECKS)


def _pages_spec() -> dict[str, Any]:
    """An OpenAPI document of the HTML pages (left out of the API's own): their
    parameters and forms, for the fuzzer."""
    routes = []
    for module in ROUTERS:
        for route in module.router.routes:
            if isinstance(route, APIRoute) and not route.include_in_schema:
                shown = copy.copy(route)  # the app's own route stays out of /openapi.json
                shown.include_in_schema = True
                routes.append(shown)
    return get_openapi(title="pages", version="1", routes=routes)


pages = schemathesis.openapi.from_dict(_pages_spec(), config=FUZZ)


@pages.parametrize()
@HYPOTHESIS
def test_no_server_error_from_the_pages(case: Any, served: Served) -> None:
    """The public board, the feedback form and the technician's page, with
    whatever parameters and form fields (HTML answers: only "no 5xx" applies)."""
    PHASES[case.meta.phase.name] += 1
    case.call_and_validate(base_url=served.url, checks=[not_a_server_error])


def test_the_served_spec_is_the_one_fuzzed(served: Served) -> None:
    assert httpx.get(f"{served.url}/openapi.json").json() == SPEC


def test_stateful_runs_have_no_server_error(served: Served) -> None:
    """Chains of calls, with an admin's token, along the links schemathesis
    infers (a ticket's id from a list or a new ticket into its transitions, a
    building's id into its devices)."""
    machine = schema.as_state_machine()

    class Admin(machine):  # type: ignore[misc,valid-type]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"base_url": served.url, "headers": served.auth}

        def validate_response(self, response: Any, case: Any, **kwargs: Any) -> None:
            PHASES[case.meta.phase.name] += 1
            case.validate_response(response, checks=CHECKS)

    Admin.run(
        settings=settings(
            max_examples=25,
            stateful_step_count=10,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )


def test_every_phase_ran(request: pytest.FixtureRequest) -> None:
    """The runs above really sent coverage, fuzzing and stateful cases (the
    examples phase has only the few examples the models declare)."""
    ran = {item.name.split("[")[0] for item in request.session.items}
    needed = {"test_no_server_error_with_an_admin_token", "test_stateful_runs_have_no_server_error"}
    if not needed <= ran:
        pytest.skip("counts the cases of the fuzz tests above: run them too")
    print(f"cases sent by phase: {dict(PHASES)}")
    assert PHASES["coverage"] > 0 and PHASES["fuzzing"] > 0 and PHASES["stateful"] > 0, PHASES
