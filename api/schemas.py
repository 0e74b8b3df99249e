"""What the API reads and writes: input models refuse unknown fields (no mass
assignment), output models name every field they show (no over-exposure)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tickets.models import Comment, Event, Ticket

Severity = Literal["P1", "P2", "P3", "P4"]
Trade = Literal["plumbing", "electrical", "hvac", "general"]
Id = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")


class In(BaseModel):
    """A request body: unknown fields are an error, naming the field."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class TicketCreate(In):
    """A ticket raised by a person (a call to the facilities office, a technician's round)."""

    building: str = Id
    trade: Trade
    severity: Severity = "P3"
    title: str = Field(min_length=1, max_length=300)
    description: str = Field("", max_length=10_000)
    device: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    dedup_key: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="Sent again, the same key updates the open ticket instead of opening "
        "another: a client that retries after a 503 uses one key per report.",
    )


class Note(In):
    """An optional note with a transition."""

    note: str = Field("", max_length=10_000)


class Reason(In):
    """Why a ticket is reopened."""

    reason: str = Field(min_length=1, max_length=10_000)


class CloseIn(In):
    """Close a resolved ticket (``force``: before telemetry verified the repair)."""

    force: bool = False


class AssignIn(In):
    """Give a ticket to exactly one technician or one contractor."""

    technician: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    contractor: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")

    @model_validator(mode="after")
    def _one(self) -> AssignIn:
        if (self.technician is None) == (self.contractor is None):
            raise ValueError("give exactly one of technician or contractor")
        return self


class CommentIn(In):
    """A note by the caller."""

    text: str = Field(min_length=1, max_length=10_000)


class TicketOut(BaseModel):
    """A ticket as the API shows it."""

    id: int
    state: str
    severity: str
    source: str
    building: str
    device: str | None
    trade: str
    rule: str | None
    title: str
    description: str
    count: int
    assignee: str | None
    first_seen: datetime
    last_seen: datetime
    opened_at: datetime
    acknowledged_at: datetime | None
    assigned_at: datetime | None
    started_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    ack_due: datetime | None
    resolve_due: datetime | None
    ack_breached_at: datetime | None
    resolve_breached_at: datetime | None
    escalation_level: int
    reopen_count: int
    alert_firing: bool

    @classmethod
    def of(cls, t: Ticket) -> TicketOut:
        fields = {name: getattr(t, name) for name in cls.model_fields if name != "assignee"}
        return cls(assignee=t.technician_id or t.contractor_id, **fields)


class EventOut(BaseModel):
    """One entry of a ticket's history."""

    at: datetime
    actor: str
    action: str
    from_state: str | None
    to_state: str | None
    detail: dict[str, Any]

    @classmethod
    def of(cls, e: Event) -> EventOut:
        return cls(
            at=e.at,
            actor=e.actor,
            action=e.action,
            from_state=e.from_state,
            to_state=e.to_state,
            detail=e.detail or {},
        )


class CommentOut(BaseModel):
    """A note on a ticket."""

    at: datetime
    author: str
    text: str

    @classmethod
    def of(cls, c: Comment) -> CommentOut:
        return cls(at=c.at, author=c.author, text=c.text)


class TicketDetail(TicketOut):
    """A ticket with its history and notes."""

    events: list[EventOut]
    comments: list[CommentOut]

    @classmethod
    def of(cls, t: Ticket) -> TicketDetail:
        base = TicketOut.of(t).model_dump()
        return cls(
            **base,
            events=[EventOut.of(e) for e in t.events],
            comments=[CommentOut.of(c) for c in t.comments],
        )


class TicketPage(BaseModel):
    """One page of tickets, newest first."""

    items: list[TicketOut]
    total: int
    limit: int
    offset: int


class Created(BaseModel):
    """What raising a ticket did."""

    id: int
    created: bool = Field(description="False: the key's open ticket was updated instead.")
    ticket: TicketOut


class Problem(BaseModel):
    """An error answer."""

    detail: str
