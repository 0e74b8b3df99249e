"""``/api/feedback``: anonymous reports from students and staff, their receipts
and ratings (public), and the list staff read (with a token).

Public routes need no token: ``POST /api/feedback`` (JSON) and
``POST /api/feedback/upload`` (multipart, with a photo) answer a receipt token;
``GET /api/feedback/receipt/{token}`` follows the case and
``POST /api/feedback/receipt/{token}/rating`` rates the repair once its ticket
is closed. The public POSTs of a client count against one rate limit
(``CAMPUS_FEEDBACK_RATE_PER_HOUR``; :mod:`api.limits`), before their body is
looked at: over it, 429 with ``Retry-After``. The proxies whose
``X-Forwarded-For`` is believed are ``settings.api_trusted_proxies``
(comma-separated networks) when the settings have it, else loopback. Bodies
over ``CAMPUS_API_MAX_BODY_BYTES`` are 413 unread.

Staff routes (``GET /api/feedback``, ``GET /api/feedback/{id}``, its photo):
every role reads; a technician sees only the reports of their team's trade in
its buildings and those linked to a ticket given to them (any other is a 404);
the sender's ``contact`` is personal data and is shown to engineers and admins
only (``null`` for viewers and technicians).

Nothing about the client (address, user agent, cookies) reaches the service:
the routes pass it only the fields of the report (:mod:`api.feedback`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    File,
    Form,
    HTTPException,
    Path,
    Query,
    Request,
    UploadFile,
    status,
)
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, Field, StrictInt

from api import feedback as service
from api.accounts import Principal
from api.deps import PrincipalDep, TicketsDep
from api.limits import RateLimiter
from api.routers.tickets import scope_of
from api.schemas import In, Problem
from campus.settings import Settings
from tickets.models import Role

router = APIRouter(prefix="/api/feedback", tags=["feedback"])


class Refused(BaseModel):
    """A refused field: the service's refusal names it in one sentence; the
    request's schema validation lists each problem with its location."""

    detail: str | list[dict[str, Any]]


ROOM_PATTERN = r"^[A-Za-z0-9_.-]{0,64}$"
TOKEN_PATTERN = service.TOKEN.pattern
CONTACT_ROLES = frozenset({Role.engineer, Role.admin})
CATEGORY_DOC = "One of: " + ", ".join(f"`{c}` ({t})" for c, t in service.CATEGORIES.items())
PUBLIC_POST: dict[int | str, dict[str, Any]] = {
    413: {"model": Problem, "description": "The body (or the photo) is too large."},
    422: {"model": Refused, "description": "A field is wrong; the message names it."},
    429: {"model": Problem, "description": "Too many posts from this client; see Retry-After."},
    503: {"model": Problem, "description": "The ticket store is not answering; try again."},
}
STAFF: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No valid bearer token."},
    422: {"model": Refused, "description": "A parameter is wrong; the answer names it."},
    503: {"model": Problem, "description": "The ticket store is not answering; try again."},
}


def install(app: FastAPI, settings: Settings) -> None:
    """The public POSTs' rate limiter (``app.state.feedback_limiter``) and the
    answer to a refused report (its status, naming the field)."""
    app.state.feedback_limiter = RateLimiter(
        settings.feedback_rate_per_hour, trusted=settings.trusted_proxies
    )

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, service.FeedbackRefused)
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    app.add_exception_handler(service.FeedbackRefused, refused)


def limited(request: Request) -> None:
    """Count a public POST against its client's rate limit (429 over it)."""
    limiter: RateLimiter = request.app.state.feedback_limiter
    limiter.check(request)


# ----------------------------------------------------------------------- models


class FeedbackIn(In):
    """An anonymous report (no photo: send one with ``/api/feedback/upload``)."""

    category: str = Field(
        max_length=32, description=CATEGORY_DOC, json_schema_extra={"enum": [*service.CATEGORIES]}
    )
    building: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="A building id.")
    room: str | None = Field(None, pattern=ROOM_PATTERN, description="Optional room number.")
    text: str = Field(
        min_length=1,
        max_length=100_000,
        description="What is wrong, in any language (at most CAMPUS_FEEDBACK_MAX_TEXT "
        "characters after cleaning).",
    )
    contact: str | None = Field(
        None, max_length=200, description="Optional: how to answer you (shown to engineers only)."
    )
    language: str | None = Field(
        None,
        pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,4})?$",
        max_length=8,
        description="The language of the form (default: the campus's).",
    )


class ReceiptOut(BaseModel):
    """What a report gets back: keep the token, it is shown only this once."""

    token: str = Field(description="Follows the case at /api/feedback/receipt/{token}.")
    status: Literal["received", "linked", "closed"]
    ticket_id: int | None
    url: str = Field(description="Where to follow the case (JSON).")
    page_url: str = Field(description="The same case as a page, for people.")


class CaseOut(BaseModel):
    """A report as its receipt shows it: no names, only the ticket's state."""

    status: Literal["received", "linked", "closed"]
    created_at: datetime
    category: str
    trade: str
    building: str
    room: str | None
    ticket_id: int | None
    ticket_state: str | None
    notice: str | None = Field(description="The public notice of the ticket, if any.")
    can_rate: bool = Field(description="The ticket is closed and the report not yet rated.")
    rating: int | None
    rated_at: datetime | None

    @classmethod
    def of(cls, v: service.FeedbackView) -> CaseOut:
        return cls.model_validate(v, from_attributes=True)


class RatingIn(In):
    """How satisfied the sender is with the repair (1 worst, 5 best)."""

    rating: StrictInt = Field(ge=1, le=5)


class FeedbackOut(BaseModel):
    """A report as staff read it."""

    id: int
    created_at: datetime
    category: str
    trade: str
    building: str
    room: str | None
    text: str
    contact: str | None = Field(description="Engineers and admins only; null for the others.")
    photo_url: str | None
    language: str
    status: Literal["received", "linked", "closed"]
    ticket_id: int | None
    ticket_state: str | None
    alert_key: str | None
    rating: int | None
    rated_at: datetime | None

    @classmethod
    def of(cls, v: service.StaffView) -> FeedbackOut:
        fields = {k: getattr(v, k) for k in cls.model_fields if k != "photo_url"}
        photo = f"/api/feedback/{v.id}/photo" if v.photo else None
        return cls(photo_url=photo, **fields)


class FeedbackPage(BaseModel):
    """One page of reports, newest first."""

    items: list[FeedbackOut]
    total: int
    limit: int
    offset: int


# ----------------------------------------------------------------------- public


def _receipt(r: service.Receipt) -> ReceiptOut:
    return ReceiptOut(
        token=r.token,
        status=r.status,
        ticket_id=r.ticket_id,
        url=f"/api/feedback/receipt/{r.token}",
        page_url=f"/feedback/r/{r.token}",
    )


@router.post(
    "",
    response_model=ReceiptOut,
    status_code=status.HTTP_201_CREATED,
    responses=PUBLIC_POST,
    dependencies=[Depends(limited)],
)
def submit(body: FeedbackIn, svc: TicketsDep, request: Request) -> ReceiptOut:
    """Send an anonymous report; answers the receipt token that follows the case."""
    state = request.app.state
    sub = service.Submission(
        category=body.category,
        building=body.building,
        room=body.room,
        text=body.text,
        contact=body.contact,
        language=body.language or state.settings.language,
    )
    return _receipt(service.submit(svc, state.settings, state.campus, sub))


@router.post(
    "/upload",
    response_model=ReceiptOut,
    status_code=status.HTTP_201_CREATED,
    responses=PUBLIC_POST,
    dependencies=[Depends(limited)],
)
def upload(
    svc: TicketsDep,
    request: Request,
    category: Annotated[str, Form(max_length=32, description=CATEGORY_DOC)],
    building: Annotated[str, Form(pattern=r"^[A-Za-z0-9_.-]{1,64}$")],
    text: Annotated[str, Form(min_length=1, max_length=100_000)],
    room: Annotated[str, Form(pattern=ROOM_PATTERN)] = "",
    contact: Annotated[str, Form(max_length=200)] = "",
    language: Annotated[str, Form(pattern=r"^([A-Za-z]{2,3}(-[A-Za-z0-9]{1,4})?)?$")] = "",
    photo: Annotated[
        UploadFile | None, File(description="PNG, JPEG or WebP; metadata is removed.")
    ] = None,
) -> ReceiptOut:
    """The same report as a multipart form, with an optional photo."""
    state = request.app.state
    settings: Settings = state.settings
    sub = service.Submission.from_form(
        settings,
        category=category,
        building=building,
        room=room or "",
        text=text,
        contact=contact or "",
        photo=photo,
        language=language or settings.language,
    )
    return _receipt(service.submit(svc, settings, state.campus, sub))


Token = Annotated[str, Path(pattern=TOKEN_PATTERN, description="The receipt token.")]


@router.get(
    "/receipt/{token}",
    response_model=CaseOut,
    responses={404: {"model": Problem, "description": "No such receipt."}},
)
def receipt(token: Token, svc: TicketsDep) -> CaseOut:
    """Follow a report: its status and its ticket's state (no token needed)."""
    view = service.lookup(svc, token)
    if view is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "token: no such receipt")
    return CaseOut.of(view)


@router.post(
    "/receipt/{token}/rating",
    response_model=CaseOut,
    responses={
        **PUBLIC_POST,
        404: {"model": Problem, "description": "No such receipt."},
        409: {"model": Problem, "description": "Not closed yet, or rated already."},
    },
    dependencies=[Depends(limited)],
)
def rating(token: Token, body: RatingIn, svc: TicketsDep) -> CaseOut:
    """Rate the repair, once, when the report's ticket is closed."""
    return CaseOut.of(service.rate(svc, token, body.rating))


# ------------------------------------------------------------------------ staff


def _contact_allowed(who: Principal) -> bool:
    return who.role in CONTACT_ROLES


@router.get("", response_model=FeedbackPage, responses=STAFF)
def list_feedback(
    svc: TicketsDep,
    who: PrincipalDep,
    building: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = None,
    status_: Annotated[
        Literal["received", "linked", "closed"] | None, Query(alias="status")
    ] = None,
    category: Annotated[str | None, Query(max_length=32, description=CATEGORY_DOC)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> FeedbackPage:
    """Reports, newest first (a technician's: their trade's in their buildings)."""
    if category is not None and category not in service.CATEGORIES:
        raise HTTPException(422, f"category: choose one of {', '.join(service.CATEGORIES)}")
    items, total = service.page(
        svc,
        building=building,
        status=status_,
        category=category,
        scope=scope_of(svc, who),
        with_contact=_contact_allowed(who),
        limit=limit,
        offset=offset,
    )
    return FeedbackPage(
        items=[FeedbackOut.of(v) for v in items], total=total, limit=limit, offset=offset
    )


FeedbackId = Annotated[int, Path(ge=1, le=2**31 - 1)]
NOT_YOURS: dict[int | str, dict[str, Any]] = {
    **STAFF,
    404: {"model": Problem, "description": "No such report, or not one of yours."},
}


def _report(svc: TicketsDep, who: Principal, feedback_id: int) -> service.StaffView:
    view = service.get(svc, feedback_id, scope_of(svc, who), _contact_allowed(who))
    if view is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no feedback {feedback_id}")
    return view


@router.get("/{feedback_id}", response_model=FeedbackOut, responses=NOT_YOURS)
def read_feedback(feedback_id: FeedbackId, svc: TicketsDep, who: PrincipalDep) -> FeedbackOut:
    """One report."""
    return FeedbackOut.of(_report(svc, who, feedback_id))


@router.get(
    "/{feedback_id}/photo",
    response_class=FileResponse,
    responses={
        **NOT_YOURS,
        200: {"content": {t: {} for t in service.PHOTO_TYPES.values()}},
    },
)
def read_photo(
    feedback_id: FeedbackId, svc: TicketsDep, who: PrincipalDep, request: Request
) -> FileResponse:
    """A report's photo (re-encoded on arrival: no metadata)."""
    view = _report(svc, who, feedback_id)
    found = service.photo_path(request.app.state.settings, view.photo) if view.photo else None
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"feedback {feedback_id} has no photo")
    path, media_type = found
    return FileResponse(
        path,
        media_type=media_type,
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"},
    )
