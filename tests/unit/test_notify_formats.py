"""Each webhook style's request, byte for byte where it matters: the JSON the
platform reads and the signature it checks, computed here from the platforms'
documented algorithms rather than with the module's own helpers. Also the
e-mail headers that make a retry recognisable, the MQTT topic and the factory."""

# ruff: noqa: RUF001

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import asdict
from urllib.parse import parse_qs, urlsplit

import pytest

from tickets.notify import (
    EmailNotifier,
    MqttNotifier,
    Notice,
    WebhookNotifier,
    make_notifier,
)
from tickets.notify.mqtt import topic_for

NOW = 1_714_953_600.25  # 2024-05-06 00:00:00.25 UTC
SECRET = "SEC000test-secret"

NOTICE = Notice(
    key="ticket-1042-escalated-2",
    ticket_id=1042,
    event="escalated",
    severity="P1",
    building="图书馆",
    trade="hvac",
    title="【P1 紧急维修】工单 #1042 已升级：图书馆 送风机停转",
    body="工单已升级至第 2 级，请立即处理。\n楼宇：图书馆\n负责人：未指派",
    language="zh",
    data={"id": 1042, "state": "open", "building": "图书馆"},
)


def _build(style: str, secret: str | None = None, url: str = "https://hook.example/send"):
    notifier = WebhookNotifier(url, style, secret=secret)
    try:
        return notifier.build(NOTICE, now=NOW)
    finally:
        notifier.close()


@pytest.mark.parametrize("style", ["generic", "wecom", "dingtalk", "feishu", "slack"])
def test_every_request_carries_the_idempotency_key_and_utf8_json(style):
    req = _build(style)
    assert req.headers["Idempotency-Key"] == "ticket-1042-escalated-2"
    assert req.headers["Content-Type"] == "application/json; charset=utf-8"
    assert "图书馆".encode() in req.body  # Chinese sent as UTF-8, not \u escapes
    json.loads(req.body)


def test_generic_is_the_notice_signed_over_timestamp_dot_body():
    req = _build("generic", SECRET)
    assert json.loads(req.body) == asdict(NOTICE)
    assert req.headers["X-Campus-Timestamp"] == "1714953600"
    expected = hmac.new(SECRET.encode(), b"1714953600." + req.body, hashlib.sha256).hexdigest()
    assert req.headers["X-Campus-Signature"] == f"sha256={expected}"


def test_generic_without_secret_is_not_signed():
    req = _build("generic")
    assert "X-Campus-Signature" not in req.headers
    assert "X-Campus-Timestamp" not in req.headers


def test_dingtalk_markdown_and_signature_in_the_query():
    req = _build("dingtalk", SECRET, url="https://oapi.dingtalk.com/robot/send?access_token=abc")
    body = json.loads(req.body)
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == NOTICE.title
    text = body["markdown"]["text"]
    assert text.startswith(f"#### {NOTICE.title}\n\n")
    assert "楼宇：图书馆\n\n负责人：未指派" in text

    parts = urlsplit(req.url)
    query = parse_qs(parts.query)
    assert query["access_token"] == ["abc"]
    assert query["timestamp"] == ["1714953600250"]  # milliseconds
    # Documented: sign = urlEncode(base64(HmacSHA256(key=secret, timestamp + "\n" + secret)))
    string_to_sign = f"1714953600250\n{SECRET}".encode()
    digest = hmac.new(SECRET.encode(), string_to_sign, hashlib.sha256).digest()
    assert query["sign"] == [base64.b64encode(digest).decode()]
    raw_sign = parts.query.split("sign=")[1]
    assert all(c not in raw_sign for c in "+/=")  # URL-encoded, so '+' is not read as space


def test_feishu_post_with_signature_in_the_body():
    req = _build("feishu", SECRET)
    body = json.loads(req.body)
    assert body["timestamp"] == "1714953600"  # seconds, as text
    # Documented: HmacSHA256 keyed with timestamp + "\n" + secret over an empty message.
    key = f"1714953600\n{SECRET}".encode()
    expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert body["sign"] == expected
    swapped = hmac.new(SECRET.encode(), key, hashlib.sha256).digest()  # DingTalk's order
    assert body["sign"] != base64.b64encode(swapped).decode()
    assert body["msg_type"] == "post"
    post = body["content"]["post"]["zh_cn"]
    assert post["title"] == NOTICE.title
    assert post["content"] == [[{"tag": "text", "text": line}] for line in NOTICE.body.splitlines()]


def test_feishu_english_notice_uses_the_english_locale():
    notifier = WebhookNotifier("https://hook.example", "feishu")
    en = Notice(**(asdict(NOTICE) | {"language": "en", "title": "T", "body": "b"}))
    body = json.loads(notifier.build(en, now=NOW).body)
    assert list(body["content"]["post"]) == ["en_us"]
    assert "sign" not in body


def test_wecom_markdown_quotes_each_line_and_stays_under_4096_bytes():
    body = json.loads(_build("wecom").body)
    assert body["msgtype"] == "markdown"
    content = body["markdown"]["content"]
    assert content.splitlines() == [
        f'**<font color="warning">{NOTICE.title}</font>**',
        *[f"> {line}" for line in NOTICE.body.splitlines()],
    ]
    huge = Notice(**(asdict(NOTICE) | {"body": "水" * 3000}))
    content = json.loads(WebhookNotifier("https://h", "wecom").build(huge).body)["markdown"][
        "content"
    ]
    assert len(content.encode("utf-8")) <= 4096
    assert content.endswith("...")


def test_slack_has_fallback_text_header_and_escaped_mrkdwn():
    tricky = Notice(**(asdict(NOTICE) | {"title": "x" * 200, "body": "Pump <A> & B"}))
    body = json.loads(WebhookNotifier("https://hooks.slack.com/x", "slack").build(tricky).body)
    assert body["text"] == f"{'x' * 200}\nPump <A> & B"
    header, section = body["blocks"]
    assert header["type"] == "header" and header["text"]["type"] == "plain_text"
    assert len(header["text"]["text"]) <= 150
    assert section["text"] == {"type": "mrkdwn", "text": "Pump &lt;A&gt; &amp; B"}


def test_unknown_style_and_pointless_secret_are_refused():
    with pytest.raises(ValueError, match="wecom"):
        WebhookNotifier("https://h", "teams")
    with pytest.raises(ValueError, match="not signed"):
        WebhookNotifier("https://h", "slack", secret="s")


def test_email_message_id_follows_the_key():
    mail = EmailNotifier("h", 25, "ops@campus.example", ["a@x", "b@x"], starttls=False)
    first, retry = mail.build(NOTICE), mail.build(NOTICE)
    other = mail.build(Notice(**(asdict(NOTICE) | {"key": "ticket-1042-escalated-3"})))
    assert first["Message-ID"] == retry["Message-ID"] != other["Message-ID"]
    assert first["Message-ID"].endswith("@campus.example>")
    assert first["X-Campus-Ticket"] == "1042"
    assert first["Subject"] == NOTICE.title
    assert first["To"] == "a@x, b@x"
    assert first.get_content() == NOTICE.body + "\n"


def test_mqtt_topic_keeps_building_to_one_level():
    assert topic_for(NOTICE) == "ops/tickets/P1/图书馆"
    odd = Notice(**(asdict(NOTICE) | {"building": "A/B+#"}))
    assert topic_for(odd) == "ops/tickets/P1/A_B__"


def test_factory_builds_each_channel_type():
    hook = make_notifier({"type": "dingtalk", "url": "https://h", "secret": "s"})
    assert isinstance(hook, WebhookNotifier) and hook.style == "dingtalk"
    assert make_notifier({"type": "webhook", "url": "https://h"}).name == "webhook"
    mail = make_notifier(
        {"type": "email", "host": "h", "port": 25, "sender": "a@b", "recipients": ["c@d"]}
    )
    assert isinstance(mail, EmailNotifier) and mail.starttls is True
    mqtt = make_notifier({"type": "mqtt", "host": "127.0.0.1", "client_id": "x"})
    assert isinstance(mqtt, MqttNotifier) and mqtt.port == 1883


def test_factory_refuses_unknown_types_and_settings():
    with pytest.raises(ValueError, match=r"dingtalk.*email.*mqtt"):
        make_notifier({"type": "pager"})
    with pytest.raises(ValueError, match="needs url"):
        make_notifier({"type": "slack"})
    with pytest.raises(ValueError, match=r"unknown setting.*secrte"):
        make_notifier({"type": "feishu", "url": "https://h", "secrte": "s"})
