"""The ticket store's tables (SQLAlchemy 2.0), the same on SQLite and PostgreSQL.

The schema is created and changed only by the Alembic migrations in
``tickets/migrations``; these classes are what the code reads and writes.
Times are stored in UTC (timezone-aware on PostgreSQL, naive UTC on SQLite,
both read back as aware by :class:`UtcDateTime`).

Two rules live in the database itself, so that no second process can break them:

* at most one ticket that is not closed per dedup key (a partial unique index,
  ``WHERE state <> 'closed'``): two services raising the same alert at the
  same instant update one ticket instead of opening two;
* the event log is append-only: the code never updates or deletes an event
  (and the migrations add no cascade that would).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from tickets.enums import Role, Source, State  # noqa: F401  (re-exported: imported from here too)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the ticket store; use UTC-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with constraint names Alembic can find again."""

    metadata = MetaData(naming_convention=NAMING)


class Team(Base):
    """A repair team of one trade (loaded from ``config/oncall.yaml``)."""

    __tablename__ = "teams"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    trade: Mapped[str] = mapped_column(String(32))


class Technician(Base):
    """A person who repairs things (loaded from ``config/oncall.yaml``)."""

    __tablename__ = "technicians"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    team_id: Mapped[str | None] = mapped_column(ForeignKey("teams.id"))
    language: Mapped[str] = mapped_column(String(8), default="zh")
    email: Mapped[str | None] = mapped_column(String(320))


class Contractor(Base):
    """An outside firm that takes repairs (loaded from ``config/oncall.yaml``)."""

    __tablename__ = "contractors"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    trades: Mapped[str] = mapped_column(String(200), default="")  # comma-separated
    email: Mapped[str | None] = mapped_column(String(320))


class Ticket(Base):
    """One repair job, from the alert (or report) that raised it to its closing."""

    __tablename__ = "tickets"
    __table_args__ = (
        # one ticket that is not closed per dedup key, enforced by the database
        Index(
            "uq_tickets_open_dedup_key",
            "dedup_key",
            unique=True,
            sqlite_where=text("state <> 'closed'"),
            postgresql_where=text("state <> 'closed'"),
        ),
        Index("ix_tickets_state", "state"),
        Index("ix_tickets_building", "building"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    dedup_key: Mapped[str] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default=State.open.value)
    severity: Mapped[str] = mapped_column(String(2))
    building: Mapped[str] = mapped_column(String(64))
    device: Mapped[str | None] = mapped_column(String(64))
    trade: Mapped[str] = mapped_column(String(32))
    rule: Mapped[str | None] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    count: Mapped[int] = mapped_column(Integer, default=1)
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    assigned_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # SLA: deadlines from config/oncall.yaml, and when each was missed
    ack_due: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolve_due: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ack_breached_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolve_breached_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    technician_id: Mapped[str | None] = mapped_column(ForeignKey("technicians.id"))
    contractor_id: Mapped[str | None] = mapped_column(ForeignKey("contractors.id"))
    reopen_count: Mapped[int] = mapped_column(Integer, default=0)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    # telemetry verification: whether the raising alert still fires, and since
    # when it has been clear (a rule ticket closes itself only after it stayed clear)
    alert_firing: Mapped[bool] = mapped_column(default=True)
    clear_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # public status board: a ticket staff marked internal is never shown there;
    # ``public_note`` is the occupants' notice staff wrote (else one is derived)
    internal: Mapped[bool] = mapped_column(Boolean, default=False)
    public_note: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)

    events: Mapped[list[Event]] = relationship(
        back_populates="ticket", order_by="Event.id", lazy="selectin"
    )
    comments: Mapped[list[Comment]] = relationship(
        back_populates="ticket", order_by="Comment.id", lazy="selectin"
    )

    __mapper_args__ = {"version_id_col": version}

    def as_json(self) -> dict[str, Any]:
        """The ticket as plain JSON (CLI ``--json``, the API, notifications)."""
        out: dict[str, Any] = {}
        for col in self.__table__.columns:
            value = getattr(self, col.key)
            out[col.key] = value.isoformat() if isinstance(value, datetime) else value
        out["assignee"] = self.technician_id or self.contractor_id
        return out


class Event(Base):
    """One entry of a ticket's append-only history: who did what, when, and
    from which state to which."""

    __tablename__ = "ticket_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(16))
    to_state: Mapped[str | None] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    ticket: Mapped[Ticket] = relationship(back_populates="events")

    def as_json(self) -> dict[str, Any]:
        """The event as plain JSON."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "from": self.from_state,
            "to": self.to_state,
            "detail": self.detail,
        }


class Comment(Base):
    """A note on a ticket by a person."""

    __tablename__ = "ticket_comments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    author: Mapped[str] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)

    ticket: Mapped[Ticket] = relationship(back_populates="comments")


class OutboxItem(Base):
    """One notice to send: written in the same transaction as the ticket change
    it announces, sent afterwards, at least once (the key is its idempotency key)."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "sent_at", "failed_at", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), unique=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    event: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(64))
    recipient: Mapped[str | None] = mapped_column(String(64))  # technician id
    address: Mapped[str | None] = mapped_column(String(320))  # e-mail address
    language: Mapped[str] = mapped_column(String(8))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # refused for good
    last_error: Mapped[str | None] = mapped_column(Text)


class Attempt(Base):
    """One try at sending an outbox item, and how it went."""

    __tablename__ = "notify_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    ok: Mapped[bool] = mapped_column(Boolean)
    retryable: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text)


class User(Base):
    """An account of the API; a technician's account names their on-call entry."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    technician_id: Mapped[str | None] = mapped_column(ForeignKey("technicians.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class ApiToken(Base):
    """A bearer token of a user, kept only as its SHA-256 digest (a token is 32
    random bytes, so a fast hash is enough: there is nothing to guess)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    label: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class AlertRecord(Base):
    """The latest state of one alert (a rule on a device), as the ticket service
    received it from ``ops/alerts/#``: what ``/api/alerts`` lists."""

    __tablename__ = "alerts"
    __table_args__ = (Index("ix_alerts_state", "state"), Index("ix_alerts_building", "building"))

    dedup_key: Mapped[str] = mapped_column(String(300), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # firing | resolved
    rule: Mapped[str | None] = mapped_column(String(64))
    building: Mapped[str] = mapped_column(String(64))
    device: Mapped[str | None] = mapped_column(String(64))
    metric: Mapped[str | None] = mapped_column(String(64))
    value: Mapped[float | None] = mapped_column(Float)
    severity: Mapped[str] = mapped_column(String(2))
    trade: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(String(300))
    fired_at: Mapped[datetime] = mapped_column(UtcDateTime)  # when this firing began
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)  # the latest state change
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Feedback(Base):
    """One anonymous report from a student or member of staff. No address or
    other identifier of the sender is stored; ``contact`` is only what they
    chose to give. ``receipt_digest`` is the SHA-256 of the receipt token they
    were given, which is all that follows the case without an account."""

    __tablename__ = "feedback"
    __table_args__ = (Index("ix_feedback_place", "building", "category", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    receipt_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    category: Mapped[str] = mapped_column(String(32))
    building: Mapped[str] = mapped_column(String(64))
    room: Mapped[str | None] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    contact: Mapped[str | None] = mapped_column(String(200))
    photo: Mapped[str | None] = mapped_column(String(200))  # file name under var/feedback/
    language: Mapped[str] = mapped_column(String(8), default="zh")
    status: Mapped[str] = mapped_column(String(16), default="received")  # received|linked|closed
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    alert_key: Mapped[str | None] = mapped_column(String(300))
    rating: Mapped[int | None] = mapped_column(Integer)  # 1-5, asked once the ticket closes
    rated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
