"""Anonymous feedback over a real SQLite store and the shipped campus: the
JSON and multipart routes, validation naming the field, the rate limit and
size limits (S7), that nothing about the sender is stored or logged, triage
into tickets and alerts, receipts, the rating, and what each staff role sees."""

# ruff: noqa: RUF001

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import inspect, select, text
from starlette.requests import Request

from api import feedback as fb
from api.app import create_app
from api.limits import RateLimiter
from campus.registry import Campus
from campus.settings import Settings
from tests.accounts import StoreTemplate, store_with_accounts
from tests.conftest import CONFIG
from tickets.models import AlertRecord, Feedback, Role, Source, Ticket
from tickets.service import Alert, Tickets

USERS = {
    "office": (Role.viewer, None),
    "eng": (Role.engineer, None),
    "wang": (Role.technician, "tech-wang-jg"),  # plumbing, teaching area (teach-1, ...)
}
PEER = "203.0.113.77"
AGENT = "Mozilla/5.0 (Linux; Android 14; TraceablePhone-8891)"
COOKIE = "session-cookie-5512"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> StoreTemplate:
    return store_with_accounts(tmp_path_factory.mktemp("template"), USERS)


@dataclass
class World:
    """One test's store, settings, campus and a client of the app over them."""

    tickets: Tickets
    settings: Settings
    campus: Campus
    client: TestClient
    app: Any
    tokens: dict[str, str]

    def staff(self, who: str, path: str, **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return self.client.get(path, headers=headers, **kw)

    def report(self, category: str, building: str, text: str = "x", **kw: Any) -> fb.Receipt:
        sub = fb.Submission(category, building, kw.pop("room", None), text, kw.pop("contact", None))
        return fb.submit(self.tickets, self.settings, self.campus, sub)


def world(template: StoreTemplate, tmp_path: Path, **settings: Any) -> Iterator[World]:
    tickets = template.copy(tmp_path)
    s = Settings(var_dir=tmp_path, config_dir=CONFIG, **settings)
    app = create_app(s, tickets)
    with TestClient(app, client=(PEER, 40000)) as client:
        yield World(tickets, s, app.state.campus, client, app, template.tokens)
    tickets.store.close()


@pytest.fixture
def w(template: StoreTemplate, tmp_path: Path) -> Iterator[World]:
    yield from world(template, tmp_path, feedback_rate_per_hour=1000)


def body(**over: Any) -> dict[str, Any]:
    return {"category": "too_cold", "building": "dorm-3", "room": "3-402", "text": "好冷"} | over


def jpeg_with_gps() -> bytes:
    """A photo as a phone takes it: EXIF with orientation, GPS and a description."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: shown upright it is 48 wide, 64 high
    exif[0x010E] = "DESCRIPTION-MARKER"
    exif[0x8825] = {1: "N", 2: (31.0, 1.0, 46.0), 3: "E", 4: (121.0, 26.0, 0.0)}
    out = io.BytesIO()
    Image.new("RGB", (64, 48), "blue").save(out, "JPEG", exif=exif.tobytes(), comment=b"CMT")
    return out.getvalue()


# ------------------------------------------------------------------ the routes


def test_a_report_gets_a_receipt_that_follows_it_without_an_account(w: World) -> None:
    r = w.client.post("/api/feedback", json=body(contact="wechat: lily_88"))
    assert r.status_code == 201, r.text
    got = r.json()
    assert got["token"].startswith("fb_") and len(got["token"]) == 35
    assert got["status"] == "received" and got["ticket_id"] is None
    case = w.client.get(got["url"])
    assert case.status_code == 200
    view = case.json()
    assert view["status"] == "received" and view["category"] == "too_cold"
    assert view["trade"] == "hvac" and view["room"] == "3-402" and view["can_rate"] is False
    assert "lily_88" not in case.text and "好冷" not in case.text  # the receipt shows no text
    with w.tickets.store.session() as s:
        row = s.scalars(select(Feedback)).one()
        assert row.receipt_digest == fb.digest(got["token"])
        assert got["token"] not in " ".join(str(v) for v in vars(row).values())
    forged = "fb_" + "A" * 32
    assert w.client.get(f"/api/feedback/receipt/{forged}").status_code == 404
    assert w.client.get("/api/feedback/receipt/fb_short").status_code == 422


def test_bad_fields_are_refused_naming_the_field(w: World) -> None:
    def refused(field: str, **over: Any) -> None:
        r = w.client.post("/api/feedback", json=body(**over))
        assert r.status_code == 422, (field, r.text)
        assert field in r.text, (field, r.text)

    refused("category", category="haunted")
    refused("building", building="dorm-99")
    refused("building", building="../etc")
    refused("room", room="3-402; DROP TABLE feedback")
    refused("text", text="x" * (w.settings.feedback_max_text + 1))  # oversized text
    refused("text", text="x" * 200_000)
    refused("text", text="\x00\x07\u202e  \r\n")  # nothing left after cleaning
    refused("contact", contact="c" * 201)
    refused("language", language="klingon-xx")
    refused("ticket_id", ticket_id=7)  # no mass assignment
    refused("status", status="closed")
    assert w.client.get("/api/feedback", params={"category": "x"}).status_code == 401
    with w.tickets.store.session() as s:
        assert s.scalar(select(Feedback.id)) is None


def test_any_script_is_kept_in_nfc_without_control_characters(w: World) -> None:
    texts = {
        "zh": "宿舍3-402暖气不热，晚上很冷。",
        "ar": "لا يوجد ماء ساخن في الحمام",
        "emoji": "🥶 no heat 👨‍👩‍👧",
        "decomposed": "cafe\u0301 froid\tdans la salle\r\nB\x00\x1b[31m\u202eevil",
    }
    for text_ in texts.values():
        assert w.client.post("/api/feedback", json=body(text=text_)).status_code == 201
    with w.tickets.store.session() as s:
        stored = list(s.scalars(select(Feedback.text).order_by(Feedback.id)))
    assert stored[:3] == [texts["zh"], texts["ar"], texts["emoji"]]
    assert stored[3] == "café froid\tdans la salle\nB[31mevil"


def test_a_body_over_the_limit_is_413_before_it_is_read(w: World) -> None:
    big = "x" * (w.settings.api_max_body_bytes + 1)
    r = w.client.post("/api/feedback", json=body(text=big))
    assert r.status_code == 413 and "too large" in r.json()["detail"]


def test_a_photo_is_checked_by_its_bytes_and_stored_without_metadata(w: World) -> None:
    def upload(photo: bytes, name: str, ctype: str) -> Any:
        files = {"photo": (name, photo, ctype)}
        form = {"category": "water_leak", "building": "teach-1", "text": "漏水了", "room": "101"}
        return w.client.post("/api/feedback/upload", data=form, files=files)

    fake = upload(b"this is a text file, renamed\n" * 10, "leak.png", "image/png")
    assert fake.status_code == 422 and fake.json()["detail"].startswith("photo:")
    forged = upload(b"\x89PNG\r\n\x1a\n" + b"not really" * 20, "x.png", "image/png")
    assert forged.status_code == 422 and "photo" in forged.text
    huge = upload(
        b"\xff\xd8\xff" + bytes(w.settings.feedback_max_photo_bytes), "a.jpg", "image/jpeg"
    )
    assert huge.status_code == 413 and huge.json()["detail"].startswith("photo:")
    photos = w.settings.var_dir / "feedback"
    assert not photos.exists() or not any(photos.iterdir())  # nothing refused was kept

    ok = upload(jpeg_with_gps(), "IMG_0001.JPG", "application/octet-stream")
    assert ok.status_code == 201, ok.text
    (stored,) = photos.iterdir()
    assert stored.suffix == ".jpg" and len(stored.stem) == 32 and "IMG" not in stored.name
    assert stored.stat().st_mode & 0o077 == 0
    data = stored.read_bytes()
    assert b"DESCRIPTION-MARKER" not in data and b"Exif" not in data and b"CMT" not in data
    image = Image.open(io.BytesIO(data))
    assert image.size == (48, 64) and not image.getexif()  # turned upright, no EXIF left
    listed = w.staff("eng", "/api/feedback").json()["items"][0]
    shown = w.staff("eng", listed["photo_url"])
    assert shown.status_code == 200 and shown.headers["content-type"] == "image/jpeg"
    assert shown.content == data
    no_photo = w.client.post("/api/feedback/upload", data={**body(), "room": ""})
    assert no_photo.status_code == 201, no_photo.text


def test_nothing_identifying_the_sender_is_stored_or_logged(
    w: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    headers = {"User-Agent": AGENT, "Cookie": f"sid={COOKIE}", "X-Forwarded-For": "198.51.100.4"}
    r = w.client.post("/api/feedback", json=body(), headers=headers)
    assert r.status_code == 201
    files = {"photo": ("p.jpg", jpeg_with_gps(), "image/jpeg")}
    r = w.client.post("/api/feedback/upload", data=body(), files=files, headers=headers)
    assert r.status_code == 201
    for _ in range(3):  # past the threshold: a ticket, its events and notes
        w.client.post("/api/feedback", json=body(), headers=headers)
    token = r.json()["token"]
    w.client.post(f"/api/feedback/receipt/{token}/rating", json={"rating": 5}, headers=headers)
    secrets_ = (PEER, AGENT, "TraceablePhone", COOKIE, "198.51.100.4")
    seen = 0
    with w.tickets.store.engine.connect() as c:
        for table in inspect(c).get_table_names():
            for row in c.execute(text(f'SELECT * FROM "{table}"')):
                seen += 1
                for value in row:
                    assert not any(s in str(value) for s in secrets_), (table, row)
    assert seen > 10
    with w.tickets.store.session() as s:
        assert s.scalar(select(Ticket.id).where(Ticket.source == Source.feedback.value))
    logs = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    assert not any(s in logs for s in secrets_)
    for path in (w.settings.var_dir / "feedback").iterdir():
        assert not any(s.encode() in path.read_bytes() for s in secrets_)


# ----------------------------------------------------------------- rate limits


def test_a_flood_from_one_client_is_429_while_another_gets_through(
    template: StoreTemplate, tmp_path: Path
) -> None:
    for v in world(template, tmp_path, feedback_rate_per_hour=5):
        per_hour = v.settings.feedback_rate_per_hour
        for _ in range(per_hour):
            assert v.client.post("/api/feedback", json=body()).status_code == 201
        for spoof in ("198.51.100.1", "10.0.0.1, 198.51.100.2", None):
            headers = {"X-Forwarded-For": spoof} if spoof else {}
            r = v.client.post("/api/feedback", json=body(), headers=headers)
            assert r.status_code == 429, r.text  # the header of a direct client is not believed
            retry = int(r.headers["Retry-After"])
            assert 1 <= retry <= 3600 // per_hour and str(retry) in r.json()["detail"]
        bad = v.client.post("/api/feedback", json=body(category="x"))
        assert bad.status_code == 429  # counted before the body is looked at
        rating = v.client.post(f"/api/feedback/receipt/fb_{'a' * 32}/rating", json={"rating": 5})
        assert rating.status_code == 429
        assert v.client.get("/api/feedback/receipt/fb_" + "a" * 32).status_code == 404  # reads
        other = TestClient(v.app, client=("198.51.100.200", 1))
        assert other.post("/api/feedback", json=body()).status_code == 201
        # behind the local proxy, each forwarded client has a bucket of its own
        proxy = TestClient(v.app, client=("127.0.0.1", 2))
        for n in range(per_hour):
            fwd = {"X-Forwarded-For": f"192.0.2.{n}, 198.51.100.9"}
            assert proxy.post("/api/feedback", json=body(), headers=fwd).status_code == 201
        fwd = {"X-Forwarded-For": "192.0.2.77, 198.51.100.9"}  # the proxy's hop decides
        assert proxy.post("/api/feedback", json=body(), headers=fwd).status_code == 429
        fwd = {"X-Forwarded-For": "198.51.100.10"}
        assert proxy.post("/api/feedback", json=body(), headers=fwd).status_code == 201


def request(peer: str, forwarded: str | None = None) -> Request:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return Request({"type": "http", "headers": headers, "client": (peer, 1)})


def test_the_limiter_keeps_bounded_salted_keys_and_refills() -> None:
    now = [0.0]
    lim = RateLimiter(2, max_keys=3, clock=lambda: now[0])
    assert lim.take("a") is None and lim.take("a") is None
    assert lim.take("a") == 1800  # one token per half hour
    now[0] += 1799
    assert lim.take("a") == 1
    now[0] += 1
    assert lim.take("a") is None
    for peer in "bcdef":
        lim.take(peer)
    assert len(lim) == 3  # the least recently seen were forgotten
    assert all(isinstance(k, bytes) and len(k) == 32 for k in lim._buckets)
    now[0] += 3600
    lim.take("g")
    assert len(lim) == 1  # idle clients with full buckets are dropped
    (key,) = lim._buckets  # a salted hash: not the address, nor its plain digest
    assert key != hashlib.sha256(b"g").digest()
    other = RateLimiter(2)
    other.take("g")
    assert key not in other._buckets  # each process salts anew
    # whose address counts
    assert lim.client_of(request("198.51.100.1", "1.2.3.4")) == "198.51.100.1"
    assert lim.client_of(request("127.0.0.1", "1.2.3.4, 127.0.0.1")) == "1.2.3.4"
    assert lim.client_of(request("::1", "::ffff:1.2.3.4")) == "1.2.3.4"
    assert lim.client_of(request("127.0.0.1")) == "127.0.0.1"
    v6 = lim.client_of(request("2001:db8:1:2:aaaa::1"))
    assert v6 == lim.client_of(request("2001:db8:1:2:bbbb::9")) == "2001:db8:1:2::/64"


# ---------------------------------------------------------------------- triage


def add_alert(w: World, key: str, building: str, trade: str, ticket_id: int | None) -> None:
    now = datetime.now(UTC)
    with w.tickets.store.session() as s:
        s.add(
            AlertRecord(
                dedup_key=key,
                state="firing",
                rule=key.split(":")[0],
                building=building,
                device=None,
                metric=None,
                value=None,
                severity="P2",
                trade=trade,
                title="Boiler alarm",
                fired_at=now,
                changed_at=now,
                ticket_id=ticket_id,
                detail={},
            )
        )


def tickets_of(w: World, building: str) -> list[Ticket]:
    with w.tickets.store.session() as s:
        return list(s.scalars(select(Ticket).where(Ticket.building == building)))


def test_fourteen_no_hot_water_reports_and_a_boiler_alarm_are_one_incident(w: World) -> None:
    boiler = Alert(
        dedup_key="boiler_fault:boiler-dorm-1",
        source=Source.rule,
        severity="P2",
        building="dorm-1",
        trade="plumbing",
        title="Boiler stopped",
        at=datetime.now(UTC),
        rule="boiler_fault",
    )
    tid = w.tickets.raise_alert(boiler).ticket_id
    add_alert(w, boiler.dedup_key, "dorm-1", "plumbing", tid)
    receipts = [
        w.report("no_hot_water", "dorm-1", f"没有热水 {n}", room=f"1-{100 + n}") for n in range(14)
    ]
    assert [t.id for t in tickets_of(w, "dorm-1")] == [tid]  # no second ticket
    assert {(r.status, r.ticket_id) for r in receipts} == {("linked", tid)}
    with w.tickets.store.session() as s:
        linked = s.scalars(select(Feedback).where(Feedback.ticket_id == tid)).all()
    assert len(linked) == 14
    ticket = w.tickets.get(tid)
    assert ticket.count == 1  # the alarm's count is the alarm's
    assert ticket.comments[-1].text.startswith("住户反馈共 14 条")
    view = fb.lookup(w.tickets, receipts[0].token)
    assert view is not None and view.status == "linked" and view.ticket_state == "open"


def test_reports_raise_a_ticket_at_the_threshold_and_join_it_afterwards(w: World) -> None:
    assert w.settings.feedback_ticket_threshold == 3
    first = [
        w.report("too_cold", "teach-1", "教室很冷", room="101", contact="李同学 13800001234"),
        w.report("ventilation", "teach-1", "空气不流通", room="205"),
    ]
    assert [r.status for r in first] == ["received", "received"]
    w.report("noise", "teach-1", "施工噪音")  # another trade: not counted
    w.report("too_cold", "teach-2", "冷")  # another building: not counted
    assert tickets_of(w, "teach-1") == []
    third = w.report("too_hot", "teach-1", "空调制热过度", room="301")
    (ticket,) = tickets_of(w, "teach-1")
    assert third.status == "linked" and third.ticket_id == ticket.id
    assert ticket.source == "feedback" and ticket.dedup_key == "feedback:teach-1:hvac"
    assert ticket.trade == "hvac" and ticket.severity == "P3"
    assert ticket.title == "Teaching Building 1：太热（住户反馈）"  # the campus language
    assert "教室很冷" in ticket.description and "[205]" in ticket.description
    assert "13800001234" not in ticket.description + ticket.title
    assert "李同学" not in ticket.description + ticket.title
    views = [fb.lookup(w.tickets, r.token) for r in first]
    assert all(v is not None and v.ticket_id == ticket.id for v in views)
    fourth = w.report("too_cold", "teach-1", "还是冷")
    assert fourth.ticket_id == ticket.id and len(tickets_of(w, "teach-1")) == 1
    assert w.tickets.get(ticket.id).comments[-1].text.startswith("住户反馈共 4 条")
    other = fb.lookup(w.tickets, w.report("noise", "teach-1", "吵").token)
    assert other is not None and other.status == "received"


def test_reports_outside_the_window_do_not_add_up(w: World) -> None:
    start = datetime.now(UTC)
    for hours in (0, 1, 7, 8):  # two within 6 h, then two more only 1 h apart
        w.tickets.clock = lambda h=hours: start + timedelta(hours=h)  # type: ignore[misc]
        w.report("no_water", "dorm-4", "停水")
    assert tickets_of(w, "dorm-4") == []
    w.tickets.clock = lambda: start + timedelta(hours=8, minutes=5)  # type: ignore[misc]
    r = w.report("water_leak", "dorm-4", "漏水")
    (ticket,) = tickets_of(w, "dorm-4")
    assert r.ticket_id == ticket.id and ticket.severity == "P2"  # leaks are urgent
    with w.tickets.store.session() as s:
        statuses = list(s.scalars(select(Feedback.status).order_by(Feedback.id)))
    assert statuses == ["received", "received", "linked", "linked", "linked"]


def test_a_report_joins_a_firing_alert_and_then_the_ticket_it_raises(w: World) -> None:
    add_alert(w, "feeder_trip:pm-dorm-2", "dorm-2", "electrical", None)
    r = w.report("power_outage", "dorm-2", "整层停电", room="2-210")
    assert r.status == "linked" and r.ticket_id is None
    for n in range(4):  # past the threshold: still the alert's incident, no ticket of its own
        w.report("lighting", "dorm-2", f"灯不亮 {n}")
    assert tickets_of(w, "dorm-2") == []
    with w.tickets.store.session() as s:
        keys = set(s.scalars(select(Feedback.alert_key)))
    assert keys == {"feeder_trip:pm-dorm-2"}
    raised = w.tickets.raise_alert(
        Alert(
            dedup_key="feeder_trip:pm-dorm-2",
            source=Source.rule,
            severity="P1",
            building="dorm-2",
            trade="electrical",
            title="Feeder tripped",
            at=datetime.now(UTC),
        )
    )
    with w.tickets.store.session() as s:
        s.get_one(AlertRecord, "feeder_trip:pm-dorm-2").ticket_id = raised.ticket_id
    view = fb.lookup(w.tickets, r.token)
    assert view is not None and view.ticket_id == raised.ticket_id and view.ticket_state == "open"


def test_an_alert_ticket_closed_before_the_report_is_not_its_ticket(w: World) -> None:
    earlier = w.tickets.raise_alert(
        Alert("manual:chiller", Source.manual, "P3", "dorm-3", "hvac", "Chiller", datetime.now(UTC))
    ).ticket_id
    for move in ("acknowledge", "resolve", "close"):
        getattr(w.tickets, move)(earlier, "eng")
    add_alert(w, "chiller_stopped:ch-dorm-3", "dorm-3", "hvac", earlier)  # still firing
    r = w.report("too_hot", "dorm-3", "闷热")
    view = fb.lookup(w.tickets, r.token)
    assert view is not None and view.status == "linked" and view.ticket_id is None
    assert view.can_rate is False
    # a new ticket of the alert is the report's, and so is its closing
    later = w.tickets.raise_alert(
        Alert("manual:chiller", Source.manual, "P2", "dorm-3", "hvac", "Chiller", datetime.now(UTC))
    ).ticket_id
    with w.tickets.store.session() as s:
        s.get_one(AlertRecord, "chiller_stopped:ch-dorm-3").ticket_id = later
    for move in ("acknowledge", "resolve", "close"):
        getattr(w.tickets, move)(later, "eng")
    view = fb.lookup(w.tickets, r.token)
    assert view is not None and view.ticket_id == later and view.can_rate is True
    assert fb.rate(w.tickets, r.token, 3).rating == 3


# ---------------------------------------------------------------------- rating


def test_the_sender_rates_the_repair_once_when_its_ticket_closes(
    template: StoreTemplate, tmp_path: Path
) -> None:
    for v in world(template, tmp_path, feedback_ticket_threshold=1, feedback_rate_per_hour=100):
        got = v.client.post("/api/feedback", json=body(building="teach-3", category="no_water"))
        token, tid = got.json()["token"], got.json()["ticket_id"]
        assert got.json()["status"] == "linked" and tid is not None
        rate = f"/api/feedback/receipt/{token}/rating"
        early = v.client.post(rate, json={"rating": 5})
        assert early.status_code == 409 and "closed" in early.json()["detail"]
        v.tickets.acknowledge(tid, "tech-wang-jg")
        v.tickets.resolve(tid, "tech-wang-jg", "valve replaced")
        with v.tickets.store.session() as s:
            s.get_one(Ticket, tid).public_note = "Water is back on all floors."
        assert v.client.get(got.json()["url"]).json()["can_rate"] is False
        v.tickets.close(tid, "tech-wang-jg")
        case = v.client.get(got.json()["url"]).json()
        assert case["status"] == "closed" and case["can_rate"] is True
        assert case["ticket_state"] == "closed" and case["notice"] == "Water is back on all floors."
        assert "tech-wang" not in str(case) and "王" not in str(case)  # no names
        for bad in (0, 6, "4", 4.5, True, None):
            r = v.client.post(rate, json={"rating": bad})
            assert r.status_code == 422 and "rating" in r.text, bad
        assert v.client.post(rate, json={"rating": 4, "ticket_id": 1}).status_code == 422
        done = v.client.post(rate, json={"rating": 4})
        assert done.status_code == 200 and done.json()["rating"] == 4
        assert done.json()["can_rate"] is False
        again = v.client.post(rate, json={"rating": 1})
        assert again.status_code == 409 and "rated already" in again.json()["detail"]
        with pytest.raises(fb.FeedbackRefused) as refused:
            fb.rate(v.tickets, token, 2)
        assert refused.value.field == "rating" and refused.value.status == 409
        assert v.client.get(got.json()["url"]).json()["rating"] == 4
        unknown = v.client.post(f"/api/feedback/receipt/fb_{'b' * 32}/rating", json={"rating": 3})
        assert unknown.status_code == 404
        v.tickets.reopen(tid, "eng", "the tap is dry again")
        assert v.client.get(got.json()["url"]).json()["status"] == "linked"


# ----------------------------------------------------------------------- staff


def test_staff_read_reports_and_only_engineers_see_the_contact(w: World) -> None:
    mine = w.report("water_leak", "teach-1", "厕所漏水", room="102", contact="phone 13912345678")
    w.report("too_cold", "teach-1", "冷", contact="QQ 12345")  # hvac: not the plumber's
    w.report("water_leak", "dorm-1", "漏水")  # plumbing, but not the plumber's buildings
    assert w.client.get("/api/feedback").status_code == 401
    eng = w.staff("eng", "/api/feedback").json()
    assert eng["total"] == 3
    assert {i["contact"] for i in eng["items"]} == {"phone 13912345678", "QQ 12345", None}
    office = w.staff("office", "/api/feedback").json()
    assert office["total"] == 3 and all(i["contact"] is None for i in office["items"])
    assert {i["text"] for i in office["items"]} == {"厕所漏水", "冷", "漏水"}
    wang = w.staff("wang", "/api/feedback").json()
    assert [(i["building"], i["category"]) for i in wang["items"]] == [("teach-1", "water_leak")]
    assert wang["items"][0]["contact"] is None
    hidden = next(i["id"] for i in eng["items"] if i["building"] == "dorm-1")
    assert w.staff("wang", f"/api/feedback/{hidden}").status_code == 404
    assert w.staff("eng", f"/api/feedback/{hidden}").status_code == 200
    assert w.staff("eng", "/api/feedback/999").status_code == 404
    page = w.staff("eng", "/api/feedback", params={"building": "teach-1", "limit": 1}).json()
    assert page["total"] == 2 and len(page["items"]) == 1
    assert w.staff("eng", "/api/feedback", params={"status": "linked"}).json()["total"] == 0
    assert w.staff("eng", "/api/feedback", params={"status": "received"}).json()["total"] == 3
    for bad in ({"status": "lost"}, {"building": "a b"}, {"limit": 0}, {"category": "x"}):
        r = w.staff("eng", "/api/feedback", params=bad)
        assert r.status_code == 422 and next(iter(bad)) in r.text, bad
    assert mine.status == "received"
