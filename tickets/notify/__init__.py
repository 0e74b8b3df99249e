"""Notifiers: one module per channel.

``make_notifier`` builds one from a channel's configuration, e.g.
``{"type": "dingtalk", "url": ..., "secret": ...}``,
``{"type": "email", "host": ..., "port": 587, "sender": ..., "recipients": [...],
"starttls": True}`` or ``{"type": "mqtt", "host": ..., "port": 1883,
"client_id": ...}`` or ``{"type": "influx", "url": ..., "database": ...}``
(ticket events as points of the ``tickets`` measurement). Webhook types are
``webhook`` (generic signed JSON), ``wecom``, ``dingtalk``, ``feishu`` and
``slack``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tickets.notify.base import Notice, Notifier, NotifyError
from tickets.notify.email import EmailNotifier
from tickets.notify.mqtt import MqttNotifier
from tickets.notify.templates import render
from tickets.notify.webhook import WebhookNotifier

__all__ = [
    "CHANNEL_TYPES",
    "EmailNotifier",
    "MqttNotifier",
    "Notice",
    "Notifier",
    "NotifyError",
    "WebhookNotifier",
    "make_notifier",
    "render",
]

_WEBHOOK_TYPES = {
    "webhook": "generic",
    "generic": "generic",
    "wecom": "wecom",
    "dingtalk": "dingtalk",
    "feishu": "feishu",
    "slack": "slack",
}
CHANNEL_TYPES = (*_WEBHOOK_TYPES, "email", "mqtt", "influx")


def _options(
    config: Mapping[str, Any], required: tuple[str, ...], optional: tuple[str, ...]
) -> dict[str, Any]:
    """The constructor arguments in ``config``; a missing or unknown key is a
    ValueError naming it, so a typo in a channel file fails at start-up."""
    kind = config["type"]
    missing = [k for k in required if k not in config]
    if missing:
        raise ValueError(f"{kind} channel needs {', '.join(missing)}")
    unknown = sorted(set(config) - {"type", *required, *optional})
    if unknown:
        raise ValueError(
            f"{kind} channel: unknown setting(s) {', '.join(unknown)}; "
            f"allowed: {', '.join((*required, *optional))}"
        )
    return {k: config[k] for k in (*required, *optional) if k in config}


def make_notifier(channel_config: Mapping[str, Any]) -> Notifier:
    """The notifier for one channel's configuration."""
    kind = channel_config.get("type")
    if kind in _WEBHOOK_TYPES:
        opts = _options(channel_config, ("url",), ("secret", "timeout"))
        return WebhookNotifier(style=_WEBHOOK_TYPES[kind], **opts)
    if kind == "email":
        opts = _options(
            channel_config,
            ("host", "port", "sender", "recipients"),
            ("starttls", "username", "password", "timeout"),
        )
        opts.setdefault("starttls", True)
        return EmailNotifier(**opts)
    if kind == "mqtt":
        opts = _options(
            channel_config,
            ("host", "client_id"),
            ("port", "timeout", "username", "password", "tls", "ca_file"),
        )
        opts.setdefault("port", 1883)
        return MqttNotifier(**opts)
    if kind == "influx":
        from tickets.notify.influx import InfluxNotifier

        opts = _options(
            channel_config, ("url", "database"), ("username", "password", "token", "timeout")
        )
        return InfluxNotifier(**opts)
    raise ValueError(f"unknown channel type {kind!r}; known: {', '.join(CHANNEL_TYPES)}")
