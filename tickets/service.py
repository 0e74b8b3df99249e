"""The ticket lifecycle: raising (with dedup), the transitions people make, and
closing by telemetry.

::

    open -> acknowledged -> assigned -> in_progress -> resolved -> closed
                                  ^ (reassign)          |  ^         |
                                                         +--+-reopen-+

Every change appends an event (who, what, when, from which state to which) in
the same transaction as the change. A transition the lifecycle does not allow
is refused with :class:`InvalidTransition`, which says what the ticket's state
is and what to do first; nothing is written then.

**Dedup.** An alert names a dedup key (the rules engine's ``rule:device``).
While a ticket with that key is not closed, a new alert updates it (count,
last seen, severity raised when more urgent, and a resolved ticket reopened)
instead of opening another. The database holds at most one such ticket per
key (a partial unique index), so two services raising the same alert at the
same instant cannot both insert: the loser's insert fails, and it updates the
winner's ticket instead.

**Verified by telemetry.** A ticket raised by a rule is closed only once its
rule has stayed clear for ``verify_clear`` after the technician resolved it
(:meth:`Tickets.verify`, called by the ticket service's clock). A person may
not close it earlier without ``force``; a new firing reopens it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, false, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, raiseload
from sqlalchemy.orm.exc import StaleDataError

from campus.errors import CampusError
from tickets.db import Store
from tickets.models import Comment, Contractor, Event, Source, State, Team, Technician, Ticket
from tickets.oncall import OnCall, Role
from tickets.oncall import Technician as OnCallTechnician
from tickets.oncall import UnknownPerson as OnCallUnknown
from tickets.outbox import Channels, enqueue

SEVERITIES = ("P1", "P2", "P3", "P4")  # P1 most urgent
TRADES = ("plumbing", "electrical", "hvac", "general")
RAISE_ATTEMPTS = 8  # a raise that loses a race retries as an update


class TicketError(CampusError):
    """A ticket operation that cannot be done, with the reason."""


class TicketNotFound(TicketError):
    """No ticket has that id."""


class InvalidTransition(TicketError):
    """The lifecycle does not allow this action from the ticket's state."""


class UnknownPerson(TicketError):
    """A technician, contractor or team id that the store does not know."""


# action -> (states it may start from, state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[State], State]] = {
    "acknowledge": (frozenset({State.open}), State.acknowledged),
    "assign": (
        frozenset({State.acknowledged, State.assigned, State.in_progress}),
        State.assigned,
    ),
    "start": (frozenset({State.assigned}), State.in_progress),
    "resolve": (
        frozenset({State.acknowledged, State.assigned, State.in_progress}),
        State.resolved,
    ),
    "close": (frozenset({State.resolved}), State.closed),
    "reopen": (frozenset({State.resolved, State.closed}), State.open),
}

# what to do first, when an action is refused from a state
_HINTS = {
    (State.open, "assign"): "acknowledge it first",
    (State.open, "start"): "acknowledge and assign it first",
    (State.open, "resolve"): "acknowledge it first",
    (State.acknowledged, "start"): "assign it first",
}


# Lists show tickets, not their histories: loading every listed ticket's events
# and comments was 40 % of a ticket page's time (docs/performance.md); reading
# them from a listed ticket is an error rather than a query per ticket.
WITHOUT_HISTORY = (raiseload(Ticket.events), raiseload(Ticket.comments))


def utcnow() -> datetime:
    """The current time, UTC-aware."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Alert:
    """What asks for a ticket: a rule's firing, an anomaly, triaged feedback or a person."""

    dedup_key: str
    source: Source
    severity: str
    building: str
    trade: str
    title: str
    at: datetime
    description: str = ""
    device: str | None = None
    rule: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if not self.dedup_key or len(self.dedup_key) > 300:
            problems.append("dedup_key must be 1-300 characters")
        if self.severity not in SEVERITIES:
            problems.append(f"severity {self.severity!r} is not one of {', '.join(SEVERITIES)}")
        if self.trade not in TRADES:
            problems.append(f"trade {self.trade!r} is not one of {', '.join(TRADES)}")
        if not self.building:
            problems.append("building is empty")
        if not self.title.strip():
            problems.append("title is empty")
        if self.at.tzinfo is None:
            problems.append("at must be a UTC-aware time")
        if problems:
            raise TicketError("alert refused: " + "; ".join(problems))

    @classmethod
    def from_rule_event(cls, doc: Mapping[str, Any]) -> Alert:
        """An alert from a ``firing`` document of ``ops/alerts/#`` (rules engine)."""
        try:
            return cls(
                dedup_key=str(doc["dedup_key"]),
                source=Source.rule,
                severity=str(doc["severity"]),
                building=str(doc["building"]),
                trade=str(doc["trade"]),
                title=str(doc["title"]),
                description=_describe(doc),
                device=doc.get("device"),
                rule=doc.get("rule"),
                at=datetime.fromtimestamp(int(doc["ts_ms"]) / 1000, UTC),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TicketError(f"alert document refused: {exc!r}") from None


def _describe(doc: Mapping[str, Any]) -> str:
    """A ticket's description from an alert: its text, what the rule saw (an
    anomaly alert says what the model expected and why) and its plot, if any."""
    parts = [str(doc.get(k)) for k in ("text", "detail") if doc.get(k)]
    if doc.get("plot"):
        parts.append(f"Plot of the last day: {doc['plot']}")
    return "\n\n".join(parts)


@dataclass(frozen=True)
class Raised:
    """What :meth:`Tickets.raise_alert` did."""

    ticket_id: int
    created: bool
    reopened: bool = False
    severity_raised: bool = False


@dataclass
class Tickets:
    """Ticket operations on a :class:`~tickets.db.Store`; each is one transaction."""

    store: Store
    verify_clear: timedelta = timedelta(minutes=15)
    clock: Callable[[], datetime] = field(default=utcnow)
    oncall: OnCall | None = None  # SLA deadlines and escalation; none without it
    channels: Channels | None = None  # notices into the outbox; none without it

    # ------------------------------------------------------------------ people

    def upsert_people(
        self,
        teams: Iterable[Mapping[str, Any]] = (),
        technicians: Iterable[Mapping[str, Any]] = (),
        contractors: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        """Create or update teams, technicians and contractors (from on-call config)."""
        with self.store.session() as s:
            for t in teams:
                s.merge(Team(id=t["id"], name=t["name"], trade=t["trade"]))
            s.flush()
            for p in technicians:
                s.merge(
                    Technician(
                        id=p["id"],
                        name=p["name"],
                        team_id=p.get("team"),
                        language=p.get("language", "zh"),
                        email=p.get("email"),
                    )
                )
            for c in contractors:
                s.merge(
                    Contractor(
                        id=c["id"],
                        name=c["name"],
                        trades=",".join(c.get("trades", ())),
                        email=c.get("email"),
                    )
                )

    def use_oncall(self, oncall: OnCall) -> None:
        """Take SLAs, escalation and ``verify_clear`` from ``oncall`` and load its
        teams, technicians and contractors into the store."""
        cfg = oncall.config
        self.oncall = oncall
        self.verify_clear = cfg.verify_clear
        self.upsert_people(
            teams=[{"id": t.id, "name": t.name, "trade": t.trade.value} for t in cfg.teams],
            technicians=[
                {
                    "id": p.id,
                    "name": p.name,
                    "team": p.team,
                    "language": p.language.value,
                    "email": p.email,
                }
                for p in cfg.technicians
            ],
            contractors=[
                {
                    "id": c.id,
                    "name": c.name,
                    "trades": [t.value for t in c.trades],
                    "email": c.email,
                }
                for c in cfg.contractors
            ],
        )

    # ----------------------------------------------------------------- raising

    def raise_alert(self, alert: Alert, actor: str = "rules") -> Raised:
        """Open a ticket for ``alert``, or update the one not closed with its key."""
        for _ in range(RAISE_ATTEMPTS):
            try:
                with self.store.session() as s:
                    return self._raise(s, alert, actor)
            except (IntegrityError, StaleDataError):
                continue  # another writer got there first: update its ticket instead
        raise TicketError(f"could not raise {alert.dedup_key!r}: the store stayed busy")

    def _raise(self, s: Session, alert: Alert, actor: str) -> Raised:
        ticket = self._open_by_key(s, alert.dedup_key)
        if ticket is None:
            ticket = Ticket(
                dedup_key=alert.dedup_key,
                source=alert.source.value,
                state=State.open.value,
                severity=alert.severity,
                building=alert.building,
                device=alert.device,
                trade=alert.trade,
                rule=alert.rule,
                title=alert.title[:300],
                description=alert.description,
                count=1,
                first_seen=alert.at,
                last_seen=alert.at,
                opened_at=self.clock(),
                alert_firing=alert.source is Source.rule,
            )
            self._set_deadlines(ticket, ticket.opened_at)
            s.add(ticket)
            s.flush()  # the partial unique index decides here
            self._event(s, ticket, actor, "open", None, State.open, {"severity": alert.severity})
            return Raised(ticket.id, created=True)
        ticket.count += 1
        ticket.last_seen = max(ticket.last_seen, alert.at)
        if alert.source is Source.rule:
            ticket.alert_firing = True
            ticket.clear_since = None
        raised = SEVERITIES.index(alert.severity) < SEVERITIES.index(ticket.severity)
        if raised:
            self._event(
                s,
                ticket,
                actor,
                "severity",
                ticket.state,
                ticket.state,
                {"from": ticket.severity, "to": alert.severity},
            )
            ticket.severity = alert.severity
            self._set_deadlines(ticket, ticket.opened_at, tighten=True)
        reopened = ticket.state == State.resolved
        if reopened:
            self._move(s, ticket, "reopen", actor, {"reason": "the alert fired again"})
        return Raised(ticket.id, created=False, reopened=reopened, severity_raised=raised)

    def alert_cleared(self, dedup_key: str, at: datetime) -> int | None:
        """The rule behind ``dedup_key`` stopped firing at ``at``; returns the ticket id."""
        with self.store.session() as s:
            ticket = self._open_by_key(s, dedup_key)
            if ticket is None:
                return None
            ticket.alert_firing = False
            ticket.clear_since = at
            return ticket.id

    # ------------------------------------------------------------- transitions

    def acknowledge(self, ticket_id: int, actor: str) -> Ticket:
        """Someone has seen the ticket and takes charge of it."""
        return self._transition(ticket_id, "acknowledge", actor)

    def assign(
        self,
        ticket_id: int,
        actor: str,
        *,
        technician: str | None = None,
        contractor: str | None = None,
    ) -> Ticket:
        """Give the ticket to one technician or one contractor."""
        if (technician is None) == (contractor is None):
            raise TicketError("assign to exactly one technician or one contractor")
        return self._transition(
            ticket_id, "assign", actor, technician=technician, contractor=contractor
        )

    def start(self, ticket_id: int, actor: str) -> Ticket:
        """Work on site has begun."""
        return self._transition(ticket_id, "start", actor)

    def resolve(self, ticket_id: int, actor: str, note: str = "") -> Ticket:
        """The repair is done (a rule ticket then waits for its readings to stay normal)."""
        return self._transition(ticket_id, "resolve", actor, note=note)

    def close(self, ticket_id: int, actor: str, *, force: bool = False) -> Ticket:
        """Close a resolved ticket; a rule's ticket only once telemetry verified it,
        unless ``force`` (recorded in its history)."""
        return self._transition(ticket_id, "close", actor, force=force)

    def reopen(self, ticket_id: int, actor: str, reason: str) -> Ticket:
        """The fault is back or the repair was not done."""
        if not reason.strip():
            raise TicketError("say why the ticket is reopened")
        return self._transition(ticket_id, "reopen", actor, note=reason)

    def comment(self, ticket_id: int, author: str, text: str) -> Comment:
        """Add a note to a ticket, whatever its state."""
        if not text.strip():
            raise TicketError("a comment needs text")
        with self.store.session() as s:
            ticket = self._get(s, ticket_id)
            c = Comment(ticket_id=ticket.id, at=self.clock(), author=author, text=text)
            s.add(c)
            return c

    def escalate(self) -> list[tuple[int, str]]:
        """Record missed deadlines and climb the escalation chain of every
        unacknowledged ticket whose wait at its level has passed; returns
        (ticket id, what happened) for each change (the caller pages people)."""
        if self.oncall is None:
            return []
        now = self.clock()
        done: list[tuple[int, str]] = []
        with self.store.session() as s:
            live = s.scalars(
                select(Ticket).where(
                    Ticket.state.notin_([State.resolved.value, State.closed.value])
                )
            ).all()
            for t in live:
                if (
                    t.state == State.open
                    and t.ack_due
                    and t.ack_due <= now
                    and not t.ack_breached_at
                ):
                    t.ack_breached_at = now
                    detail = {"kind": "acknowledge", "due": t.ack_due.isoformat()}
                    self._event(s, t, "sla", "breach", t.state, t.state, detail)
                    done.append((t.id, "acknowledge deadline missed"))
                if t.resolve_due and t.resolve_due <= now and not t.resolve_breached_at:
                    t.resolve_breached_at = now
                    detail = {"kind": "resolve", "due": t.resolve_due.isoformat()}
                    self._event(s, t, "sla", "breach", t.state, t.state, detail)
                    done.append((t.id, "resolve deadline missed"))
                if t.state == State.open:
                    done += self._climb(s, t, now)
        return done

    def _climb(self, s: Session, t: Ticket, now: datetime) -> list[tuple[int, str]]:
        """Move an unacknowledged ticket up the chain as far as its waits allow."""
        assert self.oncall is not None
        steps = self.oncall.config.escalation
        # the chain starts when the acknowledge clock did (opening, or reopening)
        since = t.opened_at
        if t.ack_due is not None:
            since = t.ack_due - self.oncall.sla(t.severity)[0]
        done: list[tuple[int, str]] = []
        while True:
            due = self.oncall.escalation_due(t.severity, since, t.escalation_level)
            if due is None or due > now:
                return done
            t.escalation_level += 1
            role = steps[t.escalation_level].notify
            who = self.oncall.roles(t.trade, t.building, now).get(role)
            detail = {"level": t.escalation_level, "role": role.value}
            if who is not None:
                detail["technician"] = who.id
            self._event(s, t, "sla", "escalate", t.state, t.state, detail)
            done.append((t.id, f"escalated to {role.value}"))

    def _set_deadlines(self, t: Ticket, start: datetime, *, tighten: bool = False) -> None:
        """Acknowledge and resolve deadlines of ``t``'s severity from ``start``;
        ``tighten`` keeps an earlier deadline already set (a severity raised)."""
        if self.oncall is None:
            return
        ack, res = (d.astimezone(UTC) for d in self.oncall.deadlines(t.severity, start))
        if tighten and t.ack_due is not None and t.resolve_due is not None:
            ack, res = min(ack, t.ack_due), min(res, t.resolve_due)
        t.ack_due, t.resolve_due = ack, res

    def verify(self) -> list[int]:
        """Close every resolved rule ticket whose rule has stayed clear for
        ``verify_clear`` since the later of its clearing and its resolution."""
        now = self.clock()
        closed = []
        with self.store.session() as s:
            waiting = s.scalars(
                select(Ticket).where(
                    Ticket.state == State.resolved.value,
                    Ticket.source == Source.rule.value,
                    Ticket.alert_firing.is_(False),
                )
            ).all()
            for ticket in waiting:
                if ticket.clear_since is not None and self._verified_at(ticket) <= now:
                    detail = {"clear_since": ticket.clear_since.isoformat()}
                    self._move(s, ticket, "close", "telemetry", detail)
                    closed.append(ticket.id)
        return closed

    def _verified_at(self, ticket: Ticket) -> datetime:
        """When a resolved rule ticket counts as verified (far future while firing)."""
        if ticket.alert_firing or ticket.clear_since is None or ticket.resolved_at is None:
            return datetime.max.replace(tzinfo=UTC)
        return max(ticket.clear_since, ticket.resolved_at) + self.verify_clear

    # ------------------------------------------------------------------ reading

    def get(self, ticket_id: int) -> Ticket:
        """One ticket with its events and comments."""
        with self.store.session() as s:
            return self._get(s, ticket_id)

    def list(
        self,
        *,
        states: Sequence[str] = (),
        building: str | None = None,
        severity: str | None = None,
        limit: int = 200,
    ) -> list[Ticket]:
        """Tickets, newest first, filtered by state, building and severity."""
        q = select(Ticket).options(*WITHOUT_HISTORY).order_by(Ticket.id.desc()).limit(limit)
        if states:
            q = q.where(Ticket.state.in_(list(states)))
        if building:
            q = q.where(Ticket.building == building)
        if severity:
            q = q.where(Ticket.severity == severity)
        with self.store.session() as s:
            return list(s.scalars(q).all())

    def page(
        self,
        *,
        states: Sequence[str] = (),
        building: str | None = None,
        severity: str | None = None,
        trade: str | None = None,
        scope: WorkScope | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[Sequence[Ticket], int]:
        """One page of tickets, newest first, and how many match in all
        (``scope``: only the tickets in it)."""
        conds: list[Any] = []
        if states:
            conds.append(Ticket.state.in_(list(states)))
        if building:
            conds.append(Ticket.building == building)
        if severity:
            conds.append(Ticket.severity == severity)
        if trade:
            conds.append(Ticket.trade == trade)
        if scope is not None:
            conds.append(scope.clause())
        with self.store.session() as s:
            total = s.scalar(select(func.count()).select_from(Ticket).where(*conds)) or 0
            q = select(Ticket).options(*WITHOUT_HISTORY).where(*conds).order_by(Ticket.id.desc())
            return list(s.scalars(q.limit(limit).offset(offset)).all()), total

    # ---------------------------------------------------------------- plumbing

    def _transition(
        self,
        ticket_id: int,
        action: str,
        actor: str,
        *,
        technician: str | None = None,
        contractor: str | None = None,
        note: str = "",
        force: bool = False,
    ) -> Ticket:
        if not actor.strip():
            raise TicketError("say who does it (--by)")
        try:
            with self.store.session() as s:
                ticket = self._get(s, ticket_id)
                detail: dict[str, Any] = {"note": note} if note else {}
                if action == "assign":
                    detail.update(self._assignee(s, ticket, technician, contractor))
                closable = State(ticket.state) in TRANSITIONS["close"][0]
                if action == "close" and closable and ticket.source == Source.rule.value:
                    verified = self._verified_at(ticket)
                    if verified > self.clock() and not force:
                        raise InvalidTransition(
                            f"ticket {ticket.id} was raised by rule {ticket.rule!r}: it closes "
                            "itself once the readings have stayed normal for "
                            f"{_minutes(self.verify_clear)} after it was resolved"
                            + (
                                " (the alert still fires)"
                                if ticket.alert_firing
                                else f" (at {verified.isoformat(timespec='minutes')})"
                            )
                            + "; use --force to close it anyway"
                        )
                    if force and verified > self.clock():
                        detail["forced"] = True
                self._move(s, ticket, action, actor, detail)
                return ticket
        except IntegrityError:
            raise InvalidTransition(
                f"ticket {ticket_id} cannot {action}: another ticket for the same alert "
                "is open; work on that one"
            ) from None

    def _assignee(
        self, s: Session, ticket: Ticket, technician: str | None, contractor: str | None
    ) -> dict[str, Any]:
        if technician is not None:
            if s.get(Technician, technician) is None:
                known = ", ".join(s.scalars(select(Technician.id).order_by(Technician.id)))
                raise UnknownPerson(f"unknown technician {technician!r} (known: {known or 'none'})")
            ticket.technician_id, ticket.contractor_id = technician, None
            return {"technician": technician}
        if s.get(Contractor, contractor) is None:
            known = ", ".join(s.scalars(select(Contractor.id).order_by(Contractor.id)))
            raise UnknownPerson(f"unknown contractor {contractor!r} (known: {known or 'none'})")
        ticket.technician_id, ticket.contractor_id = None, contractor
        return {"contractor": contractor}

    def _move(
        self, s: Session, ticket: Ticket, action: str, actor: str, detail: dict[str, Any]
    ) -> None:
        """Apply ``action`` to ``ticket`` (or refuse it) and log the event."""
        allowed, target = TRANSITIONS[action]
        current = State(ticket.state)
        if current not in allowed:
            hint = _HINTS.get((current, action))
            raise InvalidTransition(
                f"ticket {ticket.id} cannot {action}: it is {current.value}"
                + (f" ({hint})" if hint else "")
                + f"; {action} is allowed from {', '.join(sorted(a.value for a in allowed))}"
            )
        now = self.clock()
        stamp = {
            State.acknowledged: "acknowledged_at",
            State.assigned: "assigned_at",
            State.in_progress: "started_at",
            State.resolved: "resolved_at",
            State.closed: "closed_at",
        }.get(target)
        if stamp is not None and (getattr(ticket, stamp) is None or target != State.assigned):
            setattr(ticket, stamp, now)
        if target == State.open:  # reopened: the work starts over, with new deadlines
            ticket.reopen_count += 1
            ticket.resolved_at = ticket.closed_at = None
            ticket.escalation_level = 0
            ticket.ack_breached_at = ticket.resolve_breached_at = None
            self._set_deadlines(ticket, now)
        ticket.state = target.value
        s.flush()
        self._event(s, ticket, actor, action, current, target, detail)

    def _event(
        self,
        s: Session,
        ticket: Ticket,
        actor: str,
        action: str,
        from_state: State | str | None,
        to_state: State | str | None,
        detail: dict[str, Any],
    ) -> None:
        event = Event(
            ticket_id=ticket.id,
            at=self.clock(),
            actor=actor[:100],
            action=action,
            from_state=None if from_state is None else str(State(from_state).value),
            to_state=None if to_state is None else str(State(to_state).value),
            detail=detail,
        )
        s.add(event)
        if self.channels is None:
            return
        s.flush()  # the event's id names its notices
        enqueue(
            s,
            self.channels,
            ticket,
            event.id,
            action,
            self._reach(ticket, action, detail, event.at),
            event.at,
            self.oncall.config.default_language.value if self.oncall else "zh",
        )

    def _reach(
        self, ticket: Ticket, action: str, detail: dict[str, Any], at: datetime
    ) -> Sequence[OnCallTechnician]:
        """Who hears of an event on their own channels: the primary on call of a
        new ticket, the person an escalation names, the technician assigned."""
        if self.oncall is None:
            return []
        if action == "open":
            primary = self.oncall.roles(ticket.trade, ticket.building, at).get(Role.primary)
            return [primary] if primary is not None else []
        if action in ("escalate", "assign") and "technician" in detail:
            try:
                return [self.oncall.technician(detail["technician"])]
            except OnCallUnknown:  # in the store, not (any more) in oncall.yaml
                return []
        return []

    @staticmethod
    def _open_by_key(s: Session, key: str) -> Ticket | None:
        q = select(Ticket).where(Ticket.dedup_key == key, Ticket.state != State.closed.value)
        if s.get_bind().dialect.name == "postgresql":
            q = q.with_for_update()
        return s.scalars(q).first()

    @staticmethod
    def _get(s: Session, ticket_id: int) -> Ticket:
        ticket = s.get(Ticket, ticket_id)
        if ticket is None:
            raise TicketNotFound(f"no ticket {ticket_id}")
        return ticket

    # ------------------------------------------------------------------ alerts

    def record_alert(self, doc: Mapping[str, Any]) -> None:
        """Keep the latest state of the alert in ``doc`` (a ``firing`` or
        ``resolved`` document of ``ops/alerts/#``) in the alerts table, linked
        to the ticket open under its dedup key: what ``/api/alerts`` lists.

        Redelivery is harmless: a document older than the one recorded changes
        nothing but the link to the open ticket, and the same document twice
        writes the same row. A firing that follows a resolution starts a new firing
        (``fired_at``); a firing that repeats one (an escalation) keeps it. A
        ``resolved`` document for an alert never seen firing is recorded only
        when it says what the alert was (building, severity, trade, title)."""
        from tickets.models import AlertRecord

        state = doc.get("state")
        if state not in ("firing", "resolved"):
            raise TicketError(f"alert state must be 'firing' or 'resolved', got {state!r}")
        try:
            key = str(doc["dedup_key"])
            at = datetime.fromtimestamp(int(doc["ts_ms"]) / 1000, UTC)
        except (KeyError, TypeError, ValueError, OverflowError, OSError) as exc:
            raise TicketError(f"alert document refused: {exc!r}") from None
        if not key or len(key) > 300:
            raise TicketError("alert document refused: dedup_key must be 1-300 characters")
        fields = _alert_fields(doc)
        with self.store.session() as s:
            open_id = s.scalar(
                select(Ticket.id).where(Ticket.dedup_key == key, Ticket.state != State.closed.value)
            )
            rec = s.get(AlertRecord, key)
            if rec is None:
                missing = [k for k in ("building", "severity", "trade", "title") if k not in fields]
                if missing:
                    if state == "firing":
                        raise TicketError(f"alert document refused: no {', '.join(missing)}")
                    return  # a clearing of an alert never recorded, saying too little
                since = _since(doc, at) if state == "resolved" else at
                s.add(
                    AlertRecord(
                        dedup_key=key,
                        state=state,
                        fired_at=since,
                        changed_at=at,
                        ticket_id=open_id,
                        **fields,
                    )
                )
                return
            if open_id is not None:
                rec.ticket_id = open_id
            if at < rec.changed_at:
                return  # older than what is recorded: delivered late or again
            if state == "firing" and rec.state != "firing":
                rec.fired_at = at
            rec.state = state
            rec.changed_at = at
            for name, value in fields.items():
                setattr(rec, name, value)


@dataclass(frozen=True)
class WorkScope:
    """The tickets that are one technician's to work: those given to them, and
    those of their team's trade in the buildings their team covers (``None``:
    every building)."""

    technician: str | None
    trade: str | None = None
    buildings: frozenset[str] | None = None

    def covers(self, ticket: Ticket) -> bool:
        """Whether ``ticket`` is in this scope."""
        if self.technician is not None and ticket.technician_id == self.technician:
            return True
        if self.trade is None or ticket.trade != self.trade:
            return False
        return self.buildings is None or ticket.building in self.buildings

    def clause(self) -> Any:
        """The same test as a WHERE clause."""
        mine = Ticket.technician_id == self.technician if self.technician else false()
        return or_(mine, self.team_clause(lambda trade: Ticket.trade == trade, Ticket.building))

    def team_clause(self, of_trade: Callable[[str], Any], building: Any) -> Any:
        """A WHERE clause for the rows of the team's trade (``of_trade(trade)``
        tests a row) in the team's buildings (the ``building`` column), for any
        table that has both: tickets, alerts, feedback."""
        if self.trade is None:
            return false()
        team = of_trade(self.trade)
        if self.buildings is not None:
            team = and_(team, building.in_(sorted(self.buildings)))
        return team


def _minutes(d: timedelta) -> str:
    m = int(d.total_seconds() // 60)
    return f"{m} min" if m < 120 else f"{m / 60:g} h"


_ALERT_DETAIL = ("kind", "since", "text", "runbook", "detail", "plot", "escalated", "inhibited")


def _alert_fields(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The columns of an alerts row that ``doc`` gives (checked, cut to size),
    and the rest of what the rules engine said in ``detail``."""
    out: dict[str, Any] = {}
    for name, size in (("rule", 64), ("device", 64), ("metric", 64), ("building", 64)):
        value = doc.get(name)
        if isinstance(value, str) and value:
            out[name] = value[:size]
    if doc.get("severity") in SEVERITIES:
        out["severity"] = doc["severity"]
    if doc.get("trade") in TRADES:
        out["trade"] = doc["trade"]
    title = doc.get("title")
    if isinstance(title, str) and title.strip():
        out["title"] = title[:300]
    value = doc.get("value")
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value:
        out["value"] = float(value) if abs(value) != float("inf") else None
    detail: dict[str, Any] = {}
    for name in _ALERT_DETAIL:
        v = doc.get(name)
        if isinstance(v, str):
            detail[name] = v[:4000]
        elif isinstance(v, bool | int | float) and v == v and abs(v) != float("inf"):
            detail[name] = v
    by = doc.get("inhibited_by")
    if isinstance(by, dict):
        detail["inhibited_by"] = {str(k)[:64]: str(v)[:300] for k, v in list(by.items())[:8]}
    out["detail"] = detail
    return out


def _since(doc: Mapping[str, Any], at: datetime) -> datetime:
    """When the condition behind ``doc`` began (``since_ms``), else ``at``."""
    try:
        since = datetime.fromtimestamp(int(doc["since_ms"]) / 1000, UTC)
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        return at
    return min(since, at)
