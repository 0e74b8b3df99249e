"""The technician page ``/t/{ticket}?k=<token>``: one ticket on a phone, opened
from the signed link in the technician's alert (:mod:`api.links`), with no
login beyond that link.

It shows what happened, where (building, floor, room, device), since when (in
the campus's time), severity, state and the SLA deadline, the evidence plot,
the notes, and three buttons: *acknowledge*, *on my way* (acknowledges and
takes the ticket first when nobody has yet, then starts the work) and
*resolved*, plus a notes form. Each button posts a form carrying the same
signed token in its body (another site cannot forge it), acts in the ticket's
history as the link's technician, and comes back to the page (303). A change
the ticket's state refuses is shown on the page (409).

The evidence plot: an anomaly ticket's own plot (its description says ``Plot
of the last day: <path>``; served only from under ``{var_dir}/anomaly``), else
the device's last 24 hours drawn from InfluxDB, else none.
"""

from __future__ import annotations

import base64
import logging
import re
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Form, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.evidence import evidence_png
from api.i18n import Words, choose, local_name
from api.links import Grant, LinkRefused, Links, links_for
from api.pages.render import message, page
from campus.registry import Campus
from tickets.models import State, Technician, Ticket
from tickets.service import InvalidTransition, TicketError, TicketNotFound, Tickets, utcnow

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

TicketId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
Token = Annotated[str, Query(min_length=1, max_length=400)]
FormToken = Annotated[str, Form(min_length=1, max_length=400)]
NoteText = Annotated[str, Form(max_length=10_000)]

PLOT_LINE = re.compile(r"Plot of the last day: (\S+)")
MAX_PLOT_BYTES = 2 * 1024 * 1024
ACTIONS = ("acknowledge", "start", "resolve", "note")
# the states each button may act from (the others show it disabled)
ENABLED = {
    "acknowledge": {State.open.value},
    "start": {State.open.value, State.acknowledged.value, State.assigned.value},
    "resolve": {State.acknowledged.value, State.assigned.value, State.in_progress.value},
}


def _links(request: Request) -> Links:
    links: Links | None = getattr(request.app.state, "links", None)
    if links is None:
        links = links_for(request.app.state.settings)
        request.app.state.links = links
    return links


def _language(request: Request, technician: str | None) -> str:
    """The visitor's choice, else the technician's language, else the campus default."""
    default: str = request.app.state.settings.language
    if technician is not None:
        tickets: Tickets = request.app.state.tickets
        with tickets.store.session() as s:
            tech = s.get(Technician, technician)
            if tech is not None and tech.language in ("zh", "en"):
                default = tech.language
    return choose(request, default)


def _grant(request: Request, ticket_id: int, token: str) -> Grant | HTMLResponse:
    """The link's grant, or the page saying why it opens nothing (a link of a
    technician the ticket store no longer knows opens nothing either)."""
    try:
        grant = _links(request).check(token, ticket_id)
        tickets: Tickets = request.app.state.tickets
        with tickets.store.session() as s:
            if s.get(Technician, grant.technician) is None:
                raise LinkRefused("bad", f"no technician {grant.technician!r}")
        return grant
    except LinkRefused as exc:
        lang = _language(request, None)
        title, text = {
            "expired": ("link_expired", "link_expired_text"),
            "other": ("link_other", "link_other_text"),
        }.get(exc.reason, ("link_bad", "link_bad_text"))
        here = f"/t/{ticket_id}?{urlencode({'k': token})}"
        return message(request, lang, 403, title, text, here=here)


@router.get("/t/{ticket_id}", response_class=HTMLResponse)
def ticket_page(ticket_id: TicketId, k: Token, request: Request) -> Response:
    """The ticket, for the technician the link was made for."""
    grant = _grant(request, ticket_id, k)
    if isinstance(grant, Response):
        return grant
    done = request.query_params.get("done")
    flash = ("ok", f"done_{done}") if done in ACTIONS else None
    return _render(request, grant, k, flash=flash)


def _render(
    request: Request,
    grant: Grant,
    token: str,
    *,
    flash: tuple[str, str] | None = None,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    lang = _language(request, grant.technician)
    tickets: Tickets = request.app.state.tickets
    try:
        ticket = tickets.get(grant.ticket)
    except TicketNotFound:
        here = f"/t/{grant.ticket}?{urlencode({'k': token})}"
        return message(request, lang, 404, "ticket_missing", "ticket_missing_text", here=here)
    campus: Campus = request.app.state.campus
    words = Words(lang)
    tz = ZoneInfo(campus.timezone)
    now = utcnow()

    def local(at: datetime | None) -> str:
        return at.astimezone(tz).strftime("%Y-%m-%d %H:%M") if at else ""

    building = campus.buildings.get(ticket.building)
    device = campus.devices.get(ticket.device) if ticket.device else None
    due_kind, due = (
        ("ack_due", ticket.ack_due)
        if ticket.state == State.open.value
        else ("resolve_due", ticket.resolve_due)
    )
    if ticket.state in (State.resolved.value, State.closed.value):
        due = None
    messages: list[tuple[str, str]] = []
    if flash is not None:
        messages.append((flash[0], words[flash[1]]))
    if error is not None:
        if status_code == 409:  # the state refused: say so in the page's language first
            state = words.get(f"st_{ticket.state}", ticket.state)
            error = f"{words('refused_state', state=state)} ({error})"
        messages.append(("error", words("refused", reason=error)))
    context: dict[str, Any] = {
        "t": ticket,
        "token": token,
        "building": local_name(building, lang) if building else ticket.building,
        "device": device,
        "floor": device.floor if device else None,
        "room": device.room if device else None,
        "since": local(ticket.first_seen),
        "due_kind": due_kind,
        "due": local(due),
        "overdue": due is not None and due <= now,
        "plot": _plot(request, ticket),
        "enabled": {a: ticket.state in states for a, states in ENABLED.items()},
        "messages": messages,
        "comments": [(local(c.at), c.author, c.text) for c in ticket.comments],
        "description": PLOT_LINE.sub("", ticket.description or "").strip(),
    }
    here = f"/t/{grant.ticket}?{urlencode({'k': token})}"
    return page(
        request,
        "technician.html",
        lang,
        context,
        status_code=status_code,
        private=True,
        here=here,
    )


@router.post("/t/{ticket_id}/{action}", response_class=HTMLResponse)
def act(
    ticket_id: TicketId,
    action: str,
    request: Request,
    k: FormToken,
    note: NoteText = "",
) -> Response:
    """A button of the page: acknowledge, start (on my way), resolve, or a note."""
    grant = _grant(request, ticket_id, k)
    if isinstance(grant, Response):
        return grant
    if action not in ACTIONS:
        return message(request, _language(request, grant.technician), 404, "not_found", "not_found")
    tickets: Tickets = request.app.state.tickets
    who = grant.technician
    note = note.strip()
    try:
        if action == "acknowledge":
            tickets.acknowledge(ticket_id, who)
        elif action == "start":
            _on_my_way(tickets, ticket_id, who)
        elif action == "resolve":
            tickets.resolve(ticket_id, who, note)
        else:
            if not note:
                words = Words(_language(request, who))
                return _render(request, grant, k, error=words["empty_note"], status_code=422)
            tickets.comment(ticket_id, who, note)
    except TicketNotFound:
        return _render(request, grant, k)  # says the ticket does not exist
    except InvalidTransition as exc:
        return _render(request, grant, k, error=str(exc), status_code=409)
    except TicketError as exc:
        return _render(request, grant, k, error=str(exc), status_code=422)
    query = urlencode({"k": k, "done": action})
    return RedirectResponse(f"/t/{ticket_id}?{query}", status_code=303)


def _on_my_way(tickets: Tickets, ticket_id: int, who: str) -> None:
    """Start the work; a ticket nobody has taken yet is acknowledged and given
    to ``who`` first (the lifecycle starts only assigned tickets)."""
    ticket = tickets.get(ticket_id)
    if ticket.state == State.open.value:
        ticket = tickets.acknowledge(ticket_id, who)
    if ticket.state == State.acknowledged.value:
        tickets.assign(ticket_id, who, technician=who)
    tickets.start(ticket_id, who)


# ---------------------------------------------------------------- evidence


def _plot(request: Request, ticket: Ticket) -> str | None:
    """The evidence plot as a ``data:`` URL, or None when there is none."""
    png = evidence_png(request, ticket)
    if png is None:
        return None
    return "data:image/png;base64," + base64.b64encode(png).decode()
