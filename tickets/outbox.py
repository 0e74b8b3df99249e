"""The transactional outbox: notices written with the ticket change they
announce, sent afterwards, at least once.

A ticket change and its notices commit together, so a notice exists exactly
when its change does. The dispatcher then sends what is due, records every
attempt, marks a notice sent only after its channel accepted it, and retries
what failed with a growing delay (5 s doubling to 10 min). A process that dies
between sending and marking sends the notice again on its next round, with
the same idempotency key (the ``Idempotency-Key`` header, the e-mail
``Message-ID``), so a receiver can drop the repeat. A channel that refuses for
good (a wrong signature, an unknown address) parks the notice as failed, with
the reason, for a person to see.

Channels are configured in ``config/notify.yaml``: a name, a notifier type
and its settings (``tickets.notify.make_notifier``), and which channels hear
of every change (``broadcast``). A setting ending in ``_env`` is read from
that environment variable (webhook URLs and secrets stay out of the file); a
channel whose variable is unset is left out, with a warning, so a
development machine runs without a WeCom group.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from campus.errors import ConfigError
from campus.yamlconf import Strict, load_located, validate
from tickets.db import Store
from tickets.models import Attempt, OutboxItem, Ticket
from tickets.notify import Notice, Notifier, NotifyError, make_notifier, render

log = logging.getLogger(__name__)

FIRST_RETRY = timedelta(seconds=5)
LAST_RETRY = timedelta(minutes=10)

# ticket event actions -> the notice event the templates know
NOTICE_EVENTS = {
    "open": "opened",
    "escalate": "escalated",
    "acknowledge": "acknowledged",
    "assign": "assigned",
    "resolve": "resolved",
    "close": "closed",
    "reopen": "reopened",
}


class NotifyFile(Strict):
    """``config/notify.yaml``."""

    channels: dict[str, dict[str, Any]] = {}
    broadcast: tuple[str, ...] = ()


@dataclass
class Channels:
    """The configured channels, ready to build notifiers from."""

    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    broadcast: tuple[str, ...] = ()

    def notifier(self, name: str, address: str | None) -> Notifier:
        """The notifier of channel ``name`` (an e-mail channel sends to ``address``)."""
        config = dict(self.configs[name])
        if config["type"] == "email" and address is not None:
            config["recipients"] = [address]
        return make_notifier(config)

    def kind(self, name: str) -> str:
        """The channel's notifier type (``email``, ``mqtt``, ``wecom``...)."""
        return str(self.configs[name]["type"])


def load_channels(
    path: Path, env: Mapping[str, str] | None = None, settings: Any = None
) -> Channels:
    """Read ``config/notify.yaml``; every channel is built once to check it.

    ``settings`` (:class:`campus.settings.Settings`) gives an ``mqtt`` channel
    its broker (with TLS and CA, and the login in ``CAMPUS_NOTIFY_MQTT_USERNAME``
    / ``_PASSWORD`` when set) and an ``influx`` channel its server and database
    when the file names none."""
    env = os.environ if env is None else env
    located = load_located(path)
    spec = validate(NotifyFile, located)
    configs: dict[str, dict[str, Any]] = {}
    issues = []
    for name, raw in spec.channels.items():
        config: dict[str, Any] = {}
        missing = []
        for key, value in raw.items():
            if key.endswith("_env"):
                if str(value) in env:
                    config[key[: -len("_env")]] = env[str(value)]
                else:
                    missing.append(str(value))
            else:
                config[key] = value
        if missing:
            log.warning("channel %s left out: %s not set", name, ", ".join(missing))
            continue
        if config.get("type") == "mqtt" and settings is not None and "host" not in config:
            # the platform's broker, over TLS when CAMPUS_MQTT_URL says mqtts://
            config["host"] = settings.mqtt.host
            config.setdefault("port", settings.mqtt.port)
            if settings.mqtt.tls:
                config.setdefault("tls", True)
                if settings.mqtt.ca_file is not None:
                    config.setdefault("ca_file", str(settings.mqtt.ca_file))
            # a secured broker gives the notices a login of their own (`campus broker
            # config` writes it into tickets.env): the broker takes the user name as
            # the client id, so sharing the ticket service's would knock it off
            if "CAMPUS_NOTIFY_MQTT_USERNAME" in env:
                config.setdefault("username", env["CAMPUS_NOTIFY_MQTT_USERNAME"])
                config.setdefault("password", env.get("CAMPUS_NOTIFY_MQTT_PASSWORD"))
        if config.get("type") == "mqtt" and settings is not None:
            config.setdefault("client_id", f"campus-tickets-notify-{os.getpid()}")
        if config.get("type") == "influx" and settings is not None:
            config.setdefault("url", settings.influx_url)
            config.setdefault("database", settings.influx_db)
            for key, value in (
                ("username", settings.influx_user),
                ("password", settings.influx_password),
                ("token", settings.influx_token),
            ):
                if value:
                    config.setdefault(key, value)
        try:
            probe = dict(config)
            if probe.get("type") == "email":
                probe.setdefault("recipients", ["check@example.org"])
            notifier = make_notifier(probe)
            close = getattr(notifier, "close", None)
            if close is not None:
                close()
        except (ValueError, TypeError) as exc:
            issues.append(located.issue(("channels", name), str(exc)))
            continue
        configs[name] = config
    for i, name in enumerate(spec.broadcast):
        if name not in spec.channels:
            issues.append(located.issue(("broadcast", i), f"no channel named {name!r}"))
    if issues:
        raise ConfigError(issues)
    return Channels(configs, tuple(n for n in spec.broadcast if n in configs))


def enqueue(
    s: Session,
    channels: Channels,
    ticket: Ticket,
    event_id: int,
    action: str,
    people: Sequence[Any],
    now: datetime,
    default_language: str = "zh",
) -> int:
    """Write the notices of one ticket event (``people``: technicians to reach
    on their own channels, besides the broadcast ones); returns how many."""
    event = NOTICE_EVENTS.get(action, "updated")
    rows: list[tuple[str, str | None, str | None, str]] = [
        (name, None, None, default_language) for name in channels.broadcast
    ]
    for person in people:
        for name in person.channels:
            if name not in channels.configs:
                continue
            address = person.email if channels.kind(name) == "email" else None
            rows.append((name, person.id, address, person.language.value))
    for name, recipient, address, language in rows:
        s.add(
            OutboxItem(
                key=f"ticket-{ticket.id}-event-{event_id}-{name}-{recipient or 'all'}",
                ticket_id=ticket.id,
                event=event,
                channel=name,
                recipient=recipient,
                address=address,
                language=language,
                created_at=now,
                next_attempt_at=now,
                attempts=0,
            )
        )
    return len(rows)


@dataclass
class Dispatcher:
    """Sends the outbox's due notices; :meth:`dispatch` is one round."""

    store: Store
    channels: Channels
    clock: Callable[[], datetime]
    # (ticket id, technician id) -> a signed link opening the ticket's page
    # (api.links.ticket_link); a notice to one technician carries theirs as ``url``
    link: Callable[[int, str], str] | None = None
    _notifiers: dict[tuple[str, str | None], Notifier] = field(default_factory=dict)

    def dispatch(self, limit: int = 100) -> int:
        """Send up to ``limit`` due notices; returns how many were sent.

        Each notice is sent and marked in a transaction of its own, so a
        process killed between sending and marking repeats one notice, not a
        round of them."""
        now = self.clock()
        due_q = (
            select(OutboxItem.id)
            .where(
                OutboxItem.sent_at.is_(None),
                OutboxItem.failed_at.is_(None),
                OutboxItem.next_attempt_at <= now,
            )
            .order_by(OutboxItem.id)
            .limit(limit)
        )
        with self.store.session() as s:
            due = list(s.scalars(due_q).all())
        sent = 0
        for item_id in due:
            with self.store.session() as s:
                q = select(OutboxItem).where(OutboxItem.id == item_id, OutboxItem.sent_at.is_(None))
                if s.get_bind().dialect.name == "postgresql":
                    q = q.with_for_update(skip_locked=True)  # two dispatchers share the work
                item = s.scalars(q).first()
                if item is None or item.failed_at is not None:
                    continue  # another dispatcher has it, or had it
                ticket = s.get(Ticket, item.ticket_id)
                assert ticket is not None  # a notice's ticket is never deleted
                sent += self._send(s, item, ticket)
        return sent

    def _send(self, s: Session, item: OutboxItem, ticket: Ticket) -> int:
        now = self.clock()
        item.attempts += 1
        if item.channel not in self.channels.configs:
            item.failed_at, item.last_error = now, f"channel {item.channel!r} is not configured"
            s.add(
                Attempt(outbox_id=item.id, at=now, ok=False, retryable=False, error=item.last_error)
            )
            return 0
        data = ticket.as_json()
        data["event_at"] = item.created_at.isoformat()  # when the change happened
        if item.recipient is not None and self.link is not None:
            data["url"] = self.link(ticket.id, item.recipient)  # theirs only: it opens the ticket
        title, body = render(item.event, data, item.language)
        notice = Notice(
            key=item.key,
            ticket_id=ticket.id,
            event=item.event,
            severity=ticket.severity,
            building=ticket.building,
            trade=ticket.trade,
            title=title,
            body=body,
            language=item.language,
            data=data,
        )
        try:
            self._notifier(item).send(notice)
        except NotifyError as exc:
            item.last_error = str(exc)
            s.add(
                Attempt(
                    outbox_id=item.id, at=now, ok=False, retryable=exc.retryable, error=str(exc)
                )
            )
            if exc.retryable:
                delay = min(FIRST_RETRY * 2 ** (item.attempts - 1), LAST_RETRY)
                item.next_attempt_at = now + delay
                log.warning("notice %s not sent (%s); retry in %s", item.key, exc, delay)
            else:
                item.failed_at = now
                log.error("notice %s refused for good: %s", item.key, exc)
            return 0
        item.sent_at = now
        s.add(Attempt(outbox_id=item.id, at=now, ok=True, retryable=False, error=None))
        return 1

    def _notifier(self, item: OutboxItem) -> Notifier:
        key = (item.channel, item.address)
        notifier = self._notifiers.get(key)
        if notifier is None:
            notifier = self.channels.notifier(item.channel, item.address)
            self._notifiers[key] = notifier
        return notifier

    def close(self) -> None:
        """Close the notifiers' connections."""
        for notifier in self._notifiers.values():
            close = getattr(notifier, "close", None)
            if close is not None:
                close()
        self._notifiers.clear()
