"""The HTML pages and the notices API over a real SQLite store: the board and
forms in both languages (the choice kept in a cookie), no personal data on the
board (S6), staff setting a ticket's public notice (who may), the technician's
signed links (valid, expired, forged, for another ticket) and the technician
page's buttons changing the ticket."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.links import Links, links_for
from campus.settings import Settings
from tests.accounts import StoreTemplate, store_with_accounts
from tests.conftest import CONFIG
from tickets.models import Role, Ticket
from tickets.service import Tickets

PLUMBER = "tech-wang-jg"  # plumbing, teaching area
DORM_PLUMBER = "tech-liu-dm"  # plumbing, dormitories
SECRETS = ["王建国", PLUMBER, "dorm-3-r402", "13912345678", "someone@example.org", "Leaky pipe"]
USERS = {
    "office": (Role.viewer, None),
    "eng": (Role.engineer, None),
    "wang": (Role.technician, PLUMBER),
    "liu": (Role.technician, DORM_PLUMBER),
}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> StoreTemplate:
    return store_with_accounts(tmp_path_factory.mktemp("pages"), USERS)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(var_dir=tmp_path, config_dir=CONFIG, api_secret="k" * 32, language="zh")


@pytest.fixture
def tickets(template: StoreTemplate, tmp_path: Path) -> Tickets:
    return template.copy(tmp_path)


@pytest.fixture
def client(tickets: Tickets, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, tickets)) as c:
        yield c


@pytest.fixture
def tokens(template: StoreTemplate) -> dict[str, str]:
    return template.tokens


def auth(tokens: dict[str, str], who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens[who]}"}


def raise_ticket(
    client: TestClient,
    tokens: dict[str, str],
    building: str = "dorm-3",
    trade: str = "plumbing",
    **extra: object,
) -> int:
    body = {"building": building, "trade": trade, "title": f"{trade} in {building}", **extra}
    r = client.post("/api/tickets", json=body, headers=auth(tokens, "eng"))
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def lang_of(html: str) -> str:
    found = re.search(r'<html lang="([^"]+)"', html)
    assert found is not None
    return found.group(1)


# ------------------------------------------------------------------ languages


def test_pages_speak_both_languages_and_keep_the_choice(client: TestClient) -> None:
    for path in ("/", "/feedback"):
        r = client.get(path)
        assert r.status_code == 200 and lang_of(r.text) == "zh-Hans"  # the campus default
        assert 'name="viewport"' in r.text and f'href="{path}?lang=en"' in r.text
    assert "校园设施运行状态" in client.get("/").text
    r = client.get("/feedback?building=dorm-3&room=402&lang=en")
    assert lang_of(r.text) == "en" and "Anonymous feedback" in r.text
    assert r.cookies.get("lang") == "en"
    assert 'href="/feedback?building=dorm-3&amp;room=402&amp;lang=zh"' in r.text  # query kept
    r = client.get("/")  # the cookie is sent back: English kept
    assert lang_of(r.text) == "en" and "Campus facilities status" in r.text
    r = client.get("/?lang=xx")  # not a language of ours: ignored
    assert lang_of(r.text) == "en"
    client.cookies.clear()
    assert lang_of(client.get("/?lang=zh").text) == "zh-Hans"


def test_the_feedback_form_is_filled_in_from_its_qr_code(client: TestClient) -> None:
    r = client.get("/feedback?building=dorm-3&room=402&lang=zh")
    assert '<option value="dorm-3" selected>' in r.text
    assert 'name="room" value="402"' in r.text and 'accept="image/*"' in r.text
    assert "IP" in r.text  # the privacy promise
    r = client.get("/feedback?building=nowhere&room=%3Cscript%3E")  # wrong presets are dropped
    assert r.status_code == 200 and " selected>" not in r.text and "<script>" not in r.text


def test_feedback_in_any_script_gets_a_receipt_that_follows_the_case(client: TestClient) -> None:
    text = "E\u0301 房间太冷 — слишком холодно — 🥶"
    r = client.post(
        "/feedback?lang=en",
        data={"category": "too_cold", "building": "dorm-3", "room": "402", "text": text},
    )
    assert r.status_code == 201, r.text
    token = re.search(r'id="receipt-token">([^<]+)<', r.text)
    assert token is not None and f'href="/feedback/r/{token.group(1)}"' in r.text
    case = client.get(f"/feedback/r/{token.group(1)}")
    assert case.status_code == 200 and 'data-status="received"' in case.text
    assert "Too cold" in case.text and "Dormitory 3" in case.text
    assert client.get("/feedback/r/fb_" + "x" * 32).status_code == 404
    r = client.post("/feedback", data={"category": "nope", "building": "dorm-3", "text": "x"})
    assert r.status_code == 422  # the form again (in the language kept), naming the field
    assert "Please check: Kind of problem: choose one of" in r.text
    assert 'value="dorm-3" selected' in r.text  # as sent
    r = client.post(f"/feedback/r/{token.group(1)}/rate", data={"rating": "5"})
    assert r.status_code == 409  # not closed yet: the case page says so
    assert 'id="form-error"' in r.text
    assert f'href="/feedback/r/{token.group(1)}?lang=zh"' in r.text


# -------------------------------------------------------------- board, notices


def test_the_board_carries_no_personal_data(
    client: TestClient, tickets: Tickets, tokens: dict[str, str]
) -> None:
    """S6: titles, descriptions, comments, names, device ids, contacts and
    internal tickets never reach the board or the notices."""
    leaky = "Leaky pipe: 王建国 (tech-wang-jg, 13912345678, someone@example.org) at dorm-3-r402"
    tid = raise_ticket(client, tokens, device="dorm-3-r402", description=leaky)
    client.post(f"/api/tickets/{tid}/comments", json={"text": leaky}, headers=auth(tokens, "eng"))
    hidden = raise_ticket(client, tokens, building="library", trade="electrical")
    r = client.put(
        f"/api/tickets/{hidden}/notice", json={"internal": True}, headers=auth(tokens, "eng")
    )
    assert r.status_code == 200
    noted = raise_ticket(client, tokens, building="gym", trade="hvac")
    with tickets.store.session() as s:  # a note written before the check existed
        ticket = s.get(Ticket, noted)
        assert ticket is not None
        ticket.public_note = leaky.replace("Leaky pipe", "Crew")
    for lang in ("zh", "en"):
        board = client.get(f"/?lang={lang}").text
        data = client.get(f"/api/notices?lang={lang}").text
        for secret in SECRETS:
            assert secret not in board and secret not in data, (lang, secret)
        assert 'id="b-dorm-3" data-state="warning"' in board  # P3: a problem reported
        assert 'id="b-library" data-state="ok"' in board  # internal: not shown
    notices = client.get("/api/notices?lang=en").json()
    texts = {n["building"]: n["text"] for n in notices["notices"]}
    assert set(texts) == {"dorm-3", "gym"}
    assert texts["dorm-3"].startswith("Water supply problem in Dormitory 3, floor 4, reported")
    assert texts["gym"].startswith("Crew: *** (***, ***, ***) at ***")
    assert notices["buildings"]["dorm-3"] == "warning" and notices["buildings"]["library"] == "ok"
    assert client.get("/api/notices?lang=fr").status_code == 422


def test_who_may_set_a_public_notice(client: TestClient, tokens: dict[str, str]) -> None:
    tid = raise_ticket(client, tokens, building="dorm-1")  # the dormitory plumbers' ticket
    path = f"/api/tickets/{tid}/notice"
    note = {"internal": False, "public_note": "Water back by 16:00"}
    assert client.put(path, json=note).status_code == 401
    assert client.put(path, json=note, headers=auth(tokens, "office")).status_code == 403
    assert client.put(path, json=note, headers=auth(tokens, "wang")).status_code == 404
    r = client.put(path, json=note, headers=auth(tokens, "liu"))
    assert r.status_code == 200 and r.json() == {"id": tid, **note}
    texts = [n["text"] for n in client.get("/api/notices").json()["notices"]]
    assert texts == ["Water back by 16:00"]
    for bad, field in [
        ({"internal": False, "public_note": "call 13912345678"}, "phone number"),
        ({"internal": False, "public_note": "ask tech-liu-dm"}, "name or id"),
        ({"internal": False, "state": "closed"}, "state"),  # mass assignment
        ({"public_note": "x"}, "internal"),
    ]:
        r = client.put(path, json=bad, headers=auth(tokens, "eng"))
        assert r.status_code == 422 and field in r.text, (bad, r.text)
    r = client.put(path, json={"internal": True, "public_note": ""}, headers=auth(tokens, "eng"))
    assert r.json() == {"id": tid, "internal": True, "public_note": None}
    assert client.get("/api/notices").json()["notices"] == []
    events = client.get(f"/api/tickets/{tid}", headers=auth(tokens, "eng")).json()["events"]
    assert [(e["actor"], e["action"]) for e in events[-2:]] == [
        (DORM_PLUMBER, "notice"),
        ("eng", "notice"),
    ]


# ----------------------------------------------------------- technician links


def test_links_open_one_ticket_until_they_expire(
    client: TestClient, settings: Settings, tokens: dict[str, str]
) -> None:
    tid = raise_ticket(client, tokens, device="dorm-3-r402")
    other = raise_ticket(client, tokens, building="dorm-1")
    links = links_for(settings)
    good = links.token(tid, DORM_PLUMBER)
    r = client.get(f"/t/{tid}?k={good}")
    assert r.status_code == 200 and "plumbing in dorm-3" in r.text
    assert "dorm-3-r402" in r.text and "402" in r.text  # where: the device and its room
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"
    expired = links.token(tid, DORM_PLUMBER, ttl_s=-1)
    r = client.get(f"/t/{tid}?k={expired}&lang=en")
    assert r.status_code == 403 and "Link expired" in r.text
    forged = Links(b"another key", 3600).token(tid, DORM_PLUMBER)
    for token in (forged, good[:-2] + "xx", "garbage", good.replace(".", ".x", 1)):
        r = client.get(f"/t/{tid}", params={"k": token, "lang": "en"})
        assert r.status_code == 403 and "Link not valid" in r.text
    r = client.get(f"/t/{other}?k={good}&lang=en")
    assert r.status_code == 403 and "another ticket" in r.text
    stranger = links.token(tid, "tech-nobody")  # signed, but for nobody the store knows
    assert client.get(f"/t/{tid}?k={stranger}").status_code == 403
    missing = links.token(424242, DORM_PLUMBER)
    assert client.get(f"/t/424242?k={missing}").status_code == 404
    assert client.get(f"/t/{tid}").status_code == 422  # no token at all
    assert links.check(good, tid).technician == DORM_PLUMBER
    url = links.url(tid, DORM_PLUMBER)
    assert url.startswith(f"{settings.public_url}/t/{tid}?k=")


def test_the_buttons_work_the_ticket_as_the_links_technician(
    client: TestClient, settings: Settings, tickets: Tickets, tokens: dict[str, str]
) -> None:
    tid = raise_ticket(client, tokens)
    k = links_for(settings).token(tid, DORM_PLUMBER)
    r = client.post(f"/t/{tid}/resolve", data={"k": k})
    assert r.status_code == 409 and "acknowledge it first" in r.text  # shown on the page
    assert f'href="/t/{tid}?k={k}&amp;lang=en"' in r.text  # the switch leads to the page
    r = client.post(f"/t/{tid}/acknowledge", data={"k": k}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/t/{tid}?k={k}&done=acknowledge"
    assert 'id="flash-ok"' in client.get(r.headers["location"]).text
    r = client.post(f"/t/{tid}/start", data={"k": k}, follow_redirects=False)
    assert r.status_code == 303  # on my way: taken by the technician and started
    ticket = tickets.get(tid)
    assert ticket.state == "in_progress" and ticket.technician_id == DORM_PLUMBER
    r = client.post(f"/t/{tid}/note", data={"k": k, "note": "  "})
    assert r.status_code == 422
    r = client.post(f"/t/{tid}/note", data={"k": k, "note": "阀门已更换"}, follow_redirects=True)
    assert r.status_code == 200 and "阀门已更换" in r.text
    r = client.post(f"/t/{tid}/resolve", data={"k": k, "note": "fixed"}, follow_redirects=False)
    assert r.status_code == 303
    ticket = tickets.get(tid)
    assert ticket.state == "resolved"
    assert {e.actor for e in ticket.events[1:]} == {DORM_PLUMBER}
    assert ticket.comments[-1].author == DORM_PLUMBER
    # another ticket's link, a forged one, or none: nothing changes
    other = raise_ticket(client, tokens, building="dorm-1")
    assert client.post(f"/t/{other}/acknowledge", data={"k": k}).status_code == 403
    assert client.post(f"/t/{other}/acknowledge", data={"k": "forged"}).status_code == 403
    assert client.post(f"/t/{other}/acknowledge").status_code == 422
    assert tickets.get(other).state == "open"
    other_k = links_for(settings).token(other, DORM_PLUMBER)
    assert client.post(f"/t/{other}/explode", data={"k": other_k}).status_code == 404


def test_the_evidence_plot_comes_only_from_the_anomaly_folder(
    client: TestClient, settings: Settings, tokens: dict[str, str], tmp_path: Path
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    (tmp_path / "anomaly").mkdir()
    inside = tmp_path / "anomaly" / "plot.png"
    inside.write_bytes(png)
    outside = tmp_path / "secret.png"
    outside.write_bytes(png)
    links = links_for(settings)
    for path, shown in [
        (inside, True),
        (outside, False),
        (tmp_path / "anomaly" / ".." / "secret.png", False),
        (tmp_path / "anomaly" / "missing.png", False),
    ]:
        tid = raise_ticket(
            client, tokens, description=f"Model says odd.\n\nPlot of the last day: {path}"
        )
        page = client.get(f"/t/{tid}?k={links.token(tid, DORM_PLUMBER)}").text
        assert ('id="evidence" src="data:image/png;base64,' in page) is shown, path
        assert "Plot of the last day" not in page and str(path) not in page


def test_the_form_says_when_a_report_is_too_large_or_too_frequent(
    tickets: Tickets, tmp_path: Path
) -> None:
    """S7 on the page: the form comes back saying what is wrong (413, 429 with
    Retry-After), keeping what was typed."""
    settings = Settings(
        var_dir=tmp_path, config_dir=CONFIG, feedback_rate_per_hour=2, feedback_max_photo_bytes=1024
    )
    report = {"category": "leak", "building": "dorm-3", "text": "水管漏水 leaking"}
    report["category"] = "water_leak"
    with TestClient(create_app(settings, tickets)) as client:
        big = {"photo": ("leak.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 2048, "image/png")}
        r = client.post("/feedback?lang=en", data=report, files=big)
        assert r.status_code == 413 and "Photo (optional): at most 1024 bytes" in r.text
        assert "水管漏水 leaking" in r.text
        assert client.post("/feedback", data=report).status_code == 201
        r = client.post("/feedback", data=report)
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert "Too many reports" in r.text and "水管漏水 leaking" in r.text
    assert not (tmp_path / "feedback").exists() or not any((tmp_path / "feedback").iterdir())


def test_campus_qr_writes_codes_and_a_sheet_per_building(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from campus.cli import main

    monkeypatch.setenv("CAMPUS_CONFIG_DIR", str(CONFIG))
    monkeypatch.setenv("CAMPUS_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CAMPUS_PUBLIC_URL", "https://fm.example.edu.cn/")
    out = tmp_path / "qr"
    args = ["qr", "--out", str(out), "--building", "dorm-8", "--building", "library", "--rooms"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "62 QR code(s) for 2 building(s)" in r.output  # dorm-8, its 60 rooms, library
    dorm = out / "dorm-8"
    assert {p.suffix for p in dorm.iterdir()} == {".svg", ".png", ".html"}
    assert (dorm / "dorm-8_101.png").read_bytes().startswith(b"\x89PNG")
    assert (dorm / "dorm-8_101.svg").read_text().lstrip().startswith("<?xml")
    sheet = (dorm / "sheet.html").read_text()
    assert "https://fm.example.edu.cn/feedback?building=dorm-8&amp;room=101" in sheet
    assert "扫码匿名反馈设施问题" in sheet and "Scan to report a facility problem" in sheet
    assert "101房间" in sheet and "Room 101" in sheet
    assert sorted(p.name for p in (out / "library").iterdir()) == [
        "library.png",
        "library.svg",
        "sheet.html",
    ]
    r = CliRunner().invoke(main, ["qr", "--out", str(out), "--building", "atlantis"])
    assert r.exit_code == 2 and "unknown building atlantis" in r.output


def test_a_closed_repair_asks_for_a_rating_once(client: TestClient, tokens: dict[str, str]) -> None:
    tid = raise_ticket(client, tokens, building="dorm-2", trade="plumbing")
    r = client.post(
        "/feedback?lang=en",
        data={"category": "no_hot_water", "building": "dorm-2", "text": "no hot water"},
    )
    token = re.search(r'id="receipt-token">([^<]+)<', r.text)
    assert token is not None
    case = f"/feedback/r/{token.group(1)}"
    page = client.get(case).text
    assert 'data-status="linked"' in page and 'id="rate-form"' not in page
    for action in ("acknowledge", "resolve", "close"):
        r = client.post(f"/api/tickets/{tid}/{action}", headers=auth(tokens, "eng"))
        assert r.status_code == 200, r.text
    page = client.get(case).text
    assert 'data-status="closed"' in page and 'id="rate-form"' in page
    assert "Are you satisfied?" in page
    assert client.post(case + "/rate", data={"rating": "9"}).status_code == 422
    r = client.post(case + "/rate", data={"rating": "4"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == case
    page = client.get(case).text
    assert "Thank you for your rating: 4/5" in page and 'id="rate-form"' not in page
    assert client.post(case + "/rate", data={"rating": "5"}).status_code == 409  # once
