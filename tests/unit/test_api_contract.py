"""Mass assignment and over-exposure (S6), read off the app's own OpenAPI
document and checked against real answers over a real SQLite store.

* Every request body is a closed object: ``additionalProperties: false`` on
  it and on every object inside it (JSON bodies; multipart forms are checked
  by what they store, since FastAPI reads only the declared form fields).
* Each route with a JSON body, sent a schema-valid body plus one privileged
  field it does not declare (``id``, ``state``, ``role``, ``technician_id``,
  ``created_at``, ``internal``, ``rating``...), answers 422 naming that field
  and nothing else, and the store is unchanged afterwards (every row of every
  table compared).
* Public routes (no security requirement) declare no response field that
  could carry personal data or a device id, and their real answers over a
  store with assigned, commented, internal tickets and a feedback report with
  a contact carry none of those values.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest
from fastapi.testclient import TestClient
from hypothesis import find, settings
from hypothesis import strategies as st
from sqlalchemy import select

from api.accounts import add_user, create_token
from api.app import create_app
from campus.settings import Settings
from tests.conftest import CONFIG
from tickets.cli import open_tickets
from tickets.models import Base, Contractor, Feedback, Role, Source, Technician, Ticket, User
from tickets.service import Alert, Tickets, utcnow

# Fields a caller must never set by adding them to a body.
PRIVILEGED = [
    "id",
    "state",
    "status",
    "role",
    "technician_id",
    "contractor_id",
    "assignee",
    "created_at",
    "internal",
    "rating",
    "ticket_id",
    "source",
    "escalation_level",
    "user_id",
    "is_admin",
]
# Response fields that could carry personal data or identify a device, anywhere
# in a public answer: exact names, and parts of names.
PERSONAL_NAMES = {"name", "user", "actor", "author", "rule", "dedup_key", "alert_key", "comments"}
PERSONAL_PARTS = (
    "technician",
    "contractor",
    "assignee",
    "email",
    "phone",
    "contact",
    "device",
    "user_id",
    "photo",
    "address",
    "agent",
    "events",
)
PLUMBER = "tech-liu-dm"  # plumb-living: plumbing in the dormitories
BODY_METHODS = ("post", "put", "patch")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Tickets, Settings, str]]:
    """A migrated store with the on-call people, tickets in several states, an
    admin and their token."""
    var = tmp_path_factory.mktemp("contract")
    settings = Settings(var_dir=var, config_dir=CONFIG, feedback_rate_per_hour=10_000)
    tickets = open_tickets(settings)
    add_user(tickets.store, "contract-admin", "Contract Admin", Role.admin)
    token = create_token(tickets.store, "contract-admin")
    now = utcnow()
    for i, (building, device, trade) in enumerate(
        [("dorm-3", "wm-dorm-3", "plumbing"), ("teach-1", None, "electrical")]
    ):
        tickets.raise_alert(
            Alert(
                dedup_key=f"contract:{i}",
                source=Source.rule if device else Source.manual,
                severity="P2",
                building=building,
                trade=trade,
                title=f"{trade} fault in {building}",
                device=device,
                rule="contract-rule" if device else None,
                at=now,
            )
        )
    tickets.acknowledge(1, PLUMBER)
    tickets.assign(1, PLUMBER, technician=PLUMBER)
    tickets.start(1, PLUMBER)
    tickets.comment(1, PLUMBER, "PRIVATE-NOTE on site")
    with tickets.store.session() as s:
        t = s.get(Ticket, 2)
        assert t is not None
        t.internal = True
        t.title = "INTERNAL-ONLY staff matter"
    yield tickets, settings, token
    tickets.store.close()


@pytest.fixture(scope="module")
def client(store: tuple[Tickets, Settings, str]) -> Iterator[TestClient]:
    tickets, settings, token = store
    with TestClient(
        create_app(settings, tickets), headers={"Authorization": f"Bearer {token}"}
    ) as c:
        yield c


@pytest.fixture(scope="module")
def spec(client: TestClient) -> dict[str, Any]:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    return dict(r.json())


# ---------------------------------------------------------------- schema walking


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/components/schemas/"), ref
        schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


def _objects(
    spec: dict[str, Any], schema: dict[str, Any], where: str, seen: set[str] | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every object schema inside ``schema`` (through refs, unions, arrays)."""
    seen = set() if seen is None else seen
    ref = schema.get("$ref")
    if ref is not None:
        if ref in seen:
            return
        seen.add(ref)
        where = ref.rsplit("/", 1)[1]
    schema = _resolve(spec, schema)
    if schema.get("type") == "object" or "properties" in schema:
        yield where, schema
        for name, sub in schema.get("properties", {}).items():
            yield from _objects(spec, sub, f"{where}.{name}", seen)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            yield from _objects(spec, extra, f"{where}.*", seen)
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, []):
            yield from _objects(spec, sub, where, seen)
    if "items" in schema:
        yield from _objects(spec, schema["items"], f"{where}[]", seen)


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method in ("get", "post", "put", "patch", "delete"):
                yield method, path, op


def _json_bodies(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    out = []
    for method, path, op in _operations(spec):
        content = op.get("requestBody", {}).get("content", {})
        if method in BODY_METHODS and "application/json" in content:
            out.append((method, path, op, content["application/json"]["schema"]))
    return out


def test_every_json_request_body_refuses_unknown_fields(spec: dict[str, Any]) -> None:
    bodies = _json_bodies(spec)
    assert len(bodies) >= 5, "the API has fewer JSON bodies than the tickets routes alone"
    open_objects = []
    for method, path, _, schema in bodies:
        for where, obj in _objects(spec, schema, "body"):
            if obj.get("additionalProperties") is not False:
                open_objects.append(f"{method.upper()} {path}: {where}")
    assert not open_objects, "request bodies that accept unknown fields:\n" + "\n".join(
        open_objects
    )


# -------------------------------------------------------- privileged fields refused


CANDIDATES = ["teach-1", "dorm-3", "1", "a", "x1", "en", "zh", "101", "3-402", "P3"]


def _value(spec: dict[str, Any], schema: dict[str, Any], fills: dict[str, Any]) -> Any:
    """A value valid for ``schema`` (the first that validates), or None."""
    schema = _resolve(spec, schema)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [s for s in schema[key] if _resolve(spec, s).get("type") != "null"]
            return _value(spec, options[0], fills) if options else None
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    kind = schema.get("type")
    if kind == "object":
        return {
            name: fills.get(name, _value(spec, sub, fills))
            for name, sub in schema.get("properties", {}).items()
            if name in schema.get("required", [])
        }
    if kind == "array":
        return []
    if kind == "boolean":
        return False
    if kind in ("integer", "number"):
        return max(1, schema.get("minimum", 1))
    if kind == "string":
        check = jsonschema_rs.validator_for(schema)
        size = max(1, schema.get("minLength", 1))
        for candidate in [*CANDIDATES, "x" * size]:
            if check.is_valid(candidate):
                return candidate
        if "pattern" in schema:  # the smallest string the pattern takes (deterministic)
            return find(
                st.from_regex(schema["pattern"], fullmatch=True),
                check.is_valid,
                settings=settings(database=None, max_examples=2000),
            )
    return None


def _path(spec: dict[str, Any], path: str, op: dict[str, Any], fills: dict[str, Any]) -> str:
    for p in op.get("parameters", []):
        if p["in"] == "path":
            value = fills.get(p["name"], _value(spec, p["schema"], fills))
            path = path.replace("{" + p["name"] + "}", str(value))
    return path


def _snapshot(tickets: Tickets) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the store."""
    with tickets.store.engine.connect() as c:
        return {
            t.name: sorted(map(tuple, c.execute(select(t)).all()), key=repr)
            for t in Base.metadata.sorted_tables
        }


def _errors(answer: dict[str, Any]) -> list[tuple[str, str]]:
    """(field, what) of each problem in a 422 answer: ``"field: what; ..."``
    (the API's one error shape), or pydantic's list of errors."""
    detail = answer.get("detail")
    if isinstance(detail, list):
        return [
            (
                ".".join(str(x) for x in e.get("loc", []) if x not in ("body", "query", "path")),
                str(e.get("msg")),
            )
            for e in detail
        ]
    out = []
    for part in str(detail).split("; "):
        field, _, what = part.partition(": ")
        out.append((field, what))
    return out


def test_privileged_fields_in_a_body_are_refused_and_change_nothing(
    client: TestClient, spec: dict[str, Any], store: tuple[Tickets, Settings, str]
) -> None:
    tickets = store[0]
    fills = {"ticket_id": 1, "technician": PLUMBER, "name": "burst-pipe", "building": "dorm-3"}
    before = _snapshot(tickets)
    tried = []
    for method, path, op, schema in _json_bodies(spec):
        body = _value(spec, schema, fills)
        assert isinstance(body, dict), (method, path, body)
        url = _path(spec, path, op, fills)
        declared = set(_resolve(spec, schema).get("properties", {}))
        if not declared:
            declared = {
                n for _, obj in _objects(spec, schema, "body") for n in obj.get("properties", {})
            }
        for field in PRIVILEGED:
            if field in declared:
                continue
            r = client.request(method.upper(), url, json={**body, field: "1"})
            assert r.status_code == 422, (method, path, field, r.status_code, r.text)
            errors = _errors(r.json())
            assert [f for f, _ in errors] == [field], (method, path, field, errors)
            assert "extra" in errors[0][1].lower() or "not permitted" in errors[0][1], errors
            tried.append((method, path, field))
    assert len({(m, p) for m, p, _ in tried}) == len(_json_bodies(spec))
    assert _snapshot(tickets) == before


def test_a_feedback_form_cannot_set_privileged_fields(
    client: TestClient, store: tuple[Tickets, Settings, str], spec: dict[str, Any]
) -> None:
    """The multipart form reads only its declared fields: a status, ticket,
    rating or id sent along is not stored."""
    if "/api/feedback/upload" not in spec["paths"]:
        pytest.skip("no feedback form route")
    tickets = store[0]
    form = {
        "category": _first_category(spec),
        "building": "dorm-5",
        "text": "radiator cold in the common room",
        "id": "999",
        "status": "closed",
        "ticket_id": "1",
        "rating": "5",
        "created_at": "2001-01-01T00:00:00Z",
        "internal": "true",
    }
    r = client.post("/api/feedback/upload", data=form, headers={"Authorization": ""})
    if r.status_code == 422:  # refused, naming an extra field: as good
        assert any(f in r.text for f in ("id", "status", "ticket_id", "rating")), r.text
        return
    assert r.status_code == 201, r.text
    with tickets.store.session() as s:
        row = s.scalars(select(Feedback).order_by(Feedback.id.desc())).first()
        assert row is not None
        assert row.id != 999 and row.rating is None and row.created_at.year > 2001
        assert row.text == form["text"]
        assert row.status != "closed" and row.ticket_id != 1


def _first_category(spec: dict[str, Any]) -> str:
    schema = spec["components"]["schemas"].get("FeedbackIn", {})
    enum = schema.get("properties", {}).get("category", {}).get("enum")
    return str(enum[0]) if enum else "other"


# --------------------------------------------------------------------- over-exposure


def _public(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m, p, op) for m, p, op in _operations(spec) if not op.get("security")]


def _personal(name: str) -> bool:
    n = name.lower()
    return n in PERSONAL_NAMES or any(part in n for part in PERSONAL_PARTS)


def test_public_response_models_have_no_personal_fields(spec: dict[str, Any]) -> None:
    public = _public(spec)
    assert any(p == "/api/notices" for _, p, _ in public) or len(public) >= 2
    found = []
    for method, path, op in public:
        for status, answer in op.get("responses", {}).items():
            if not status.startswith("2"):
                continue
            for media in answer.get("content", {}).values():
                for where, obj in _objects(spec, media.get("schema", {}), "answer"):
                    found += [
                        f"{method.upper()} {path} {status}: {where}.{name}"
                        for name in obj.get("properties", {})
                        if _personal(name)
                    ]
    assert not found, "public answers with personal or device fields:\n" + "\n".join(found)


def test_secured_routes_really_need_a_token(client: TestClient, spec: dict[str, Any]) -> None:
    """What the spec calls secured answers 401 without a token (so the public
    list above is the whole public surface)."""
    fills = {"ticket_id": 1, "name": "burst-pipe"}
    for method, path, op in _operations(spec):
        if not op.get("security") or path == "/api/stream":
            continue
        r = client.request(
            method.upper(), _path(spec, path, op, fills), headers={"Authorization": ""}
        )
        assert r.status_code == 401, (method, path, r.status_code, r.text[:200])


def test_public_answers_carry_no_personal_values(
    client: TestClient, store: tuple[Tickets, Settings, str], spec: dict[str, Any]
) -> None:
    """Real answers of the public routes over a store with an assigned,
    commented ticket on a device, an internal ticket and a report with a
    contact: no person, device, rule, comment, internal title or contact."""
    tickets = store[0]
    contact = "student-7@example.edu 13800138000"
    private = {"PRIVATE-NOTE", "INTERNAL-ONLY", "wm-dorm-3", "contract-rule", contact}
    with tickets.store.session() as s:
        for t in s.scalars(select(Technician)):
            private |= {t.id, t.name} | ({t.email} if t.email else set())
        for c in s.scalars(select(Contractor)):
            private |= {c.id, c.name}
        private |= {u.id for u in s.scalars(select(User))}
    anonymous = {"Authorization": ""}
    answers: dict[str, str] = {}
    if "/api/feedback" in spec["paths"]:
        r = client.post(
            "/api/feedback",
            json={
                "category": _first_category(spec),
                "building": "dorm-3",
                "text": "no hot water on floor 4",
                "contact": contact,
            },
            headers=anonymous,
        )
        assert r.status_code == 201, r.text
        answers["POST /api/feedback"] = r.text
        receipt = r.json()["url"]
        answers[f"GET {receipt}"] = client.get(receipt, headers=anonymous).text
    for method, path, _ in _public(spec):
        if method != "get" or "{" in path or path == "/readyz":
            continue  # readyz asks the real servers (tested with them)
        for lang in ("zh", "en"):
            r = client.get(path, params={"lang": lang}, headers=anonymous)
            assert r.status_code == 200, (path, r.status_code, r.text[:200])
            answers[f"GET {path}?lang={lang}"] = r.text
    assert any("/api/notices" in k for k in answers) or "/api/notices" not in spec["paths"]
    leaks = {
        where: sorted(v for v in private if v and v in text) for where, text in answers.items()
    }
    assert not any(leaks.values()), {k: v for k, v in leaks.items() if v}
    # and the notices do describe the open ticket, so the check above had data
    if "/api/notices" in spec["paths"]:
        board = client.get("/api/notices", params={"lang": "en"}, headers=anonymous).json()
        assert any(n["building"] == "dorm-3" for n in board["notices"]), board
        assert not any(re.search("INTERNAL", n["text"]) for n in board["notices"])
