"""``/api/alerts``: the alerts of the rules engine, as the ticket service
recorded them (the latest state of each, firing or resolved, linked to its
ticket).

Every role reads; a technician sees only the alerts their tickets would cover:
those of their team's trade in their team's buildings, and those whose ticket
is assigned to them (the same scope as the tickets routes).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel
from sqlalchemy import false, func, or_, select

from api.deps import PrincipalDep, TicketsDep
from api.routers.tickets import scope_of
from api.schemas import Problem, Severity
from tickets.db import Store
from tickets.models import AlertRecord, Ticket
from tickets.service import WorkScope

router = APIRouter(prefix="/api/alerts", tags=["alerts"])

ID = r"^[A-Za-z0-9_.-]{1,64}$"
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No valid bearer token."},
    422: {"description": "A parameter is not valid (the answer names it)."},
    503: {"model": Problem, "description": "The ticket store is not answering; try again."},
}


class AlertOut(BaseModel):
    """One alert: a rule on a device, in its latest state."""

    dedup_key: str
    state: Literal["firing", "resolved"]
    rule: str | None
    building: str
    device: str | None
    metric: str | None
    value: float | None
    severity: str
    trade: str
    title: str
    fired_at: datetime
    changed_at: datetime
    ticket_id: int | None
    detail: dict[str, Any]

    @classmethod
    def of(cls, a: AlertRecord) -> AlertOut:
        return cls(
            dedup_key=a.dedup_key,
            state=a.state,
            rule=a.rule,
            building=a.building,
            device=a.device,
            metric=a.metric,
            value=a.value,
            severity=a.severity,
            trade=a.trade,
            title=a.title,
            fired_at=a.fired_at,
            changed_at=a.changed_at,
            ticket_id=a.ticket_id,
            detail=a.detail or {},
        )


class AlertPage(BaseModel):
    """One page of alerts, most recently changed first, and how many match."""

    items: list[AlertOut]
    total: int
    limit: int
    offset: int


def scope_clause(scope: WorkScope) -> Any:
    """A technician's alerts as a WHERE clause: their team's trade in their
    team's buildings, or a ticket assigned to them."""
    team = scope.team_clause(lambda trade: AlertRecord.trade == trade, AlertRecord.building)
    mine: Any = false()
    if scope.technician is not None:
        theirs = select(Ticket.id).where(Ticket.technician_id == scope.technician)
        mine = AlertRecord.ticket_id.in_(theirs)
    return or_(team, mine)


def alerts_page(
    store: Store,
    *,
    state: str = "firing",
    building: str | None = None,
    severity: str | None = None,
    device: str | None = None,
    scope: WorkScope | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[Sequence[AlertRecord], int]:
    """Alerts matching the filters (``state``: firing, resolved or all), most
    recently changed first, and how many match in all."""
    conds: list[Any] = []
    if state != "all":
        conds.append(AlertRecord.state == state)
    if building is not None:
        conds.append(AlertRecord.building == building)
    if severity is not None:
        conds.append(AlertRecord.severity == severity)
    if device is not None:
        conds.append(AlertRecord.device == device)
    if scope is not None:
        conds.append(scope_clause(scope))
    with store.session() as s:
        total = s.scalar(select(func.count()).select_from(AlertRecord).where(*conds)) or 0
        q = (
            select(AlertRecord)
            .where(*conds)
            .order_by(AlertRecord.changed_at.desc(), AlertRecord.dedup_key)
            .limit(limit)
            .offset(offset)
        )
        return list(s.scalars(q).all()), total


@router.get("", response_model=AlertPage, responses=ERRORS)
def list_alerts(
    request: Request,
    svc: TicketsDep,
    who: PrincipalDep,
    state: Literal["firing", "resolved", "all"] = "firing",
    building: Annotated[str | None, Query(pattern=ID)] = None,
    severity: Severity | None = None,
    device: Annotated[str | None, Query(pattern=ID)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> AlertPage:
    """Alerts, most recently changed first (a technician's scope only)."""
    if building is not None and building not in request.app.state.buildings:
        raise HTTPException(422, f"building: unknown building {building!r}")
    if device is not None and request.app.state.campus.get(device) is None:
        raise HTTPException(422, f"device: unknown device {device!r}")
    items, total = alerts_page(
        svc.store,
        state=state,
        building=building,
        severity=severity,
        device=device,
        scope=scope_of(svc, who),
        limit=limit,
        offset=offset,
    )
    return AlertPage(items=[AlertOut.of(a) for a in items], total=total, limit=limit, offset=offset)
