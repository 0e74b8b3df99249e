"""The notifiers against real servers: an aiosmtpd SMTP server (plain, refusing,
STARTTLS with AUTH), a local HTTP server that checks each platform's signature
the way the platform does, and the Mosquitto broker on 127.0.0.1:1883."""

# ruff: noqa: RUF001

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import queue
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import paho.mqtt.client as mqtt
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from paho.mqtt.enums import CallbackAPIVersion

from campus.stack import free_port
from tickets.notify import EmailNotifier, MqttNotifier, Notice, NotifyError, WebhookNotifier

pytestmark = pytest.mark.integration

SECRET = "SEC-campus-test-secret"
BROKER = ("127.0.0.1", 1883)


def _notice(**changes: Any) -> Notice:
    run = uuid.uuid4().hex[:8]
    base = Notice(
        key=f"ticket-1042-escalated-{run}",
        ticket_id=1042,
        event="escalated",
        severity="P1",
        building=f"图书馆-{run}",
        trade="hvac",
        title="【P1 紧急维修】工单 #1042 已升级：图书馆 送风机停转",
        body="工单已升级至第 2 级，请立即处理。\n负责人：未指派",
        language="zh",
        data={"id": 1042, "state": "open", "building": "图书馆"},
    )
    return Notice(**(asdict(base) | changes))


# ------------------------------------------------------------------ HTTP side


@dataclass
class Received:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    verified: bool


@dataclass
class Receiver:
    """A webhook receiver that verifies requests the way each platform does."""

    url: str
    requests: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


def _verify(path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes) -> bool:
    now = time.time()
    if path == "/generic":
        stamp = headers.get("x-campus-timestamp", "")
        mac = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256)
        fresh = stamp.isdigit() and abs(now - int(stamp)) < 300
        return fresh and hmac.compare_digest(
            headers.get("x-campus-signature", ""), f"sha256={mac.hexdigest()}"
        )
    if path == "/dingtalk":  # query: timestamp (ms) and URL-encoded sign
        stamp, sign = query.get("timestamp", [""])[0], query.get("sign", [""])[0]
        digest = hmac.new(SECRET.encode(), f"{stamp}\n{SECRET}".encode(), hashlib.sha256)
        fresh = stamp.isdigit() and abs(now * 1000 - int(stamp)) < 3_600_000
        doc = json.loads(body)
        return (
            fresh
            and sign == base64.b64encode(digest.digest()).decode()
            and doc["msgtype"] == "markdown"
            and bool(doc["markdown"]["title"] and doc["markdown"]["text"])
        )
    if path == "/feishu":  # body: timestamp (s) and sign
        doc = json.loads(body)
        stamp = doc.get("timestamp", "")
        key = f"{stamp}\n{SECRET}".encode()
        expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
        fresh = stamp.isdigit() and abs(now - int(stamp)) < 3600
        return fresh and doc.get("sign") == expected and doc["msg_type"] == "post"
    if path.startswith("/wecom"):
        doc = json.loads(body)
        return doc["msgtype"] == "markdown" and bool(doc["markdown"]["content"])
    if path == "/slack":
        doc = json.loads(body)
        return bool(doc["text"]) and [b["type"] for b in doc["blocks"]] == ["header", "section"]
    return True


def _answer(path: str, verified: bool) -> tuple[int, str]:
    """Status and body as the platform would answer."""
    if path == "/generic":
        return (204, "") if verified else (401, "bad signature")
    if path == "/dingtalk":
        if verified:
            return 200, '{"errcode":0,"errmsg":"ok"}'
        return 200, '{"errcode":310000,"errmsg":"sign not match"}'
    if path == "/feishu":
        if verified:
            return 200, '{"code":0,"msg":"success","data":{}}'
        return 200, '{"code":19021,"msg":"sign match fail or timestamp is not within one hour"}'
    if path == "/wecom":
        return 200, '{"errcode":0,"errmsg":"ok"}' if verified else '{"errcode":40008}'
    if path == "/wecom-busy":
        return 200, '{"errcode":45009,"errmsg":"api freq out of limit"}'
    if path == "/wecom-badkey":
        return 200, '{"errcode":93000,"errmsg":"invalid webhook url"}'
    if path == "/slack":
        return (200, "ok") if verified else (400, "invalid_payload")
    if path.startswith("/status/"):
        return int(path.rsplit("/", 1)[1]), "status as asked"
    return 404, "no such hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            query = parse_qs(parts.query)
            if parts.path == "/hang":
                state.release.wait(10)
                return
            verified = _verify(parts.path, query, headers, body)
            state.requests.append(Received(parts.path, query, headers, body, verified))
            status, text = _answer(parts.path, verified)
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("style", "path", "secret"),
    [
        ("generic", "/generic", SECRET),
        ("wecom", "/wecom", None),
        ("dingtalk", "/dingtalk", SECRET),
        ("feishu", "/feishu", SECRET),
        ("slack", "/slack", None),
    ],
)
def test_receiver_accepts_and_verifies_each_style(receiver, style, path, secret):
    notice = _notice()
    url = receiver.url + path + ("?access_token=tok" if style == "dingtalk" else "")
    with WebhookNotifier(url, style, secret=secret, timeout=2) as notifier:
        notifier.send(notice)
    (got,) = receiver.requests
    assert got.verified
    assert got.headers["idempotency-key"] == notice.key
    assert notice.title in got.body.decode("utf-8")
    if style == "dingtalk":
        assert got.query["access_token"] == ["tok"]
    if style == "generic":
        assert json.loads(got.body) == asdict(notice)


@pytest.mark.parametrize(("style", "code"), [("dingtalk", "310000"), ("feishu", "19021")])
def test_wrong_secret_is_refused_by_the_platform_and_not_retried(receiver, style, code):
    with (
        WebhookNotifier(receiver.url + f"/{style}", style, secret="wrong", timeout=2) as n,
        pytest.raises(NotifyError) as err,
    ):
        n.send(_notice())
    assert not err.value.retryable
    assert code in str(err.value) and style in str(err.value)
    assert receiver.requests[0].verified is False


def test_generic_wrong_secret_gets_401_not_retryable(receiver):
    with (
        WebhookNotifier(receiver.url + "/generic", "generic", secret="wrong", timeout=2) as n,
        pytest.raises(NotifyError) as err,
    ):
        n.send(_notice())
    assert not err.value.retryable and "401" in str(err.value)


@pytest.mark.parametrize(
    ("path", "retryable"),
    [
        ("/status/500", True),
        ("/status/503", True),
        ("/status/429", True),
        ("/status/400", False),
        ("/status/404", False),
        ("/wecom-busy", True),
        ("/wecom-badkey", False),
    ],
)
def test_http_failures_are_classified(receiver, path, retryable):
    style = "wecom" if path.startswith("/wecom") else "generic"
    with (
        WebhookNotifier(receiver.url + path, style, timeout=2) as n,
        pytest.raises(NotifyError) as err,
    ):
        n.send(_notice())
    assert err.value.retryable is retryable
    assert len(receiver.requests) == 1


def test_server_that_never_answers_times_out_retryable(receiver):
    with WebhookNotifier(receiver.url + "/hang", "slack", timeout=0.5) as n:
        started = time.monotonic()
        with pytest.raises(NotifyError) as err:
            n.send(_notice())
        took = time.monotonic() - started
    assert err.value.retryable
    assert 0.4 < took < 2.0
    assert "0.5 s" in str(err.value)


def test_nobody_listening_is_retryable():
    with (
        WebhookNotifier(f"http://127.0.0.1:{free_port()}/x", "generic", timeout=1) as n,
        pytest.raises(NotifyError) as err,
    ):
        n.send(_notice())
    assert err.value.retryable and "unreachable" in str(err.value)


# ------------------------------------------------------------------ SMTP side


class Mailbox:
    """aiosmtpd handler keeping what it received, and how."""

    def __init__(self, refuse_rcpt: bool = False) -> None:
        self.refuse_rcpt = refuse_rcpt
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.sessions: list[dict[str, Any]] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse_rcpt:
            return f"550 5.1.1 <{address}>: mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = message_from_bytes(envelope.original_content, policy=default_policy)
        assert isinstance(msg, EmailMessage)
        self.messages.append(msg)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.sessions.append({"tls": session.ssl is not None, "auth": session.authenticated})
        return "250 Message accepted"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    ctl = Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    yield box, port
    ctl.stop()


def _mailer(port: int, **kw: Any) -> EmailNotifier:
    opts: dict[str, Any] = {"starttls": False, "timeout": 3.0} | kw
    return EmailNotifier(
        "127.0.0.1",
        port,
        "ops@campus.example",
        ["tech1@campus.example", "tech2@campus.example"],
        **opts,
    )


def test_mail_arrives_with_chinese_intact_and_a_stable_message_id(smtp):
    box, port = smtp
    notice = _notice()
    mailer = _mailer(port)
    mailer.send(notice)
    mailer.send(notice)  # the outbox retrying after a lost answer
    first, again = box.messages
    assert first["Subject"] == notice.title
    assert first.get_content().replace("\r\n", "\n") == notice.body + "\n"
    assert first["X-Campus-Ticket"] == "1042"
    assert first["Message-ID"] == again["Message-ID"]
    assert first["Message-ID"].endswith("@campus.example>")
    assert box.envelopes[0] == (
        "ops@campus.example",
        ["tech1@campus.example", "tech2@campus.example"],
    )
    mailer.send(_notice())  # another notice: another id
    assert box.messages[2]["Message-ID"] != first["Message-ID"]


def test_refused_recipient_is_not_retryable():
    box = Mailbox(refuse_rcpt=True)
    port = free_port()
    ctl = Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        with pytest.raises(NotifyError) as err:
            _mailer(port).send(_notice())
    finally:
        ctl.stop()
    assert not err.value.retryable
    assert "550" in str(err.value) and "tech1@campus.example" in str(err.value)
    assert box.messages == []


def test_no_smtp_server_is_retryable():
    with pytest.raises(NotifyError) as err:
        _mailer(free_port()).send(_notice())
    assert err.value.retryable and str(err.value).startswith("email:")


def test_starttls_required_but_not_offered_is_not_retryable(smtp):
    box, port = smtp
    with pytest.raises(NotifyError) as err:
        _mailer(port, starttls=True).send(_notice())
    assert not err.value.retryable and "STARTTLS" in str(err.value)
    assert box.messages == []


@pytest.fixture
def tls_smtp(tmp_path: Path) -> Iterator[tuple[Mailbox, int, Path, list[dict[str, Any]]]]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )  # fmt: skip
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    logins: list[dict[str, Any]] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        ok = auth_data.login == b"tech-robot" and auth_data.password == b"s3cret-pw"
        logins.append({"mechanism": mechanism, "tls": session.ssl is not None, "ok": ok})
        return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535

    box = Mailbox()
    port = free_port()
    ctl = Controller(
        box, hostname="127.0.0.1", port=port, tls_context=server_ctx, require_starttls=True,
        authenticator=authenticator, auth_required=True, auth_require_tls=True,
    )  # fmt: skip
    ctl.start()
    yield box, port, cert, logins
    ctl.stop()


def test_starttls_then_auth_then_mail(tls_smtp):
    box, port, cert, logins = tls_smtp
    client_ctx = ssl.create_default_context(cafile=str(cert))
    mailer = _mailer(
        port, starttls=True, username="tech-robot", password="s3cret-pw", ssl_context=client_ctx
    )
    notice = _notice()
    mailer.send(notice)
    assert logins == [{"mechanism": logins[0]["mechanism"], "tls": True, "ok": True}]
    assert logins[0]["mechanism"] in ("LOGIN", "PLAIN")
    assert box.sessions == [{"tls": True, "auth": True}]
    assert box.messages[0]["Subject"] == notice.title


def test_bad_password_over_tls_is_not_retryable(tls_smtp):
    box, port, cert, _ = tls_smtp
    client_ctx = ssl.create_default_context(cafile=str(cert))
    mailer = _mailer(
        port, starttls=True, username="tech-robot", password="x", ssl_context=client_ctx
    )
    with pytest.raises(NotifyError) as err:
        mailer.send(_notice())
    assert not err.value.retryable and "535" in str(err.value)
    assert box.messages == []


def test_untrusted_certificate_is_not_retryable(tls_smtp):
    _, port, _, logins = tls_smtp
    with pytest.raises(NotifyError) as err:
        _mailer(port, starttls=True, username="tech-robot", password="s3cret-pw").send(_notice())
    assert not err.value.retryable and "certificate" in str(err.value)
    assert logins == []  # the password never left


# ------------------------------------------------------------------ MQTT side


@pytest.fixture
def subscriber() -> Iterator[tuple[mqtt.Client, queue.Queue[mqtt.MQTTMessage]]]:
    got: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}")
    client.on_message = lambda c, u, m: got.put(m)
    client.connect(*BROKER)
    client.loop_start()
    yield client, got
    client.disconnect()
    client.loop_stop()


def _subscribe(client: mqtt.Client, topic: str) -> None:
    acked = threading.Event()
    client.on_subscribe = lambda *a: acked.set()
    client.subscribe(topic, qos=1)
    assert acked.wait(3)


def test_notice_is_published_on_its_topic(subscriber):
    client, got = subscriber
    notice = _notice()
    _subscribe(client, f"ops/tickets/P1/{notice.building}")
    with MqttNotifier(*BROKER, client_id=f"notify-{uuid.uuid4().hex[:8]}", timeout=3) as n:
        n.send(notice)
        msg = got.get(timeout=3)
    assert msg.topic == f"ops/tickets/P1/{notice.building}"
    assert json.loads(msg.payload) == asdict(notice)
    assert msg.qos == 1 and not msg.retain


def test_connection_is_reused_and_restored_after_loss(subscriber):
    client, got = subscriber
    notice = _notice()
    _subscribe(client, f"ops/tickets/P1/{notice.building}")
    client_id = f"notify-{uuid.uuid4().hex[:8]}"
    with MqttNotifier(*BROKER, client_id=client_id, timeout=5) as n:
        n.send(notice)
        sock = n._client.socket()
        assert sock is not None
        first = sock.getsockname()
        n.send(notice)
        assert n._client.socket().getsockname() == first  # same connection
        # Another client with the same id makes the broker drop ours.
        intruder = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        intruder.connect(*BROKER)
        intruder.loop(1)
        intruder.disconnect()
        deadline = time.monotonic() + 3
        while n.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not n.connected
        n.send(notice)  # waits for paho's reconnect, then publishes
        assert n._client.socket().getsockname() != first
        payloads = [got.get(timeout=3).payload for _ in range(3)]
    assert all(json.loads(p)["key"] == notice.key for p in payloads)


def test_no_broker_is_retryable_within_the_timeout():
    with MqttNotifier("127.0.0.1", free_port(), client_id="nobody", timeout=0.5) as n:
        started = time.monotonic()
        with pytest.raises(NotifyError) as err:
            n.send(_notice())
        took = time.monotonic() - started
    assert err.value.retryable and "not connected" in str(err.value)
    assert took < 1.5
