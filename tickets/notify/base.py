"""Types shared by every notification channel.

The ticket service writes one :class:`Notice` per recipient channel into its
transactional outbox and hands it to a :class:`Notifier`. A notifier either
returns (the channel accepted the message) or raises :class:`NotifyError`, whose
``retryable`` flag tells the outbox whether sending the same notice again later
may succeed. A retry reuses the notice's ``key``, so every channel that can carry
an idempotency key or message id carries this one, and receivers can drop the
duplicates that at-least-once delivery brings.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Protocol, runtime_checkable

EVENTS = (
    "opened",
    "escalated",
    "acknowledged",
    "assigned",
    "resolved",
    "closed",
    "reopened",
    "updated",
)
SEVERITIES = ("P1", "P2", "P3", "P4")


@dataclass(frozen=True)
class Notice:
    """One message about one ticket change, rendered for one channel's audience."""

    key: str  # idempotency key: the same for every retry of one notice
    ticket_id: int
    event: str  # one of EVENTS
    severity: str  # P1..P4 (P1 most urgent)
    building: str
    trade: str  # plumbing | electrical | hvac | general
    title: str  # already rendered in the recipient's language
    body: str  # already rendered, plain text, may hold several lines
    language: str  # "zh" or "en"
    data: dict[str, Any]  # the ticket as JSON (for generic webhook and MQTT)


class NotifyError(Exception):
    """A notice was not delivered.

    ``retryable`` is True when the same notice may get through later (the server
    was down, slow, overloaded or rate limiting) and False when sending it again
    unchanged cannot help (refused address, bad credentials, bad configuration),
    so the outbox can park it for a person instead of retrying forever.
    """

    def __init__(self, channel: str, message: str, *, retryable: bool) -> None:
        super().__init__(f"{channel}: {message}")
        self.channel = channel
        self.retryable = retryable


@runtime_checkable
class Notifier(Protocol):
    """A channel: ``send`` returns once the channel has accepted the notice."""

    name: str

    def send(self, notice: Notice) -> None:
        """Deliver ``notice``; raise :class:`NotifyError` on failure."""
        ...


def notice_json(notice: Notice) -> bytes:
    """The notice as compact UTF-8 JSON (Chinese kept as is, not ``\\u`` escaped).

    Values the ticket JSON cannot hold natively (a datetime left in ``data``)
    are written as text rather than failing the send.
    """
    text = json.dumps(asdict(notice), ensure_ascii=False, separators=(",", ":"), default=str)
    return text.encode("utf-8")
