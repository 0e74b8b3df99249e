"""Anonymous feedback: validating a report, keeping it without its sender,
triaging it into the repair tickets, and the sender's receipt and rating.

**What is kept.** A report's category, building, room, text, the contact the
sender chose to give (optional), a photo (optional) and the language of the
form. Nothing that identifies the sender: no address, no user agent, no
cookie, not even in the logs (this module logs a report's number at most). The
sender gets a receipt token (``fb_`` and 32 URL-safe characters, 24 random
bytes); only its SHA-256 is stored, so the database alone cannot be used to
follow a case.

**Validation** (:class:`FeedbackRefused` names the field; HTTP 422 unless said):

* ``category``: a key of :data:`CATEGORIES`; ``building``: one of the campus;
  ``room``: ``[A-Za-z0-9_.-]``, 1-64 characters, or empty;
* ``text``: any language and script; normalised to NFC, line ends made
  ``\\n``, control characters other than newline and tab, lone surrogates and
  the bidirectional embedding/override/isolate controls (which can make text
  display in another order than it is stored) removed, then stripped; 1 to
  ``feedback_max_text`` characters;
* ``contact``: the same cleaning on one line, at most 200 characters, optional;
* ``language``: a short language tag (``zh``, ``en``, ``zh-Hans``...), at most 8;
* ``photo``: at most ``feedback_max_photo_bytes`` (else **413**); a PNG, JPEG
  or WebP by its first bytes (what the client calls it is not asked); at most
  50 megapixels. It is decoded and encoded again with Pillow, which drops
  every metadata block (EXIF with its GPS position and camera serial, XMP,
  text chunks, ICC profile) after turning the image upright as its EXIF said;
  a photo larger than 2560 pixels on its longer side is scaled down to that.
  It is stored as ``{var_dir}/feedback/<32 random hex>.<png|jpg|webp>``,
  readable by the service's user only.

**Triage** (in :func:`submit`): the *place* is the building (the room is
recorded and shown to staff, but a building's hot water is one system, so
reports from two rooms about it are one incident) and the *kind* is the
category's trade (:data:`CATEGORIES`). A report is linked, first match wins:

1. to a ticket of the same building and trade that is not closed (the most
   urgent, then the oldest), with a note on the ticket saying how many reports
   it now has and what the latest says;
2. else to a firing alert of the same building and trade (``alert_key``), and
   through it to the alert's ticket: the alert's ticket is looked up on every
   read, so a report linked to an alert follows the ticket the alert raises
   later (a ticket of the alert closed before the report came is an earlier
   incident, not this report's);
3. else, once ``feedback_ticket_threshold`` reports of the place and kind that
   are not linked arrived within ``feedback_window_s``, a ticket is raised with
   :meth:`~tickets.service.Tickets.raise_alert` (source ``feedback``, dedup key
   ``feedback:{building}:{trade}``, severity P2 for a leak, no water or a power
   outage, else P3, the title in the campus language from the category and
   building, the reports' rooms and texts in the description, never their
   contact) and all of them are linked to it.

Whenever a report is linked, the other unlinked reports of the same place and
kind in the window are linked with it: reports sent before an alarm fired join
its incident. The report is stored and step 1-2 tried in one transaction;
when they find nothing, the report is committed first and the triage tried
again before counting, so that of two concurrent submissions one always sees
the other's ticket, or the other links it (no report is left out), and the
database's one-open-ticket-per-dedup-key index makes concurrent raises one
ticket.

**Status** follows the linked ticket: ``received`` (not linked), ``linked``,
``closed`` (the ticket is closed; a reopened ticket makes it ``linked`` again).
It is worked out on every read from the ticket, not copied. Once closed, the
sender may rate the repair once, 1 to 5 (:func:`rate`).
"""

# The Chinese strings use full-width Chinese punctuation, as Chinese text should:
# ruff: noqa: RUF001

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, case, false, func, literal, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, aliased
from sqlalchemy.orm.attributes import set_committed_value

from campus.errors import CampusError
from campus.registry import Campus
from campus.settings import Settings
from tickets.models import AlertRecord, Comment, Feedback, Source, State, Ticket
from tickets.service import SEVERITIES, Alert, TicketError, Tickets, WorkScope

log = logging.getLogger("campus.api.feedback")

# category -> trade (the kind of repair that answers it)
CATEGORIES: dict[str, str] = {
    "no_hot_water": "plumbing",
    "water_leak": "plumbing",
    "no_water": "plumbing",
    "blocked_drain": "plumbing",
    "power_outage": "electrical",
    "lighting": "electrical",
    "too_hot": "hvac",
    "too_cold": "hvac",
    "ventilation": "hvac",
    "noise": "general",
    "cleaning": "general",
    "other": "general",
}

# category -> its name in each page language (forms, ticket titles)
LABELS: dict[str, dict[str, str]] = {
    "no_hot_water": {"zh": "没有热水", "en": "No hot water"},
    "water_leak": {"zh": "漏水", "en": "Water leak"},
    "no_water": {"zh": "停水", "en": "No water"},
    "blocked_drain": {"zh": "下水堵塞", "en": "Blocked drain"},
    "power_outage": {"zh": "停电", "en": "Power outage"},
    "lighting": {"zh": "照明故障", "en": "Lighting fault"},
    "too_hot": {"zh": "太热", "en": "Too hot"},
    "too_cold": {"zh": "太冷", "en": "Too cold"},
    "ventilation": {"zh": "通风不良", "en": "Poor ventilation"},
    "noise": {"zh": "噪音", "en": "Noise"},
    "cleaning": {"zh": "卫生清洁", "en": "Cleaning"},
    "other": {"zh": "其他", "en": "Other"},
}

URGENT = frozenset({"water_leak", "no_water", "power_outage"})  # P2; the rest P3
STATUSES = ("received", "linked", "closed")
TOKEN_PREFIX = "fb_"  # noqa: S105 (a prefix, not a secret)
TOKEN = re.compile(r"^fb_[A-Za-z0-9_-]{32}$")
ROOM = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
LANGUAGE = re.compile(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{1,4})?$")
MAX_CONTACT = 200
MAX_PIXELS = 50_000_000
MAX_SIDE = 2560
PHOTO_DIR = "feedback"
ACTOR = "feedback"
# bidirectional embeddings, overrides and isolates (not the plain LRM/RLM marks)
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
PHOTO_TYPES = {"png": "image/png", "jpg": "image/jpeg", "webp": "image/webp"}


def trade_of(category: str) -> str:
    """The trade that answers ``category``."""
    return CATEGORIES[category]


def categories_of(trade: str) -> list[str]:
    """The categories one trade answers."""
    return [c for c, t in CATEGORIES.items() if t == trade]


class FeedbackRefused(CampusError):
    """A report, receipt or rating refused; ``field`` names what is wrong and
    ``status`` is the HTTP answer (422 bad value, 413 photo too large, 404 no
    such receipt, 409 not now: not closed yet, or rated already)."""

    def __init__(self, field: str, message: str, status: int = 422) -> None:
        self.field = field
        self.message = message
        self.status = status
        super().__init__(f"{field}: {message}")


@dataclass
class Submission:
    """A report as a form or the API received it (``photo_type``, the type the
    client claimed, is not trusted: the photo's own bytes decide)."""

    category: str
    building: str
    room: str | None
    text: str
    contact: str | None
    photo: bytes | None = None
    photo_type: str | None = None
    language: str = "zh"

    @classmethod
    def from_form(
        cls,
        settings: Settings,
        *,
        category: str,
        building: str,
        room: str,
        text: str,
        contact: str,
        photo: Any,
        language: str,
    ) -> Submission:
        """A report from a multipart form (``photo``: an upload or None); empty
        fields are absent ones, and the photo is read only up to one byte past
        its limit (``clean_photo`` then refuses it)."""
        data: bytes | None = None
        if photo is not None and photo.filename:
            data = photo.file.read(settings.feedback_max_photo_bytes + 1) or None
        return cls(
            category=category,
            building=building,
            room=room or None,
            text=text,
            contact=contact or None,
            photo=data,
            photo_type=photo.content_type if data is not None else None,
            language=language,
        )


@dataclass(frozen=True)
class Receipt:
    """What the sender gets back: the token (shown once), the status and the
    ticket the report was linked to, if any."""

    token: str
    status: str
    ticket_id: int | None


@dataclass(frozen=True)
class FeedbackView:
    """A report as its receipt shows it to the sender: nothing of staff (no
    names), only the linked ticket's state and, unless staff marked the ticket
    internal, its public notice."""

    status: str
    created_at: datetime
    category: str
    trade: str
    building: str
    room: str | None
    ticket_id: int | None
    ticket_state: str | None
    notice: str | None
    can_rate: bool
    rating: int | None
    rated_at: datetime | None


@dataclass(frozen=True)
class StaffView:
    """A report as staff see it (``contact`` only for the roles allowed to)."""

    id: int
    created_at: datetime
    category: str
    trade: str
    building: str
    room: str | None
    text: str
    contact: str | None
    photo: str | None
    language: str
    status: str
    ticket_id: int | None
    ticket_state: str | None
    alert_key: str | None
    rating: int | None
    rated_at: datetime | None


# ------------------------------------------------------------------- submitting


def submit(tickets: Tickets, settings: Settings, campus: Campus, sub: Submission) -> Receipt:
    """Validate and keep one report, triage it (see the module's docstring) and
    return its receipt; :class:`FeedbackRefused` names what is wrong."""
    clean = _validated(settings, campus, sub)
    photo = _store_photo(settings, sub.photo) if sub.photo else None
    token = TOKEN_PREFIX + secrets.token_urlsafe(24)
    since = tickets.clock() - timedelta(seconds=settings.feedback_window_s)
    try:
        with tickets.store.session() as s:
            fb = Feedback(
                receipt_digest=digest(token),
                created_at=tickets.clock(),
                photo=photo,
                status="received",
                **clean,
            )
            s.add(fb)
            s.flush()
            fb_id = fb.id
            linked = _link_existing(tickets, s, fb, since, settings.language)
    except BaseException:
        if photo is not None:
            (_photo_dir(settings) / photo).unlink(missing_ok=True)
        raise
    if linked:
        return Receipt(token, "linked", fb.ticket_id)
    # committed now: a ticket raised by a concurrent report is either seen
    # here, or that report's linking (after its raise) sees this one
    try:
        ticket_id = _triage_again(tickets, settings, campus, fb_id, since)
    except (TicketError, SQLAlchemyError) as exc:
        # the report is kept: answer its receipt (a retry would send it twice);
        # the next report of its place counts it and raises the ticket
        log.warning("feedback %d kept, triage deferred: %s", fb_id, type(exc).__name__)
        ticket_id = None
    return Receipt(token, "received" if ticket_id is None else "linked", ticket_id)


def _validated(settings: Settings, campus: Campus, sub: Submission) -> dict[str, Any]:
    """The report's columns, cleaned, or :class:`FeedbackRefused`."""
    if not isinstance(sub.category, str) or sub.category not in CATEGORIES:
        raise FeedbackRefused("category", f"choose one of {', '.join(CATEGORIES)}")
    if not isinstance(sub.building, str) or sub.building not in campus.buildings:
        raise FeedbackRefused("building", "not a building of this campus")
    room = (sub.room or "").strip() if isinstance(sub.room, str | None) else None
    if room is None or (room and not ROOM.match(room)):
        raise FeedbackRefused("room", "use letters, digits, '.', '_' or '-' (at most 64)")
    if not isinstance(sub.text, str):
        raise FeedbackRefused("text", "must be text")
    text = clean_text(sub.text, multiline=True)
    if not text:
        raise FeedbackRefused("text", "say what is wrong")
    if len(text) > settings.feedback_max_text:
        raise FeedbackRefused(
            "text", f"at most {settings.feedback_max_text} characters (this is {len(text)})"
        )
    if sub.contact is not None and not isinstance(sub.contact, str):
        raise FeedbackRefused("contact", "must be text")
    contact = clean_text(sub.contact or "", multiline=False)
    if len(contact) > MAX_CONTACT:
        raise FeedbackRefused("contact", f"at most {MAX_CONTACT} characters")
    language = sub.language if isinstance(sub.language, str) else ""
    if len(language) > 8 or not LANGUAGE.match(language):
        raise FeedbackRefused("language", "a language tag such as zh or en")
    return {
        "category": sub.category,
        "building": sub.building,
        "room": room or None,
        "text": text,
        "contact": contact or None,
        "language": language,
    }


def clean_text(value: str, *, multiline: bool) -> str:
    """``value`` in NFC, with ``\\n`` line ends, without control characters
    (newline and tab kept when ``multiline``, else made spaces), lone
    surrogates or bidirectional controls, stripped."""
    value = unicodedata.normalize("NFC", value.replace("\r\n", "\n"))
    out = []
    for ch in value:
        if ch in "\n\r\t\u2028\u2029\x85":
            if ch == "\t":
                out.append("\t" if multiline else " ")
            else:
                out.append("\n" if multiline else " ")
        elif ch in BIDI_CONTROLS or unicodedata.category(ch) in ("Cc", "Cs"):
            continue
        else:
            out.append(ch)
    return unicodedata.normalize("NFC", "".join(out)).strip()


# ---------------------------------------------------------------------- photos


def sniff(data: bytes) -> str | None:
    """The image format of ``data`` by its first bytes: ``png``, ``jpg``, ``webp``."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def clean_photo(data: bytes, max_bytes: int) -> tuple[bytes, str]:
    """The photo re-encoded without metadata, and its extension; or refused."""
    if len(data) > max_bytes:
        raise FeedbackRefused("photo", f"at most {max_bytes} bytes", status=413)
    ext = sniff(data)
    if ext is None:
        raise FeedbackRefused("photo", "not a PNG, JPEG or WebP image")
    try:
        from PIL import Image, ImageOps
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        raise FeedbackRefused("photo", "photos are not accepted here (no image library)") from None
    fmt = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}[ext]
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as opened:
            if opened.width * opened.height > MAX_PIXELS:
                raise FeedbackRefused("photo", f"at most {MAX_PIXELS // 1_000_000} megapixels")
            if fmt == "JPEG":  # decode at a reduced scale when it will be shrunk anyway
                opened.draft("RGB", (MAX_SIDE, MAX_SIDE))
            image = ImageOps.exif_transpose(opened)
            image.load()
        if max(image.size) > MAX_SIDE:
            image.thumbnail((MAX_SIDE, MAX_SIDE))
        if fmt == "JPEG" and image.mode not in ("RGB", "L"):
            image = image.convert("RGB")
        if fmt == "WEBP" and image.mode not in ("RGB", "RGBA"):
            image = image.convert("RGBA")
        # a fresh image carries the pixels only: no EXIF, XMP, ICC or text chunks
        bare = Image.new(image.mode, image.size)
        if image.mode == "P":
            palette = image.getpalette()
            if palette is not None:
                bare.putpalette(palette)
        bare.paste(image)
        out = io.BytesIO()
        if fmt == "PNG":
            bare.save(out, "PNG", optimize=False)
        else:
            bare.save(out, fmt, quality=85)
    except FeedbackRefused:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise FeedbackRefused("photo", f"not a readable {fmt} image") from None
    return out.getvalue(), ext


def _photo_dir(settings: Settings) -> Path:
    return settings.var_dir / PHOTO_DIR


def _store_photo(settings: Settings, data: bytes) -> str:
    """Clean and write the photo; its file name under ``{var_dir}/feedback``."""
    content, ext = clean_photo(data, settings.feedback_max_photo_bytes)
    folder = _photo_dir(settings)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = f"{secrets.token_hex(16)}.{ext}"
    fd = os.open(folder / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(content)
    return name


def photo_path(settings: Settings, name: str) -> tuple[Path, str] | None:
    """The stored photo ``name`` and its media type (``None``: no such file)."""
    stem, _, ext = name.partition(".")
    if not re.fullmatch(r"[0-9a-f]{32}", stem) or ext not in PHOTO_TYPES:
        return None
    path = _photo_dir(settings) / name
    return (path, PHOTO_TYPES[ext]) if path.is_file() else None


# ---------------------------------------------------------------------- triage


def _place(fb: Feedback, since: datetime) -> Any:
    """Reports of ``fb``'s place and kind in the window that are not linked."""
    return and_(
        Feedback.building == fb.building,
        Feedback.category.in_(categories_of(trade_of(fb.category))),
        Feedback.ticket_id.is_(None),
        Feedback.alert_key.is_(None),
        Feedback.created_at >= since,
    )


def _link_existing(
    tickets: Tickets, s: Session, fb: Feedback, since: datetime, language: str
) -> bool:
    """Link ``fb`` (and its unlinked neighbours) to an open ticket or a firing
    alert of its place and kind; whether one was found."""
    trade = trade_of(fb.category)
    urgency = case(*((Ticket.severity == p, i) for i, p in enumerate(SEVERITIES)), else_=9)
    ticket = s.scalars(
        select(Ticket)
        .where(
            Ticket.building == fb.building,
            Ticket.trade == trade,
            Ticket.state != State.closed.value,
        )
        .order_by(urgency, Ticket.id)
        .limit(1)
    ).first()
    if ticket is not None:
        _link(s, fb, since, ticket_id=ticket.id, alert_key=None)
        _note(tickets, s, ticket.id, fb, language)
        return True
    alert = s.scalars(
        select(AlertRecord)
        .where(
            AlertRecord.building == fb.building,
            AlertRecord.trade == trade,
            AlertRecord.state == "firing",
        )
        .order_by(AlertRecord.severity, AlertRecord.fired_at)
        .limit(1)
    ).first()
    if alert is not None:
        _link(s, fb, since, ticket_id=None, alert_key=alert.dedup_key)
        return True
    return False


def _link(
    s: Session, fb: Feedback, since: datetime, *, ticket_id: int | None, alert_key: str | None
) -> None:
    """Link ``fb`` and the unlinked reports of its place and kind in the window.

    The rows are locked in id order first: two reports linking each other's
    rows at the same instant wait for one another instead of deadlocking."""
    ids = list(
        s.scalars(
            select(Feedback.id)
            .where(or_(Feedback.id == fb.id, _place(fb, since)))
            .order_by(Feedback.id)
            .with_for_update()
        )
    )
    s.execute(
        update(Feedback)
        .where(Feedback.id.in_(ids))
        .values(status="linked", ticket_id=ticket_id, alert_key=alert_key)
        .execution_options(synchronize_session=False)
    )
    for name, value in (("status", "linked"), ("ticket_id", ticket_id), ("alert_key", alert_key)):
        set_committed_value(fb, name, value)


def _note(tickets: Tickets, s: Session, ticket_id: int, fb: Feedback, language: str) -> None:
    """Tell staff on the ticket how many reports it has and what the latest says."""
    n = s.scalar(select(func.count()).where(Feedback.ticket_id == ticket_id)) or 0
    label = LABELS[fb.category][_lang(language)]
    where = f", room {fb.room}" if fb.room else ""
    if _lang(language) == "zh":
        where = f"，房间 {fb.room}" if fb.room else ""
        text = f"住户反馈共 {n} 条（最新：{label}{where}）：{_excerpt(fb.text)}"
    else:
        text = f"{n} feedback reports (latest: {label}{where}): {_excerpt(fb.text)}"
    s.add(Comment(ticket_id=ticket_id, at=tickets.clock(), author=ACTOR, text=text))


def _triage_again(
    tickets: Tickets, settings: Settings, campus: Campus, fb_id: int, since: datetime
) -> int | None:
    """After the report is committed: link it, or count its place's unlinked
    reports and raise a ticket at the threshold; the ticket id, if linked."""
    with tickets.store.session() as s:
        fb = s.get(Feedback, fb_id)
        assert fb is not None
        if fb.ticket_id is not None or fb.alert_key is not None:
            return fb.ticket_id  # a concurrent report linked it already
        if _link_existing(tickets, s, fb, since, settings.language):
            return fb.ticket_id
        reports = list(s.scalars(select(Feedback).where(_place(fb, since)).order_by(Feedback.id)))
        if len(reports) < settings.feedback_ticket_threshold:
            return None
        building, category = fb.building, fb.category
    trade = trade_of(category)
    raised = tickets.raise_alert(
        Alert(
            dedup_key=f"feedback:{building}:{trade}",
            source=Source.feedback,
            severity="P2" if any(r.category in URGENT for r in reports) else "P3",
            building=building,
            trade=trade,
            title=_title(campus, building, category, settings.language),
            description=_description(reports, settings.feedback_window_s, settings.language),
            at=tickets.clock(),
        ),
        actor=ACTOR,
    )
    with tickets.store.session() as s:
        fb = s.get(Feedback, fb_id)
        assert fb is not None
        if fb.ticket_id is None and fb.alert_key is None:
            _link(s, fb, since, ticket_id=raised.ticket_id, alert_key=None)
            _note(tickets, s, raised.ticket_id, fb, settings.language)
        return fb.ticket_id


def _lang(language: str) -> str:
    return "zh" if language.startswith("zh") else "en"


def _title(campus: Campus, building: str, category: str, language: str) -> str:
    name = campus.buildings[building].name
    label = LABELS[category][_lang(language)]
    if _lang(language) == "zh":
        return f"{name}：{label}（住户反馈）"
    return f"{label} in {name} (occupant reports)"


def _description(reports: Sequence[Feedback], window_s: int, language: str) -> str:
    hours = f"{window_s / 3600:g}"
    if _lang(language) == "zh":
        head = f"{hours} 小时内收到 {len(reports)} 条住户反馈："
    else:
        head = f"{len(reports)} occupant reports within {hours} h:"
    lines = [head]
    for r in reports[:20]:
        room = f"[{r.room}] " if r.room else ""
        lines.append(f"- {room}{LABELS[r.category][_lang(language)]}: {_excerpt(r.text)}")
    if len(reports) > 20:
        lines.append(f"- ... {len(reports) - 20} more")
    return "\n".join(lines)


def _excerpt(text: str, limit: int = 300) -> str:
    one = " ".join(text.split())
    return one if len(one) <= limit else one[: limit - 1] + "…"


# ------------------------------------------------------------ receipts, rating


def digest(token: str) -> str:
    """The stored form of a receipt token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _status_of(linked_ticket: Any, ticket_state: Any) -> Any:
    """The SQL expression of a report's status (see the module's docstring)."""
    return case(
        (ticket_state == State.closed.value, literal("closed")),
        (
            or_(linked_ticket.is_not(None), Feedback.alert_key.is_not(None)),
            literal("linked"),
        ),
        else_=literal("received"),
    )


def _rows() -> Any:
    """Reports with their effective ticket, its state and flags, and their status.

    The effective ticket is the report's own, else its alert's: the ticket the
    alert has open, or one closed after the report came (the report's incident
    was handled). A ticket of the alert closed before the report came is an
    earlier incident, and is not the report's."""
    alert = aliased(AlertRecord)
    earlier = aliased(Ticket)
    ticket = aliased(Ticket)
    alerts_ticket = case(
        (
            or_(earlier.closed_at.is_(None), earlier.closed_at >= Feedback.created_at),
            alert.ticket_id,
        ),
        else_=None,
    )
    linked = func.coalesce(Feedback.ticket_id, alerts_ticket)
    return (
        (
            select(
                Feedback,
                linked.label("linked"),
                ticket.state,
                ticket.internal,
                ticket.public_note,
                _status_of(linked, ticket.state).label("status"),
            )
            .outerjoin(alert, alert.dedup_key == Feedback.alert_key)
            .outerjoin(earlier, earlier.id == alert.ticket_id)
            .outerjoin(ticket, ticket.id == linked)
        ),
        ticket,
        linked,
    )


def lookup(tickets: Tickets, token: str) -> FeedbackView | None:
    """The report behind a receipt token (``None``: no such receipt)."""
    if not isinstance(token, str) or not TOKEN.match(token):
        return None
    q, _, _ = _rows()
    with tickets.store.session() as s:
        row = s.execute(q.where(Feedback.receipt_digest == digest(token))).first()
    if row is None:
        return None
    fb, linked, state, internal, note, status = row
    return FeedbackView(
        status=status,
        created_at=fb.created_at,
        category=fb.category,
        trade=trade_of(fb.category) if fb.category in CATEGORIES else "general",
        building=fb.building,
        room=fb.room,
        ticket_id=linked,
        ticket_state=state,
        notice=None if internal or not note else note,
        can_rate=status == "closed" and fb.rating is None,
        rating=fb.rating,
        rated_at=fb.rated_at,
    )


def rate(tickets: Tickets, token: str, rating: int) -> FeedbackView:
    """Record the sender's rating (1-5) of the closed ticket, once."""
    if isinstance(rating, bool) or not isinstance(rating, int) or not 1 <= rating <= 5:
        raise FeedbackRefused("rating", "a whole number from 1 to 5")
    view = lookup(tickets, token)
    if view is None:
        raise FeedbackRefused("token", "no such receipt", status=404)
    if view.rating is not None:
        raise FeedbackRefused("rating", "this report was rated already", status=409)
    if view.status != "closed":
        raise FeedbackRefused(
            "rating", "the repair can be rated once its ticket is closed", status=409
        )
    with tickets.store.session() as s:
        done = s.execute(
            update(Feedback)
            .where(Feedback.receipt_digest == digest(token), Feedback.rating.is_(None))
            .values(
                rating=rating, rated_at=tickets.clock(), status="closed", ticket_id=view.ticket_id
            )
            .execution_options(synchronize_session=False)
        )
    if getattr(done, "rowcount", 1) == 0:  # a second rating sent at the same time
        raise FeedbackRefused("rating", "this report was rated already", status=409)
    after = lookup(tickets, token)
    assert after is not None
    return after


# -------------------------------------------------------------------- for staff


def page(
    tickets: Tickets,
    *,
    building: str | None = None,
    status: str | None = None,
    category: str | None = None,
    scope: WorkScope | None = None,
    with_contact: bool = False,
    limit: int = 50,
    offset: int = 0,
    feedback_id: int | None = None,
) -> tuple[list[StaffView], int]:
    """Reports newest first, filtered, and how many match in all. ``scope``: a
    technician's (reports of their team's trade in its buildings, and those
    linked to a ticket given to them); ``with_contact``: show the contact."""
    q, ticket, linked = _rows()
    conds: list[Any] = []
    if feedback_id is not None:
        conds.append(Feedback.id == feedback_id)
    if building:
        conds.append(Feedback.building == building)
    if status:
        conds.append(_status_of(linked, ticket.state) == status)
    if category:
        conds.append(Feedback.category == category)
    if scope is not None:
        mine = ticket.technician_id == scope.technician if scope.technician else false()
        team = scope.team_clause(
            lambda trade: Feedback.category.in_(categories_of(trade)), Feedback.building
        )
        conds.append(or_(mine, team))
    with tickets.store.session() as s:
        total = s.scalar(select(func.count()).select_from(q.where(*conds).subquery())) or 0
        rows = s.execute(
            q.where(*conds).order_by(Feedback.id.desc()).limit(limit).offset(offset)
        ).all()
    out = [
        StaffView(
            id=fb.id,
            created_at=fb.created_at,
            category=fb.category,
            trade=CATEGORIES.get(fb.category, "general"),
            building=fb.building,
            room=fb.room,
            text=fb.text,
            contact=fb.contact if with_contact else None,
            photo=fb.photo,
            language=fb.language,
            status=st,
            ticket_id=lk,
            ticket_state=state,
            alert_key=fb.alert_key,
            rating=fb.rating,
            rated_at=fb.rated_at,
        )
        for fb, lk, state, _internal, _note, st in rows
    ]
    return out, total


def get(
    tickets: Tickets, feedback_id: int, scope: WorkScope | None = None, with_contact: bool = False
) -> StaffView | None:
    """One report for staff (``None``: missing, or outside ``scope``)."""
    found, _ = page(
        tickets, feedback_id=feedback_id, scope=scope, with_contact=with_contact, limit=1
    )
    return found[0] if found else None
