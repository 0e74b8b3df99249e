"""The tickets API over a real SQLite store and the shipped on-call file:
tokens, roles, every technician against every ticket and action (S5),
transitions and the errors each bad request gets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.accounts import create_token, revoke_tokens
from api.app import create_app
from campus.settings import Settings
from tests.accounts import StoreTemplate, store_with_accounts
from tests.conftest import CONFIG
from tickets.models import Role
from tickets.service import Tickets

# technician -> (team trade, a building their team covers, one it does not)
PLUMBER = "tech-wang-jg"  # plumb-academic: plumbing in the teaching area
DORM_PLUMBER = "tech-liu-dm"  # plumb-living: plumbing in the dormitories
ACTIONS = ["acknowledge", "assign", "start", "resolve", "close", "reopen", "comments"]


class Api:
    """A client with one token per account."""

    def __init__(self, client: TestClient, tokens: dict[str, str]) -> None:
        self.client = client
        self.tokens = tokens

    def __call__(self, who: str | None, method: str, path: str, **kw: object):  # type: ignore[no-untyped-def]
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return self.client.request(method, path, headers=headers, **kw)  # type: ignore[arg-type]


USERS = {
    "office": (Role.viewer, None),
    "eng": (Role.engineer, None),
    "wang": (Role.technician, PLUMBER),
    "liu": (Role.technician, DORM_PLUMBER),
    "zhou": (Role.technician, "tech-zhou-gp"),  # an electrician of the teaching area
    "root": (Role.admin, None),
}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> StoreTemplate:
    return store_with_accounts(tmp_path_factory.mktemp("template"), USERS)


@pytest.fixture
def tickets(template: StoreTemplate, tmp_path: Path) -> Tickets:
    return template.copy(tmp_path)


@pytest.fixture
def api(tickets: Tickets, template: StoreTemplate, tmp_path: Path) -> Iterator[Api]:
    settings = Settings(var_dir=tmp_path, config_dir=CONFIG)
    with TestClient(create_app(settings, tickets)) as client:
        yield Api(client, template.tokens)


def raise_ticket(api: Api, building: str, trade: str, key: str | None = None) -> int:
    body = {"building": building, "trade": trade, "title": f"{trade} fault in {building}"}
    if key:
        body["dedup_key"] = key
    r = api("eng", "POST", "/api/tickets", json=body)
    assert r.status_code in (200, 201), r.text
    return int(r.json()["id"])


def test_a_token_is_needed_and_a_bad_one_is_refused(api: Api, tickets: Tickets) -> None:
    assert api(None, "GET", "/api/tickets").status_code == 401
    r = api.client.get("/api/tickets", headers={"Authorization": "Bearer cmp_forged"})
    assert r.status_code == 401 and "unknown, revoked or expired" in r.json()["detail"]
    assert api("office", "GET", "/api/tickets").status_code == 200
    revoke_tokens(tickets.store, "office")
    assert api("office", "GET", "/api/tickets").status_code == 401
    short = create_token(tickets.store, "eng", valid_for=timedelta(seconds=-1))
    r = api.client.get("/api/tickets", headers={"Authorization": f"Bearer {short}"})
    assert r.status_code == 401


def test_a_single_sign_on_proxy_names_the_account_only_from_its_own_address(
    tickets: Tickets, tmp_path: Path
) -> None:
    settings = Settings(var_dir=tmp_path, config_dir=CONFIG, api_sso_header="X-Remote-User")
    app = create_app(settings, tickets)

    def ask(peer: str, user: str) -> int:
        with TestClient(app, client=(peer, 40000)) as client:
            return client.get("/api/tickets", headers={"X-Remote-User": user}).status_code

    assert ask("127.0.0.1", "office") == 200  # the proxy on this machine
    assert ask("10.1.2.3", "office") == 401  # the header from anyone else counts for nothing
    assert ask("127.0.0.1", "nobody") == 401  # signing on does not make an account
    assert ask("127.0.0.1", "office\nx") == 401


def test_a_ticket_is_raised_once_per_key_and_worked_to_closed(api: Api) -> None:
    body = {"building": "teach-1", "trade": "plumbing", "title": "Leak", "dedup_key": "call-17"}
    first = api("wang", "POST", "/api/tickets", json=body)
    assert first.status_code == 201 and first.json()["created"] is True
    again = api("wang", "POST", "/api/tickets", json=body)  # a retry after a lost answer
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert again.json()["ticket"]["count"] == 2
    tid = first.json()["id"]
    for action, payload in [
        ("acknowledge", None),
        ("assign", {"technician": PLUMBER}),
        ("start", None),
        ("resolve", {"note": "washer replaced"}),
        ("close", None),
    ]:
        r = api("wang", "POST", f"/api/tickets/{tid}/{action}", json=payload)
        assert r.status_code == 200, (action, r.text)
    assert (
        api("wang", "POST", f"/api/tickets/{tid}/comments", json={"text": "ok"}).status_code == 201
    )
    detail = api("office", "GET", f"/api/tickets/{tid}").json()
    assert detail["state"] == "closed" and detail["assignee"] == PLUMBER
    moves = [(e["action"], e["to_state"]) for e in detail["events"]]
    assert moves[0] == ("open", "open") and moves[-1] == ("close", "closed")
    assert all(e["actor"] == PLUMBER for e in detail["events"])
    assert detail["comments"][0]["text"] == "ok"
    assert api("office", "GET", "/api/tickets").json()["total"] == 0  # closed: not by default
    assert api("office", "GET", "/api/tickets?state=closed").json()["total"] == 1


def test_bad_requests_name_what_is_wrong(api: Api) -> None:
    good = {"building": "teach-1", "trade": "plumbing", "title": "Leak"}
    r = api("eng", "POST", "/api/tickets", json={**good, "building": "nowhere"})
    assert r.status_code == 422 and "building" in r.text
    r = api("eng", "POST", "/api/tickets", json={**good, "state": "closed"})  # mass assignment
    assert r.status_code == 422 and "state" in r.text
    r = api("eng", "POST", "/api/tickets", json={**good, "trade": "carpentry"})
    assert r.status_code == 422 and "trade" in r.text
    r = api("eng", "POST", "/api/tickets", json={**good, "building": "a\nb"})
    assert r.status_code == 422 and "building" in r.text
    assert api("eng", "GET", "/api/tickets/0").status_code == 422
    assert api("eng", "GET", f"/api/tickets/{2**40}").status_code == 422
    assert api("eng", "GET", "/api/tickets/424242").status_code == 404
    assert api("eng", "GET", "/api/tickets?limit=100000").status_code == 422
    assert api("eng", "GET", "/api/tickets?state=lost").status_code == 422
    tid = raise_ticket(api, "teach-1", "plumbing")
    r = api("eng", "POST", f"/api/tickets/{tid}/close")
    assert r.status_code == 409 and "cannot close: it is open" in r.json()["detail"]
    r = api("eng", "POST", f"/api/tickets/{tid}/assign", json={"technician": "nobody"})
    assert r.status_code == 422 and "unknown technician 'nobody'" in r.json()["detail"]
    r = api("eng", "POST", f"/api/tickets/{tid}/assign", json={})
    assert r.status_code == 422 and "exactly one" in r.text
    assert api("office", "POST", "/api/tickets", json=good).status_code == 403  # viewers read
    assert api("office", "POST", f"/api/tickets/{tid}/acknowledge").status_code == 403


def test_every_technician_against_every_ticket_and_action(api: Api) -> None:
    """S5: a technician sees and works the tickets of their team (trade and
    buildings) or given to them, and nothing else; a ticket that is not theirs
    answers exactly as a missing one."""
    tickets = {
        ("teach-1", "plumbing"): {"wang"},
        ("dorm-1", "plumbing"): {"liu"},
        ("teach-1", "electrical"): {"zhou"},
        ("dorm-1", "hvac"): set(),
    }
    ids = {raise_ticket(api, b, t): who for (b, t), who in tickets.items()}
    bodies = {
        "assign": lambda who: {"technician": api_tech[who]},
        "resolve": lambda who: {"note": "done"},
        "reopen": lambda who: {"reason": "back"},
        "comments": lambda who: {"text": "seen"},
    }
    api_tech = {"wang": PLUMBER, "liu": DORM_PLUMBER, "zhou": "tech-zhou-gp"}
    for who in api_tech:
        listed = {t["id"] for t in api(who, "GET", "/api/tickets").json()["items"]}
        assert listed == {tid for tid, owners in ids.items() if who in owners}
        for tid, owners in ids.items():
            read = api(who, "GET", f"/api/tickets/{tid}")
            assert read.status_code == (200 if who in owners else 404)
            for action in ACTIONS:
                body = bodies.get(action, lambda who: None)(who)
                r = api(who, "POST", f"/api/tickets/{tid}/{action}", json=body)
                if who in owners:
                    assert r.status_code in (200, 201, 409), (who, tid, action, r.text)
                else:
                    assert r.status_code == 404, (who, tid, action, r.text)
                    assert r.json() == {"detail": f"no ticket {tid}"}
    # given to someone outside the team, the ticket is theirs too
    hvac = next(tid for tid, owners in ids.items() if not owners)
    assert api("zhou", "GET", f"/api/tickets/{hvac}").status_code == 404
    assert api("eng", "POST", f"/api/tickets/{hvac}/acknowledge").status_code == 200
    r = api("eng", "POST", f"/api/tickets/{hvac}/assign", json={"technician": "tech-zhou-gp"})
    assert r.status_code == 200
    assert api("zhou", "GET", f"/api/tickets/{hvac}").status_code == 200
    # a technician takes tickets for themselves only
    r = api("zhou", "POST", f"/api/tickets/{hvac}/assign", json={"technician": PLUMBER})
    assert r.status_code == 403


def test_every_role_against_every_ticket_route(api: Api) -> None:
    """Who may and who may not, on each ticket route: without a token 401; a
    viewer reads and changes nothing (403); a technician outside the ticket's
    team gets the 404 of a missing ticket; the team's technician, engineers and
    admins are let through (the ticket's state may still refuse: 409)."""
    routes: list[tuple[str, str, dict[str, object] | None]] = [
        ("GET", "", None),
        ("GET", "/evidence.png", None),
        ("POST", "/acknowledge", None),
        ("POST", "/assign", {"technician": PLUMBER}),
        ("POST", "/start", None),
        ("POST", "/resolve", {"note": "done"}),
        ("POST", "/close", {"force": True}),
        ("POST", "/reopen", {"reason": "back"}),
        ("POST", "/comments", {"text": "seen"}),
        ("PUT", "/notice", {"internal": False, "public_note": None}),
    ]
    let_through = {200, 201, 409}
    for method, suffix, body in routes:
        tid = raise_ticket(api, "teach-1", "plumbing")
        path = f"/api/tickets/{tid}{suffix}"
        got = {who: api(who, method, path, json=body).status_code for who in USERS}
        got["nobody"] = api(None, method, path, json=body).status_code
        if suffix == "/evidence.png":  # a ticket without a device has no plot: 404 for all
            assert got == {**dict.fromkeys(USERS, 404), "nobody": 401}, got
            continue
        assert got["nobody"] == 401, (path, got)
        assert got["liu"] == got["zhou"] == 404, (path, got)  # not their trade or area
        for who in ("wang", "eng", "root"):
            assert got[who] in let_through, (path, who, got)
        assert got["office"] == (200 if method == "GET" else 403), (path, got)
    assert api(None, "GET", "/api/tickets").status_code == 401
    for who in USERS:
        assert api(who, "GET", "/api/tickets").status_code == 200
        create = {"building": "dorm-1", "trade": "hvac", "title": "Too cold"}
        r = api(who, "POST", "/api/tickets", json=create)
        assert r.status_code == (403 if who == "office" else 201), (who, r.text)


def test_the_openapi_document_lists_the_routes(api: Api) -> None:
    spec = api.client.get("/openapi.json").json()
    assert {"/api/tickets", "/api/tickets/{ticket_id}", "/healthz", "/readyz"} <= set(spec["paths"])
    assert api.client.get("/docs").status_code == 200
    assert api.client.get("/healthz").json() == {"status": "ok"}
