"""``/api/campus``, ``/api/buildings`` and ``/api/devices``: the campus state,
each building with its devices, tickets and alerts, and each device with its
metrics, newest values and status.

The state comes from one shared snapshot (:mod:`api.state`), at most about
five seconds old (``as_of`` says when it was computed); ``/api/campus`` sends
it as serialised once, so that it answers hundreds of requests a second.
A building's ticket and alert lists are read from the store on each request,
within the caller's scope (a technician sees their own work only).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from api.deps import PrincipalDep, TicketsDep
from api.routers.alerts import AlertOut, alerts_page
from api.routers.tickets import scope_of
from api.schemas import Problem
from api.state import (
    OPEN_STATES,
    BuildingState,
    CampusOut,
    CampusState,
    DeviceStatus,
    Snapshot,
    campus_state,
)
from campus.registry import Campus, Device
from campus.settings import Settings
from tickets.models import Ticket

router = APIRouter(tags=["campus"])

ID = r"^[A-Za-z0-9_.-]{1,64}$"
KIND = r"^[a-z][a-z0-9_]{0,31}$"
TICKETS_SHOWN = 50  # a building's open tickets listed in full (the count covers all)
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No valid bearer token."},
    503: {"model": Problem, "description": "The ticket store is not answering; try again."},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    404: {"model": Problem, "description": "No such building or device."},
}
StateDep = Annotated[CampusState, Depends(campus_state)]


def install(app: FastAPI, settings: Settings) -> None:
    """The shared campus state, over the app's InfluxDB client and ticket store."""
    state = CampusState(
        app.state.campus,
        influx=lambda: app.state.influx,
        store=lambda: app.state.tickets.store,
    )
    app.state.campus_state = state

    async def stop(app: FastAPI) -> None:
        state.close()

    app.state.on_stop.append(stop)


class MetricOut(BaseModel):
    """A metric of a device: unit and the range a healthy sensor reports."""

    unit: str
    min: float
    max: float
    counter: bool


class DeviceOut(BaseModel):
    """A device, where it is, and what it last said."""

    id: str
    building: str
    kind: str
    model: str | None
    floor: int | None
    room: str | None
    zone: str | None
    parent: str | None
    interval_s: float
    status: DeviceStatus = Field(description="online | stale | offline | unknown")
    last_seen: datetime | None = Field(description="Its newest reading (within the lookback).")
    values: dict[str, float | None] = Field(description="The metrics of its newest reading.")

    @classmethod
    def of(cls, d: Device, snap: Snapshot) -> DeviceOut:
        st = snap.devices[d.id]
        return cls(
            id=d.id,
            building=d.building,
            kind=d.kind,
            model=d.model,
            floor=d.floor,
            room=d.room,
            zone=d.zone,
            parent=d.parent,
            interval_s=d.interval_s,
            status=st.status,
            last_seen=_when(st.last_seen_ms),
            values=dict(st.values),
        )


class DeviceDetail(DeviceOut):
    """A device with its metrics' specifications and its last online/offline word."""

    metrics: dict[str, MetricOut]
    status_said: str | None = Field(description="online | offline, as the device last said.")
    status_said_at: datetime | None
    as_of: datetime


class TicketBrief(BaseModel):
    """An open ticket of a building, in a line."""

    id: int
    state: str
    severity: str
    trade: str
    device: str | None
    title: str
    opened_at: datetime
    assignee: str | None


class TicketSummary(BaseModel):
    """A building's open tickets (the caller's own only, for a technician)."""

    open: int
    by_severity: dict[str, int]
    items: list[TicketBrief] = Field(description=f"The {TICKETS_SHOWN} most urgent, newest first.")


class BuildingDetail(BuildingState):
    """A building with its devices, its open tickets and its firing alerts."""

    as_of: datetime
    device_list: list[DeviceOut]
    tickets: TicketSummary
    alerts: list[AlertOut]


def _when(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def _campus(request: Request) -> Campus:
    campus: Campus = request.app.state.campus
    return campus


@router.get(
    "/api/campus",
    response_model=CampusOut,
    responses=ERRORS,
    summary="Campus state",
)
async def campus(who: PrincipalDep, state: StateDep) -> Response:
    """Every building's state (ok, warning, fault, offline), devices offline,
    open tickets, worst severity and firing alerts, and the campus totals."""
    snap = state.current()
    if snap is None:  # the first request: computed away from the event loop
        snap = await asyncio.to_thread(state.snapshot)
    return Response(snap.body, media_type="application/json")


@router.get("/api/buildings", response_model=list[BuildingState], responses=ERRORS)
def buildings(who: PrincipalDep, state: StateDep) -> list[BuildingState]:
    """Every building with its state (as in ``/api/campus``)."""
    return state.snapshot().out.buildings


@router.get("/api/buildings/{building_id}", response_model=BuildingDetail, responses=NOT_FOUND)
def building(
    building_id: Annotated[str, Path(pattern=ID)],
    request: Request,
    svc: TicketsDep,
    who: PrincipalDep,
    state: StateDep,
) -> BuildingDetail:
    """One building: its devices with their newest readings and status, its open
    tickets and its firing alerts."""
    snap = state.snapshot()
    summary = snap.building(building_id)
    if summary is None:
        raise HTTPException(404, f"no building {building_id!r}")
    scope = scope_of(svc, who)
    conds: list[Any] = [
        Ticket.building == building_id,
        Ticket.state.in_([s.value for s in OPEN_STATES]),
    ]
    if scope is not None:
        conds.append(scope.clause())
    with svc.store.session() as s:
        counts = dict(
            s.execute(
                select(Ticket.severity, func.count()).where(*conds).group_by(Ticket.severity)
            ).all()
        )
        rows = s.scalars(
            select(Ticket)
            .where(*conds)
            .order_by(Ticket.severity, Ticket.id.desc())
            .limit(TICKETS_SHOWN)
        ).all()
        items = [
            TicketBrief(
                id=t.id,
                state=t.state,
                severity=t.severity,
                trade=t.trade,
                device=t.device,
                title=t.title,
                opened_at=t.opened_at,
                assignee=t.technician_id or t.contractor_id,
            )
            for t in rows
        ]
    alerts, _ = alerts_page(svc.store, state="firing", building=building_id, scope=scope, limit=500)
    devices = _campus(request).devices_in(building_id)
    return BuildingDetail(
        **summary.model_dump(),
        as_of=snap.at,
        device_list=[DeviceOut.of(d, snap) for d in devices],
        tickets=TicketSummary(
            open=sum(counts.values()),
            by_severity={k: int(v) for k, v in sorted(counts.items())},
            items=items,
        ),
        alerts=[AlertOut.of(a) for a in alerts],
    )


@router.get("/api/devices", response_model=list[DeviceOut], responses=ERRORS)
def devices(
    request: Request,
    who: PrincipalDep,
    state: StateDep,
    building: Annotated[str | None, Query(pattern=ID)] = None,
    kind: Annotated[str | None, Query(pattern=KIND)] = None,
    status: DeviceStatus | None = None,
) -> list[DeviceOut]:
    """Devices, by building and id, with their status and newest values."""
    campus = _campus(request)
    if building is not None and building not in campus.buildings:
        raise HTTPException(422, f"building: unknown building {building!r}")
    if kind is not None and kind not in campus.kinds:
        raise HTTPException(
            422, f"kind: unknown kind {kind!r} (known: {', '.join(sorted(campus.kinds))})"
        )
    snap = state.snapshot()
    chosen = campus.devices_in(building) if building is not None else list(campus)
    out = [
        DeviceOut.of(d, snap)
        for d in sorted(chosen, key=lambda d: (d.building, d.id))
        if kind is None or d.kind == kind
    ]
    return [d for d in out if status is None or d.status == status]


@router.get("/api/devices/{device_id}", response_model=DeviceDetail, responses=NOT_FOUND)
def device(
    device_id: Annotated[str, Path(pattern=ID)],
    request: Request,
    who: PrincipalDep,
    state: StateDep,
) -> DeviceDetail:
    """One device: its metrics (unit, range), newest values and status."""
    d = _campus(request).get(device_id)
    if d is None:
        raise HTTPException(404, f"no device {device_id!r}")
    snap = state.snapshot()
    st = snap.devices[d.id]
    said = None if st.said_online is None else ("online" if st.said_online else "offline")
    return DeviceDetail(
        **DeviceOut.of(d, snap).model_dump(),
        metrics={
            name: MetricOut(unit=m.unit, min=m.min, max=m.max, counter=m.counter)
            for name, m in d.metrics.items()
        },
        status_said=said,
        status_said_at=_when(st.said_ms),
        as_of=snap.at,
    )
