"""The anonymous feedback pages: the form (``/feedback``, opened from the QR
codes of ``campus qr`` with the building and room filled in), its receipt, the
case page a receipt token opens (``/feedback/r/{token}``) and the satisfaction
rating asked there once the repair's ticket is closed.

What is kept of a report, its triage into tickets and the receipt are
:mod:`api.feedback`'s; these pages only show them. The form promises, and the
service keeps, that no address or other identifier of the sender is stored.
A refused report comes back as the form, filled in as sent, with what to
correct (422; 413 for a photo too large; 429 with ``Retry-After`` past the
per-client limit). Text in any language and script is accepted.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api import feedback as fb
from api.i18n import Words, local_name
from api.notices import private_terms
from api.pages.render import language, message, page
from campus.registry import Campus
from tickets.service import Tickets

router = APIRouter(include_in_schema=False)

ReceiptToken = Annotated[str, PathParam(min_length=1, max_length=100)]
Loose = Annotated[str, Query(max_length=200)]  # a QR code's preset: ignored when wrong


def _categories(lang: str) -> list[tuple[str, str]]:
    return [(c, fb.LABELS.get(c, {}).get(lang, c)) for c in fb.CATEGORIES]


def _buildings(campus: Campus, lang: str) -> list[tuple[str, str]]:
    return [(b.id, local_name(b, lang)) for b in campus.buildings.values()]


def _form(
    request: Request,
    lang: str,
    values: dict[str, str],
    *,
    error: str | None = None,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    here: str | None = None,
) -> HTMLResponse:
    campus: Campus = request.app.state.campus
    settings = request.app.state.settings
    response = page(
        request,
        "feedback_form.html",
        lang,
        {
            "categories": _categories(lang),
            "buildings": _buildings(campus, lang),
            "values": values,
            "error": error,
            "max_text": settings.feedback_max_text,
        },
        status_code=status_code,
        private=True,
        here=here,
    )
    response.headers.update(headers or {})
    return response


@router.get("/feedback", response_class=HTMLResponse)
def form(request: Request, building: Loose = "", room: Loose = "") -> HTMLResponse:
    """The feedback form, with the building and room of the QR code filled in."""
    campus: Campus = request.app.state.campus
    values = {
        "building": building if building in campus.buildings else "",
        "room": room if fb.ROOM.match(room or "") else "",
    }
    return _form(request, language(request), values)


@router.post("/feedback", response_class=HTMLResponse)
def send(
    request: Request,
    category: Annotated[str, Form(max_length=64)] = "",
    building: Annotated[str, Form(max_length=200)] = "",
    room: Annotated[str, Form(max_length=200)] = "",
    text: Annotated[str, Form(max_length=100_000)] = "",
    contact: Annotated[str, Form(max_length=1000)] = "",
    photo: Annotated[UploadFile | None, File()] = None,
) -> HTMLResponse:
    """Keep a report and answer with its receipt."""
    lang = language(request)
    words = Words(lang)
    values = {"category": category, "building": building, "room": room, "text": text}
    values["contact"] = contact
    limiter = getattr(request.app.state, "feedback_limiter", None)
    if limiter is not None:
        try:
            limiter.check(request)
        except HTTPException as exc:
            return _form(
                request,
                lang,
                values,
                error=words["too_many"],
                status_code=exc.status_code,
                headers=dict(exc.headers or {}),
                here="/feedback",
            )
    settings = request.app.state.settings
    submission = fb.Submission.from_form(
        settings,
        category=category,
        building=building,
        room=room,
        text=text,
        contact=contact,
        photo=photo,
        language=lang,
    )
    tickets: Tickets = request.app.state.tickets
    try:
        receipt = fb.submit(tickets, settings, request.app.state.campus, submission)
    except fb.FeedbackRefused as exc:
        label = words.get(exc.field, exc.field)
        return _form(
            request,
            lang,
            values,
            error=words("form_error", reason=f"{label}: {exc.message}"),
            status_code=exc.status,
            here="/feedback",
        )
    return page(
        request,
        "feedback_receipt.html",
        lang,
        {"token": receipt.token, "case_url": f"/feedback/r/{receipt.token}"},
        status_code=201,
        private=True,
        here=f"/feedback/r/{receipt.token}",
    )


def _case(
    request: Request,
    token: str,
    lang: str,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    tickets: Tickets = request.app.state.tickets
    view = fb.lookup(tickets, token)
    here = f"/feedback/r/{quote(token)}"
    if view is None:
        return message(request, lang, 404, "case_title", "case_missing", here=here)
    campus: Campus = request.app.state.campus
    tz = ZoneInfo(campus.timezone)
    building = campus.buildings.get(view.building)
    notice = view.notice
    if notice:  # staff-written; kept free of names and contacts on the way out too
        notice = private_terms(tickets.store, campus).scrub(notice)
    words = Words(lang)
    context: dict[str, Any] = {
        "v": view,
        "token": token,
        "category": fb.LABELS.get(view.category, {}).get(lang, view.category),
        "building": local_name(building, lang) if building else view.building,
        "created": view.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
        "ticket_state": words.get(f"st_{view.ticket_state}") if view.ticket_state else None,
        "notice": notice,
        "error": error,
    }
    return page(
        request,
        "feedback_case.html",
        lang,
        context,
        status_code=status_code,
        private=True,
        here=here,
    )


@router.get("/feedback/r/{token}", response_class=HTMLResponse)
def case(token: ReceiptToken, request: Request) -> Response:
    """How the report behind a receipt token is getting on."""
    return _case(request, token, language(request))


@router.post("/feedback/r/{token}/rate", response_class=HTMLResponse)
def rate(
    token: ReceiptToken,
    request: Request,
    rating: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """The sender's 1-5 rating of the repair, once its ticket is closed."""
    lang = language(request)
    words = Words(lang)
    try:
        value = int(rating)
    except ValueError:
        value = 0
    try:
        fb.rate(request.app.state.tickets, token, value)
    except fb.FeedbackRefused as exc:
        if exc.status == 404:
            here = f"/feedback/r/{quote(token)}"
            return message(request, lang, 404, "case_title", "case_missing", here=here)
        reason = words("form_error", reason=exc.message)
        return _case(request, token, lang, error=reason, status_code=exc.status)
    return RedirectResponse(f"/feedback/r/{quote(token)}", status_code=303)
