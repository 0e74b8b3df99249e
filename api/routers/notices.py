"""``/api/notices``: the public notices of the status board as JSON (no login);
``PUT /api/tickets/{id}/notice``: staff hide a ticket from the public
(``internal``) or write its notice themselves (``public_note``).

Notices carry no personal data (:mod:`api.notices`); a ``public_note`` holding a
phone number, an e-mail address, a person's name or id or a device id is
refused with 422.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from api.accounts import Principal
from api.deps import TicketsDep, role
from api.notices import building_states, notices, private_terms, public_tickets
from api.routers.tickets import _ticket
from api.schemas import In, Problem
from tickets.models import Event, Role, Ticket
from tickets.service import utcnow

router = APIRouter(tags=["notices"])

Staff = Annotated[Principal, Depends(role(Role.technician, Role.engineer, Role.admin))]
TicketId = Annotated[int, Path(ge=1, le=2**31 - 1)]


class NoticeOut(BaseModel):
    """One public notice."""

    building: str
    building_name: str
    trade: str
    progress: Literal["open", "assigned", "on_site", "checking"] = Field(
        description="reported, repair crew assigned, crew on site, fixed and being checked"
    )
    severity: str
    floors: list[int]
    since: datetime
    expected: datetime | None = Field(description="When service is expected back, if known.")
    text: str = Field(description="The notice as occupants read it, in the language asked.")
    staff_written: bool


class NoticesOut(BaseModel):
    """The public notices and every building's state on the map."""

    language: Literal["zh", "en"]
    notices: list[NoticeOut]
    buildings: dict[str, Literal["ok", "warning", "fault"]]


class NoticeIn(In):
    """What the public is told of a ticket."""

    internal: bool = Field(description="True: never shown on the public board.")
    public_note: str | None = Field(
        None,
        max_length=500,
        description="The notice occupants read instead of the derived one; "
        "null or empty: derived. No names, ids, phone numbers or e-mail addresses.",
    )


class NoticeSettings(BaseModel):
    """A ticket's public-board settings."""

    id: int
    internal: bool
    public_note: str | None


def board_data(request: Request, lang: str) -> tuple[list[Any], dict[str, str]]:
    """The notices (in ``lang``) and building states of the public board."""
    state = request.app.state
    tickets = public_tickets(state.tickets.store)
    private = private_terms(state.tickets.store, state.campus)
    found = notices(tickets, state.campus, lang, utcnow(), private)
    colours = {b: "ok" for b in state.campus.buildings}
    colours.update((b, c) for b, c in building_states(tickets).items() if b in colours)
    return found, colours


@router.get("/api/notices", response_model=NoticesOut, responses={503: {"model": Problem}})
def list_notices(
    request: Request,
    lang: Annotated[
        Literal["zh", "en"] | None, Query(description="Default: the campus language.")
    ] = None,
) -> NoticesOut:
    """Public notices of repairs under way, and each building's state (no login)."""
    language = lang or request.app.state.settings.language
    found, colours = board_data(request, language)
    return NoticesOut(
        language=language,
        notices=[
            NoticeOut(
                building=n.building,
                building_name=n.building_name,
                trade=n.trade,
                progress=n.progress,
                severity=n.severity,
                floors=list(n.floors),
                since=n.since,
                expected=n.expected,
                text=n.text,
                staff_written=n.staff_written,
            )
            for n in found
        ],
        buildings=colours,
    )


@router.put(
    "/api/tickets/{ticket_id}/notice",
    response_model=NoticeSettings,
    tags=["tickets"],
    responses={
        401: {"model": Problem},
        403: {"model": Problem},
        404: {"model": Problem, "description": "No such ticket, or not one of yours."},
        422: {"model": Problem},
        503: {"model": Problem},
    },
)
def set_notice(
    ticket_id: TicketId, body: NoticeIn, request: Request, svc: TicketsDep, who: Staff
) -> NoticeSettings:
    """Hide a ticket from the public board, or write its public notice."""
    _ticket(svc, who, ticket_id)
    note = (body.public_note or "").strip() or None
    if note is not None:
        found = private_terms(svc.store, request.app.state.campus).problems(note)
        if found:
            raise HTTPException(
                422,
                f"public_note: holds {' and '.join(found)}; a public notice "
                "carries no personal data or device ids",
            )
    with svc.store.session() as s:
        ticket = s.get(Ticket, ticket_id)
        if ticket is None:
            raise HTTPException(404, f"no ticket {ticket_id}")
        before = {"internal": ticket.internal, "public_note": ticket.public_note}
        ticket.internal, ticket.public_note = body.internal, note
        after = {"internal": ticket.internal, "public_note": ticket.public_note}
        if before != after:  # the history says who changed what the public is told
            s.add(
                Event(
                    ticket_id=ticket.id,
                    at=utcnow(),
                    actor=who.actor[:100],
                    action="notice",
                    from_state=ticket.state,
                    to_state=ticket.state,
                    detail={"before": before, "after": after},
                )
            )
        return NoticeSettings(
            id=ticket.id, internal=ticket.internal, public_note=ticket.public_note
        )
