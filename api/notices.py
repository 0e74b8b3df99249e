"""Public notices: what occupants read on the status board about repairs under
way ("Water off in Dormitory 3, floors 2-4, repair crew on site, expected back
16:00"), and each building's state on the campus map.

Both are derived from the tickets that are not closed and that staff did not
mark ``internal``, through a privacy filter: a derived notice is built only from
the building's name in the registry, the floors of the devices concerned, the
ticket's trade, severity and state and its fix-by time; never from a ticket's
title, description, comments, device ids or people. When staff wrote a
``public_note`` for a ticket, the notice is that text instead, and even then
phone numbers, e-mail addresses, the names and ids of technicians, contractors
and accounts, and device ids are blotted out (and refused when the note is
written, :func:`Private.problems`).

Tickets of one building and one trade make one notice (three dorm rooms too hot
on floors 2, 3 and 4 are "floors 2-4"); its state is the least advanced of
them, and its expected time the latest fix-by time still ahead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from api.i18n import Words, local_name
from campus.registry import Campus
from tickets.db import Store
from tickets.models import Contractor, State, Technician, Ticket, User

MAJOR = frozenset({"P1", "P2"})  # an outage ("water off"), not a problem ("water supply problem")
TRADES = ("plumbing", "electrical", "hvac", "general")
REDACTED = "***"

# how far a repair has come, as occupants are told (least advanced first)
PROGRESS = ("open", "assigned", "on_site", "checking")
_PROGRESS_OF = {
    State.open.value: "open",
    State.acknowledged.value: "assigned",
    State.assigned.value: "assigned",
    State.in_progress.value: "on_site",
    State.resolved.value: "checking",
}
# a building's colour on the map: the worst severity of its unresolved tickets
BUILDING_STATES = ("ok", "warning", "fault")

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
PHONE = re.compile(
    r"(?<![\d])(?:\+\d{1,3}[\s-]?)?"
    r"(?:1[3-9]\d[\s-]?\d{4}[\s-]?\d{4}"  # a Chinese mobile number
    r"|0\d{2,3}[\s-]?\d{7,8}"  # a Chinese landline with its area code
    r"|\d{3}[\s-]\d{3,4}[\s-]\d{4}"  # 555-123-4567
    r"|\d{8,})"  # any other long run of digits
    r"(?!\d)"
)


@dataclass(frozen=True)
class Notice:
    """One public notice, in one language."""

    building: str
    building_name: str
    trade: str
    progress: str  # one of PROGRESS
    severity: str  # the most urgent of its tickets
    floors: tuple[int, ...]
    since: datetime  # UTC
    expected: datetime | None  # UTC; None when unknown or already past
    text: str
    staff_written: bool


class Private:
    """What must never reach a public page: known names and ids, phone numbers
    and e-mail addresses."""

    def __init__(self, names: Iterable[str] = (), ids: Iterable[str] = ()) -> None:
        terms = {t.strip() for t in (*names, *ids) if t and len(t.strip()) >= 2}
        # longest first, so that "tech-wang-jg" goes before "wang"
        ordered = sorted(terms, key=len, reverse=True)
        self._terms = (
            re.compile("|".join(re.escape(t) for t in ordered), re.IGNORECASE) if ordered else None
        )

    def scrub(self, text: str) -> str:
        """``text`` with every private thing in it replaced by ``***``."""
        text = EMAIL.sub(REDACTED, text)
        text = PHONE.sub(REDACTED, text)
        if self._terms is not None:
            text = self._terms.sub(REDACTED, text)
        return text

    def problems(self, text: str) -> list[str]:
        """What private things ``text`` holds (empty: none), to refuse a note with."""
        found = []
        if EMAIL.search(text):
            found.append("an e-mail address")
        if PHONE.search(text):
            found.append("a phone number")
        if self._terms is not None and self._terms.search(text):
            found.append("a person's name or id, or a device id")
        return found


def private_terms(store: Store, campus: Campus) -> Private:
    """Every name and id the ticket store and the registry know of people and devices."""
    names: list[str] = []
    ids: list[str] = list(campus.devices)
    with store.session() as s:
        for tech in s.scalars(select(Technician)):
            names.append(tech.name)
            ids.append(tech.id)
            if tech.email:
                ids.append(tech.email)
        for firm in s.scalars(select(Contractor)):
            names.append(firm.name)
            ids.append(firm.id)
        for user in s.scalars(select(User)):
            names.append(user.name)
            ids.append(user.id)
    return Private(names, ids)


def public_tickets(store: Store) -> list[Ticket]:
    """Tickets the public may hear of: not closed, not marked internal."""
    q = (
        select(Ticket)
        .where(Ticket.state != State.closed.value, Ticket.internal.is_(False))
        .order_by(Ticket.id)
    )
    with store.session() as s:
        return list(s.scalars(q).all())


def building_states(tickets: Iterable[Ticket]) -> dict[str, str]:
    """``ok``, ``warning`` (P3/P4) or ``fault`` (P1/P2) per building that has a public
    ticket not yet resolved (buildings not named are ``ok``)."""
    out: dict[str, str] = {}
    for t in tickets:
        if t.internal or t.state in (State.resolved.value, State.closed.value):
            continue
        state = "fault" if t.severity in MAJOR else "warning"
        if BUILDING_STATES.index(state) > BUILDING_STATES.index(out.get(t.building, "ok")):
            out[t.building] = state
    return out


def notices(
    tickets: Sequence[Ticket],
    campus: Campus,
    lang: str,
    now: datetime,
    private: Private | None = None,
) -> list[Notice]:
    """The public notices of ``tickets`` in ``lang``, most urgent first."""
    private = private or Private()
    words = Words(lang)
    tz = ZoneInfo(campus.timezone)
    groups: dict[tuple[str, str], list[Ticket]] = {}
    out: list[Notice] = []
    for t in tickets:
        if t.internal or t.state == State.closed.value or t.building not in campus.buildings:
            continue
        if t.public_note and t.public_note.strip():
            out.append(_notice(words, campus, tz, now, [t], private.scrub(t.public_note.strip())))
        else:
            groups.setdefault((t.building, t.trade), []).append(t)
    for group in groups.values():
        out.append(_notice(words, campus, tz, now, group, None))
    out.sort(key=lambda n: (n.severity, n.since))
    return out


def _notice(
    words: Words,
    campus: Campus,
    tz: ZoneInfo,
    now: datetime,
    group: list[Ticket],
    note: str | None,
) -> Notice:
    first = group[0]
    building = campus.buildings[first.building]
    name = local_name(building, words.lang)
    trade = first.trade if first.trade in TRADES else "general"
    severity = min(t.severity for t in group)
    progress = min((_PROGRESS_OF.get(t.state, "open") for t in group), key=PROGRESS.index)
    floors = sorted(
        {
            d.floor
            for t in group
            if t.device and (d := campus.devices.get(t.device)) is not None and d.floor is not None
        }
    )
    dues = [t.resolve_due for t in group if t.resolve_due is not None and t.resolve_due > now]
    expected = max(dues) if dues and progress != "checking" else None
    if note is None:
        text = _derive(words, name, trade, severity, progress, floors, expected, tz, now)
    else:
        text = note
    return Notice(
        building=first.building,
        building_name=name,
        trade=trade,
        progress=progress,
        severity=severity,
        floors=tuple(floors),
        since=min(t.first_seen for t in group),
        expected=expected,
        text=text,
        staff_written=note is not None,
    )


def _derive(
    words: Words,
    name: str,
    trade: str,
    severity: str,
    progress: str,
    floors: list[int],
    expected: datetime | None,
    tz: ZoneInfo,
    now: datetime,
) -> str:
    what = words[f"trade_{trade}_{'major' if severity in MAJOR else 'minor'}"]
    status = words[f"status_{progress}"]
    where = floor_text(words, floors)
    parts: list[str]
    if words.lang == "zh":
        gap = " " if where and name[-1:].isascii() and name[-1:].isalnum() else ""
        parts = [f"{name}{gap}{where}{what}", status]
    else:
        place = f"{name}, {where}" if where else name
        parts = [f"{what} in {place}", status]
    if expected is not None:
        parts.append(when_text(words, expected, tz, now))
    return words["sentence_sep"].join(parts) + words["sentence_end"]


def floor_text(words: Words, floors: Sequence[int]) -> str:
    """ "2-4层" / "floors 2-4", "3层" / "floor 3", "1、3层" / "floors 1, 3"; "" for none."""
    if not floors:
        return ""

    def one(n: int) -> str:
        return str(n) if n > 0 else words("floor_basement", n=-n if n < 0 else 0)

    if len(floors) == 1:
        return words("floor_one", n=one(floors[0]))
    if list(floors) == list(range(floors[0], floors[-1] + 1)) and floors[0] > 0:
        return words("floor_range", a=floors[0], b=floors[-1])
    return words("floor_list", list=words["list_sep"].join(one(f) for f in floors))


def when_text(words: Words, at: datetime, tz: ZoneInfo, now: datetime) -> str:
    """ "预计16:00恢复" today, with the date on another day, in the campus's time."""
    local = at.astimezone(tz)
    time = local.strftime("%H:%M")
    if local.date() == now.astimezone(tz).date():
        return words("expected", time=time)
    if words.lang == "zh":
        day = f"{local.month}月{local.day}日"
    else:
        day = f"{local.day} {local.strftime('%b')}"
    return words("expected_day", day=day, time=time)
