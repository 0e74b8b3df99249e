"""Incoming-webhook notifiers: a generic signed JSON POST and four chat platforms.

One class serves every style because they differ only in the message body, how
the request is signed and how the answer says "refused": WeCom, DingTalk and
Feishu answer HTTP 200 with a non-zero ``errcode``/``code`` in the JSON body when
they refuse a message, so a 200 alone is not success for them.

Formats and signing rules, as the platforms document them:

* WeCom group robot, ``msgtype: markdown`` (content at most 4096 bytes of
  UTF-8; no signing, the key in the URL is the credential):
  https://developer.work.weixin.qq.com/document/path/91770 ; rate limit 20
  messages a minute, errcode 45009 "api freq out of limit" (global error codes:
  https://developer.work.weixin.qq.com/document/path/90313).
* DingTalk custom robot, ``msgtype: markdown`` with ``title`` and ``text``:
  https://open.dingtalk.com/document/robots/custom-robot-access ; signing
  ("加签"): string_to_sign = f"{timestamp}\\n{secret}", HmacSHA256 keyed with
  the secret, Base64, then URL-encoded, sent as the query parameters
  ``timestamp`` (milliseconds, within an hour of DingTalk's clock) and ``sign``:
  https://open.dingtalk.com/document/robots/customize-robot-security-settings ;
  20 messages a minute, over that errcode 130101 "send too fast".
* Feishu custom bot, ``msg_type: post`` (rich text, per-locale title and
  lines); signing: HmacSHA256 keyed with f"{timestamp}\\n{secret}" over an
  empty message, Base64, sent in the body as ``timestamp`` (seconds) and
  ``sign``; answers ``{"code": 0, ...}`` on success, 19021 for a bad signature,
  11232 when rate limited (100 a minute, 5 a second):
  https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot
  (frequency limits, code 99991400: https://open.feishu.cn/document/server-docs/api-call-guide/frequency-control).
* Slack incoming webhook: ``text`` (the notification fallback) and ``blocks``
  (a ``header`` of plain text, at most 150 characters, and a ``section`` of
  mrkdwn, at most 3000, with ``&``, ``<`` and ``>`` escaped); answers ``ok``
  with 200, errors with 4xx and a short text, 429 when rate limited:
  https://api.slack.com/messaging/webhooks
* generic: the :class:`Notice` as JSON; with a secret, ``X-Campus-Timestamp``
  (Unix seconds) and ``X-Campus-Signature: sha256=<hex>``, the HMAC-SHA256 of
  f"{timestamp}.{body}" keyed with the secret, so a receiver can check both the
  sender and the age of the request.

Every request carries ``Idempotency-Key: <notice.key>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import httpx

from tickets.notify.base import Notice, NotifyError, notice_json

STYLES = ("generic", "wecom", "dingtalk", "feishu", "slack")
_SIGNED = ("generic", "dingtalk", "feishu")

# Non-zero codes in a 200 answer that mean "later", not "never".
_RETRYABLE_CODES: dict[str, frozenset[int]] = {
    "wecom": frozenset({-1, 45009}),  # -1: system busy; 45009: rate limited
    "dingtalk": frozenset({-1, 130101}),  # -1: system busy; 130101: send too fast
    "feishu": frozenset({11232, 99991400}),  # both: frequency limited
}
WECOM_MAX_BYTES = 4096
SLACK_HEADER_MAX = 150
SLACK_SECTION_MAX = 3000


@dataclass(frozen=True)
class WebhookRequest:
    """What will be POSTed: built apart from sending so formats can be checked."""

    url: str
    headers: dict[str, str]
    body: bytes


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's ``sign`` before URL encoding: Base64 of
    HMAC-SHA256(key=secret, msg=f"{timestamp_ms}\\n{secret}")."""
    digest = hmac.new(
        secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return base64.b64encode(digest).decode("ascii")


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu's ``sign``: Base64 of HMAC-SHA256(key=f"{timestamp_s}\\n{secret}",
    msg=b""). The key and message are the other way round from DingTalk's."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def generic_signature(secret: str, timestamp_s: int, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, f"{timestamp}.{body}")."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp_s}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def _truncate_bytes(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes without splitting a character."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[: limit - 3].decode("utf-8", "ignore") + "..."


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _slack_escape(text: str) -> str:
    """Slack reads ``&``, ``<`` and ``>`` as control characters in text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _urgent(notice: Notice) -> bool:
    return notice.severity in ("P1", "P2") and notice.event in ("opened", "escalated", "reopened")


class WebhookNotifier:
    """POSTs notices to one incoming-webhook URL in one platform's format."""

    def __init__(
        self,
        url: str,
        style: str,
        secret: str | None = None,
        timeout: float = 10.0,
        client: httpx.Client | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if style not in STYLES:
            raise ValueError(f"unknown webhook style {style!r}; known: {', '.join(STYLES)}")
        if secret and style not in _SIGNED:
            # A configuration that believes its messages are signed, but they are not.
            raise ValueError(f"{style} webhooks are not signed; drop the secret")
        self.url = url
        self.style = style
        self.secret = secret or None
        self.timeout = timeout
        self.name = "webhook" if style == "generic" else style
        self._clock = clock
        self._own_client = client is None
        self._http = client if client is not None else httpx.Client(timeout=timeout)

    def close(self) -> None:
        """Close the connection pool, unless the caller lent it."""
        if self._own_client:
            self._http.close()

    def __enter__(self) -> WebhookNotifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --------------------------------------------------------------- formats

    def build(self, notice: Notice, now: float | None = None) -> WebhookRequest:
        """The request for ``notice`` (``now``: Unix time for the signatures)."""
        at = self._clock() if now is None else now
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": notice.key,
        }
        url = self.url
        if self.style == "generic":
            body = notice_json(notice)
            if self.secret:
                stamp = int(at)
                headers["X-Campus-Timestamp"] = str(stamp)
                headers["X-Campus-Signature"] = generic_signature(self.secret, stamp, body)
        elif self.style == "wecom":
            body = _json(self._wecom(notice))
        elif self.style == "dingtalk":
            body = _json(self._dingtalk(notice))
            if self.secret:
                stamp_ms = int(at * 1000)
                sign = quote_plus(dingtalk_sign(self.secret, stamp_ms))
                url += ("&" if "?" in url else "?") + f"timestamp={stamp_ms}&sign={sign}"
        elif self.style == "feishu":
            payload = self._feishu(notice)
            if self.secret:
                stamp = int(at)
                payload = {
                    "timestamp": str(stamp),
                    "sign": feishu_sign(self.secret, stamp),
                } | payload
            body = _json(payload)
        else:
            body = _json(self._slack(notice))
        return WebhookRequest(url=url, headers=headers, body=body)

    @staticmethod
    def _wecom(notice: Notice) -> dict[str, Any]:
        color = "warning" if _urgent(notice) else "info"
        lines = [f'**<font color="{color}">{notice.title}</font>**']
        lines += [f"> {line}" if line else ">" for line in notice.body.splitlines()]
        content = _truncate_bytes("\n".join(lines), WECOM_MAX_BYTES)
        return {"msgtype": "markdown", "markdown": {"content": content}}

    @staticmethod
    def _dingtalk(notice: Notice) -> dict[str, Any]:
        # DingTalk's markdown joins single newlines into one paragraph.
        text = "\n\n".join([f"#### {notice.title}", *notice.body.splitlines()])
        return {"msgtype": "markdown", "markdown": {"title": notice.title, "text": text}}

    @staticmethod
    def _feishu(notice: Notice) -> dict[str, Any]:
        locale = "zh_cn" if notice.language == "zh" else "en_us"
        rows = [[{"tag": "text", "text": line}] for line in notice.body.splitlines()]
        post = {locale: {"title": notice.title, "content": rows}}
        return {"msg_type": "post", "content": {"post": post}}

    @staticmethod
    def _slack(notice: Notice) -> dict[str, Any]:
        return {
            "text": f"{notice.title}\n{notice.body}",
            "blocks": [
                {
                    "type": "header",
                    "text": {
                        "type": "plain_text",
                        "text": _truncate(notice.title, SLACK_HEADER_MAX),
                    },
                },
                {
                    "type": "section",
                    "text": {
                        "type": "mrkdwn",
                        "text": _truncate(_slack_escape(notice.body), SLACK_SECTION_MAX),
                    },
                },
            ],
        }

    # ------------------------------------------------------------------ send

    def send(self, notice: Notice) -> None:
        """POST the notice; raise :class:`NotifyError` unless the platform took it."""
        request = self.build(notice)
        try:
            resp = self._http.post(
                request.url, content=request.body, headers=request.headers, timeout=self.timeout
            )
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            raise NotifyError(self.name, f"bad webhook URL: {exc}", retryable=False) from exc
        except httpx.TimeoutException as exc:
            raise NotifyError(
                self.name, f"no answer within {self.timeout:g} s ({exc!r})", retryable=True
            ) from exc
        except httpx.HTTPError as exc:
            raise NotifyError(self.name, f"unreachable: {exc!r}", retryable=True) from exc
        self._check(resp)

    def _check(self, resp: httpx.Response) -> None:
        status = resp.status_code
        if status == 429 or status >= 500:
            raise NotifyError(self.name, f"HTTP {status}: {resp.text[:200]!r}", retryable=True)
        if not 200 <= status < 300:
            raise NotifyError(self.name, f"HTTP {status}: {resp.text[:200]!r}", retryable=False)
        if self.style not in _RETRYABLE_CODES:
            return
        try:
            answer = resp.json()
        except ValueError as exc:
            raise NotifyError(
                self.name,
                f"HTTP {status} without a JSON answer: {resp.text[:200]!r}",
                retryable=False,
            ) from exc
        if not isinstance(answer, dict):
            raise NotifyError(self.name, f"unexpected answer {answer!r:.200}", retryable=False)
        # Feishu's older answers use StatusCode/StatusMessage instead of code/msg.
        raw_code: Any = answer.get("errcode", answer.get("code", answer.get("StatusCode", 0)))
        message = answer.get("errmsg", answer.get("msg", answer.get("StatusMessage", "")))
        try:
            code = int(raw_code)
        except (TypeError, ValueError):
            code = -2  # not a number: no success either
        if code != 0:
            raise NotifyError(
                self.name,
                f"refused with code {code}: {str(message)[:200]}",
                retryable=code in _RETRYABLE_CODES[self.style],
            )
