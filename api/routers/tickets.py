"""``/api/tickets``: list, read, raise and work repair tickets.

Who may do what (docs/api.md): every role reads; a technician sees and works
only the tickets given to them or of their team's trade (any other ticket is a
404, the same answer as a ticket that does not exist); viewers change nothing;
engineers and admins work every ticket.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.accounts import Principal
from api.deps import PrincipalDep, TicketsDep, role
from api.evidence import evidence_png, has_evidence
from api.schemas import (
    AssignIn,
    CloseIn,
    CommentIn,
    CommentOut,
    Created,
    Note,
    Problem,
    Reason,
    Severity,
    TicketCreate,
    TicketDetail,
    TicketOut,
    TicketPage,
    Trade,
)
from tickets.models import AlertRecord, Role, Source, State, Ticket
from tickets.oncall import ALL
from tickets.service import Alert, TicketNotFound, Tickets, WorkScope, utcnow

router = APIRouter(prefix="/api/tickets", tags=["tickets"])

Worker = Annotated[Principal, Depends(role(Role.technician, Role.engineer, Role.admin))]
TicketId = Annotated[int, Path(ge=1, le=2**31 - 1)]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No valid bearer token."},
    404: {"model": Problem, "description": "No such ticket, or not one of yours."},
    503: {"model": Problem, "description": "The ticket store is not answering; try again."},
}
MOVES: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    403: {"model": Problem},
    409: {"model": Problem, "description": "Not now."},
}


def scope_of(svc: Tickets, who: Principal) -> WorkScope | None:
    """What ``who`` may see and work: everything (None), or a technician's scope."""
    if who.role is not Role.technician:
        return None
    if who.team is None or svc.oncall is None:
        return WorkScope(who.technician)
    try:
        team = svc.oncall.team(who.team)
    except KeyError:
        return WorkScope(who.technician)
    buildings = None if ALL in team.buildings else frozenset(team.buildings)
    return WorkScope(who.technician, team.trade.value, buildings)


def _ticket(svc: Tickets, who: Principal, ticket_id: int) -> Ticket:
    """The ticket if ``who`` may see it; 404 both when it is missing and when it is
    not theirs, so that ids of other teams' tickets cannot be probed."""
    try:
        ticket = svc.get(ticket_id)
    except TicketNotFound:
        ticket = None
    scope = scope_of(svc, who)
    if ticket is None or (scope is not None and not scope.covers(ticket)):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no ticket {ticket_id}")
    return ticket


@router.get("", response_model=TicketPage, responses=ERRORS)
def list_tickets(
    svc: TicketsDep,
    who: PrincipalDep,
    state: Annotated[
        list[State] | None, Query(description="Repeatable; default: not closed.")
    ] = None,
    building: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = None,
    severity: Severity | None = None,
    trade: Trade | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> TicketPage:
    """Tickets, newest first (a technician's own and their trade's only)."""
    states = [s.value for s in state] if state else [s.value for s in State if s != State.closed]
    items, total = svc.page(
        states=states,
        building=building,
        severity=severity,
        trade=trade,
        scope=scope_of(svc, who),
        limit=limit,
        offset=offset,
    )
    return TicketPage(
        items=[TicketOut.of(t) for t in items], total=total, limit=limit, offset=offset
    )


@router.post(
    "",
    response_model=Created,
    status_code=status.HTTP_201_CREATED,
    responses={**MOVES, 200: {"model": Created, "description": "The key's open ticket."}},
)
def raise_ticket(
    body: TicketCreate, svc: TicketsDep, who: Worker, request: Request, response: Response
) -> Created:
    """Raise a ticket by hand; 201 when opened, 200 when ``dedup_key`` named an open one."""
    buildings: frozenset[str] = request.app.state.buildings
    if body.building not in buildings:
        raise HTTPException(422, f"building: unknown building {body.building!r}")
    alert = Alert(
        dedup_key=f"manual:{body.dedup_key or uuid.uuid4().hex}",
        source=Source.manual,
        severity=body.severity,
        building=body.building,
        trade=body.trade,
        title=body.title,
        description=body.description,
        device=body.device,
        at=utcnow(),
    )
    raised = svc.raise_alert(alert, actor=who.actor)
    if not raised.created:
        response.status_code = status.HTTP_200_OK
    return Created(
        id=raised.ticket_id, created=raised.created, ticket=TicketOut.of(svc.get(raised.ticket_id))
    )


class EvidenceOut(BaseModel):
    """What an alert of the ticket saw: rule, metric, value and, for an anomaly,
    what the model expected (in ``detail``)."""

    rule: str | None
    device: str | None
    metric: str | None
    value: float | None
    state: str
    fired_at: datetime
    changed_at: datetime
    detail: dict[str, Any]


class TicketEvidence(TicketDetail):
    """A ticket with its history, notes and evidence."""

    evidence: list[EvidenceOut] = Field(description="The alerts that raised or joined it.")
    plot: str | None = Field(description="Where its evidence plot is, when it may have one.")


@router.get("/{ticket_id}", response_model=TicketEvidence, responses=ERRORS)
def read_ticket(ticket_id: TicketId, svc: TicketsDep, who: PrincipalDep) -> TicketEvidence:
    """One ticket with its history, notes and evidence."""
    ticket = _ticket(svc, who, ticket_id)
    with svc.store.session() as s:
        alerts = s.scalars(
            select(AlertRecord)
            .where(AlertRecord.ticket_id == ticket_id)
            .order_by(AlertRecord.fired_at)
        ).all()
        evidence = [
            EvidenceOut(
                rule=a.rule,
                device=a.device,
                metric=a.metric,
                value=a.value,
                state=a.state,
                fired_at=a.fired_at,
                changed_at=a.changed_at,
                detail=a.detail or {},
            )
            for a in alerts
        ]
    plot = f"/api/tickets/{ticket_id}/evidence.png" if has_evidence(ticket) else None
    return TicketEvidence(**TicketDetail.of(ticket).model_dump(), evidence=evidence, plot=plot)


@router.get(
    "/{ticket_id}/evidence.png",
    response_class=Response,
    responses={**ERRORS, 200: {"content": {"image/png": {}}, "description": "The plot."}},
)
def evidence_plot(
    ticket_id: TicketId, request: Request, svc: TicketsDep, who: PrincipalDep
) -> Response:
    """The ticket's evidence plot: the anomaly model's own, else the device's
    last 24 hours; 404 when there is none."""
    png = evidence_png(request, _ticket(svc, who, ticket_id))
    if png is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"ticket {ticket_id} has no plot")
    return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})


@router.post("/{ticket_id}/acknowledge", response_model=TicketOut, responses=MOVES)
def acknowledge(ticket_id: TicketId, svc: TicketsDep, who: Worker) -> TicketOut:
    """I have seen it and take charge."""
    _ticket(svc, who, ticket_id)
    return TicketOut.of(svc.acknowledge(ticket_id, who.actor))


@router.post("/{ticket_id}/assign", response_model=TicketOut, responses=MOVES)
def assign(ticket_id: TicketId, body: AssignIn, svc: TicketsDep, who: Worker) -> TicketOut:
    """Give the ticket to one technician or contractor (a technician: to themselves only)."""
    _ticket(svc, who, ticket_id)
    if who.role is Role.technician and (body.contractor or body.technician != who.technician):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, "a technician may assign a ticket to themselves only"
        )
    return TicketOut.of(
        svc.assign(ticket_id, who.actor, technician=body.technician, contractor=body.contractor)
    )


@router.post("/{ticket_id}/start", response_model=TicketOut, responses=MOVES)
def start(ticket_id: TicketId, svc: TicketsDep, who: Worker) -> TicketOut:
    """On my way / work on site has begun."""
    _ticket(svc, who, ticket_id)
    return TicketOut.of(svc.start(ticket_id, who.actor))


@router.post("/{ticket_id}/resolve", response_model=TicketOut, responses=MOVES)
def resolve(
    ticket_id: TicketId, svc: TicketsDep, who: Worker, body: Note | None = None
) -> TicketOut:
    """The repair is done (a rule's ticket closes itself once its readings stay normal)."""
    _ticket(svc, who, ticket_id)
    return TicketOut.of(svc.resolve(ticket_id, who.actor, body.note if body else ""))


@router.post("/{ticket_id}/close", response_model=TicketOut, responses=MOVES)
def close(
    ticket_id: TicketId, svc: TicketsDep, who: Worker, body: CloseIn | None = None
) -> TicketOut:
    """Close a resolved ticket."""
    _ticket(svc, who, ticket_id)
    return TicketOut.of(svc.close(ticket_id, who.actor, force=bool(body and body.force)))


@router.post("/{ticket_id}/reopen", response_model=TicketOut, responses=MOVES)
def reopen(ticket_id: TicketId, body: Reason, svc: TicketsDep, who: Worker) -> TicketOut:
    """The fault is back, or the repair did not hold."""
    _ticket(svc, who, ticket_id)
    return TicketOut.of(svc.reopen(ticket_id, who.actor, body.reason))


@router.post(
    "/{ticket_id}/comments",
    response_model=CommentOut,
    status_code=status.HTTP_201_CREATED,
    responses=MOVES,
)
def comment(ticket_id: TicketId, body: CommentIn, svc: TicketsDep, who: Worker) -> CommentOut:
    """Add a note."""
    _ticket(svc, who, ticket_id)
    return CommentOut.of(svc.comment(ticket_id, who.actor, body.text))
