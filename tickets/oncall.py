"""Who is on call: teams, technicians, rotations and escalation (``config/oncall.yaml``).

An emergency-repair ticket must reach a technician of the right trade for the
building at once, and climb an escalation chain (primary -> secondary ->
supervisor) when nobody acknowledges it in time. This module holds the
configuration model, a loader whose every error names file, line and field,
and :class:`OnCall`, a pure resolver (no clock, no I/O) the ticket service asks
"who is on call for plumbing in dorm-3 at this instant?".

Precedence, from strongest: an override (a named person replaces the primary
for a span), then a holiday assignment, then the team's rotation. Rotation
handoffs happen at local wall-clock time in the campus time zone, so a weekly
handoff at ``mon 08:00`` stays at 08:00 across a daylight-saving change.
SLA and escalation durations are elapsed time: "acknowledge within 1d" means
24 real hours even across a DST change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, field_validator, model_validator

from campus.errors import CampusError, ConfigError, ConfigIssue
from campus.yamlconf import Located, Strict, load_located, load_located_text, validate
from rules.model import DAYS, ID_RE, Severity, Trade, duration

ALL = "*"
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
PHONE_RE = re.compile(r"\+?[0-9][0-9 ()-]{4,24}")
HANDOFF_RE = re.compile(r"(?:([A-Za-z]+)\s+)?(\d{1,2}):(\d{2})")

Path_ = tuple[str | int, ...]


class UnknownPerson(CampusError, KeyError):
    """A technician or contractor id that the on-call file does not define.

    A ``KeyError`` so callers may treat it as a failed lookup, but with a
    readable message instead of KeyError's quoted repr.
    """

    def __init__(self, kind: str, person_id: str) -> None:
        self.kind = kind
        self.person_id = person_id
        super().__init__(f"no {kind} with id {person_id!r} in the on-call configuration")

    def __str__(self) -> str:
        return str(self.args[0])


class NoTeam(CampusError, LookupError):
    """No team covers a trade in a building (the config's coverage has a hole)."""


class Language(StrEnum):
    """The language notifications to a person are written in."""

    zh = "zh"
    en = "en"


class Role(StrEnum):
    """A place in the escalation chain of a team."""

    primary = "primary"
    secondary = "secondary"
    supervisor = "supervisor"


def _person_id(value: str) -> str:
    if not ID_RE.fullmatch(value):
        raise ValueError(f"id {value!r}: use lower-case letters, digits, '-', '_', '.'")
    return value


def _buildings(value: Any) -> Any:
    """``"*"`` -> ``("*",)``; a list -> a tuple; an empty list is refused."""
    if value == ALL:
        return (ALL,)
    if isinstance(value, list):
        if not value:
            raise ValueError('list at least one building id, or "*" for every building')
        return tuple(value)
    if isinstance(value, str):
        return (value,)
    return value


def _email(value: str) -> str:
    if not EMAIL_RE.fullmatch(value):
        raise ValueError(f"email {value!r} is not an address like name@example.edu.cn")
    return value


def _phone(value: str | None) -> str | None:
    if value is not None and not PHONE_RE.fullmatch(value):
        raise ValueError(f"phone {value!r}: digits, spaces, '+', '-' and brackets only")
    return value


class Deadlines(Strict):
    """How long a ticket of one severity may wait for acknowledgement and repair."""

    acknowledge: timedelta
    resolve: timedelta

    _durations = field_validator("acknowledge", "resolve", mode="before")(
        lambda cls, v: duration(v)
    )


class SLA(Strict):
    """Deadlines for each severity; all four are required so no ticket lacks one."""

    P1: Deadlines
    P2: Deadlines
    P3: Deadlines
    P4: Deadlines

    def of(self, severity: Severity) -> Deadlines:
        """The deadlines of ``severity``."""
        out: Deadlines = getattr(self, severity.value)
        return out


class Team(Strict):
    """A crew of one trade responsible for some buildings (``"*"``: all of them)."""

    id: str
    name: str = Field(min_length=1)
    trade: Trade
    buildings: tuple[str, ...]
    supervisor: str

    _id = field_validator("id")(lambda cls, v: _person_id(v))
    _b = field_validator("buildings", mode="before")(lambda cls, v: _buildings(v))

    def covers(self, building: str) -> bool:
        """Whether the team is responsible for ``building``."""
        return ALL in self.buildings or building in self.buildings


class Technician(Strict):
    """A member of staff who can be paged."""

    id: str
    name: str = Field(min_length=1)
    team: str
    language: Language = Language.zh
    email: str
    phone: str | None = None
    channels: tuple[str, ...] = ()

    _id = field_validator("id")(lambda cls, v: _person_id(v))
    _email = field_validator("email")(lambda cls, v: _email(v))
    _phone = field_validator("phone")(lambda cls, v: _phone(v))

    @field_validator("team", mode="before")
    @classmethod
    def _one_team(cls, v: Any) -> Any:
        if isinstance(v, list):
            raise ValueError("a technician belongs to exactly one team; name one team id")
        return v

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            if not ID_RE.fullmatch(name):
                raise ValueError(f"channel {name!r}: use a notifier name such as email, wecom")
        return v


class Contractor(Strict):
    """An outside firm called when the campus crew cannot do the job."""

    id: str
    name: str = Field(min_length=1)
    trades: tuple[Trade, ...] = Field(min_length=1)
    buildings: tuple[str, ...] = (ALL,)
    email: str
    phone: str | None = None
    response: timedelta | None = None

    _id = field_validator("id")(lambda cls, v: _person_id(v))
    _email = field_validator("email")(lambda cls, v: _email(v))
    _phone = field_validator("phone")(lambda cls, v: _phone(v))
    _b = field_validator("buildings", mode="before")(lambda cls, v: _buildings(v))

    @field_validator("response", mode="before")
    @classmethod
    def _response(cls, v: Any) -> Any:
        return None if v is None else duration(v)

    def covers(self, trade: Trade, building: str) -> bool:
        """Whether the contract includes ``trade`` in ``building``."""
        return trade in self.trades and (ALL in self.buildings or building in self.buildings)


class Handoff(Strict):
    """When a rotation turn changes hands: a weekday (optional) and a local time."""

    day: str | None = None
    at: time

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, v: Any) -> Any:
        if isinstance(v, bool):
            raise ValueError('write the handoff as "mon 08:00" (weekday and HH:MM)')
        if isinstance(v, int):
            # YAML 1.1 reads a bare 8:00 as the number 480.
            raise ValueError('write the time with two digits or in quotes: "mon 08:00"')
        if not isinstance(v, str):
            return v
        m = HANDOFF_RE.fullmatch(v.strip())
        if not m:
            raise ValueError(f"handoff {v!r}: write a weekday and a time, e.g. mon 08:00")
        day, hh, mm = m.groups()
        if int(hh) > 23 or int(mm) > 59:
            raise ValueError(f"handoff {v!r}: {hh}:{mm} is not a time of day")
        if day is not None:
            day = day.lower()[:3]
            if day not in DAYS:
                raise ValueError(f"handoff {v!r}: the day is one of {', '.join(DAYS)}")
        return {"day": day, "at": time(int(hh), int(mm))}

    def __str__(self) -> str:
        t = self.at.strftime("%H:%M")
        return f"{self.day} {t}" if self.day else t


class Rotation(Strict):
    """Members of a team take turns as primary; the next in line is secondary."""

    team: str
    members: tuple[str, ...] = Field(min_length=1)
    handoff: Handoff
    every: timedelta = timedelta(days=7)
    start: date

    _every = field_validator("every", mode="before")(lambda cls, v: duration(v))


def _local_naive(value: Any) -> Any:
    """Overrides are written in campus local time; an offset would be a second clock."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        raise ValueError("write campus local time without an offset, e.g. 2026-10-12 08:00")
    if isinstance(value, date) and not isinstance(value, datetime):
        return datetime.combine(value, time(0, 0))
    if isinstance(value, str) and re.search(r"(Z|[+-]\d{2}:?\d{2})\s*$", value.strip()):
        raise ValueError("write campus local time without an offset, e.g. 2026-10-12 08:00")
    return value


class Override(Strict):
    """A named technician replaces a team's primary from ``from`` until ``to`` (local)."""

    team: str
    technician: str
    from_: datetime = Field(alias="from")
    to: datetime
    reason: str = ""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    _naive = field_validator("from_", "to", mode="before")(lambda cls, v: _local_naive(v))


class Holiday(Strict):
    """Public-holiday days (local midnight to midnight) with who is on call per team."""

    name: str = Field(min_length=1)
    start: date
    end: date | None = None
    on_call: dict[str, str] = Field(min_length=1)

    @property
    def last(self) -> date:
        """The last holiday day (``end``, or ``start`` for a one-day holiday)."""
        return self.end or self.start


class Step(Strict):
    """One step of the escalation chain: who is paged, and how long to wait for them.

    ``wait: acknowledge`` waits for the ticket's acknowledge deadline (per
    severity); a duration waits that long. The last step waits for nobody.
    """

    notify: Role
    wait: timedelta | Literal["acknowledge"] | None = None

    @field_validator("wait", mode="before")
    @classmethod
    def _wait(cls, v: Any) -> Any:
        if v is None or v == "acknowledge":
            return v
        return duration(v)


DEFAULT_ESCALATION = (
    Step(notify=Role.primary, wait="acknowledge"),
    Step(notify=Role.secondary, wait="acknowledge"),
    Step(notify=Role.supervisor),
)


class OnCallFile(Strict):
    """The whole oncall.yaml file."""

    timezone: str
    default_language: Language = Language.zh
    verify_clear: timedelta = timedelta(minutes=15)
    sla: SLA
    escalation: tuple[Step, ...] = Field(default=DEFAULT_ESCALATION, min_length=1)
    teams: tuple[Team, ...] = Field(min_length=1)
    technicians: tuple[Technician, ...] = Field(min_length=1)
    contractors: tuple[Contractor, ...] = ()
    rotations: tuple[Rotation, ...] = ()
    overrides: tuple[Override, ...] = ()
    holidays: tuple[Holiday, ...] = ()

    _verify = field_validator("verify_clear", mode="before")(lambda cls, v: duration(v))

    @model_validator(mode="before")
    @classmethod
    def _default_language(cls, data: Any) -> Any:
        """Technicians without a ``language`` get the file's ``default_language``."""
        if not isinstance(data, dict):
            return data
        lang = data.get("default_language", Language.zh.value)
        techs = data.get("technicians")
        if lang not in {x.value for x in Language} or not isinstance(techs, list):
            return data
        filled = [
            {**t, "language": lang} if isinstance(t, dict) and "language" not in t else t
            for t in techs
        ]
        return {**data, "technicians": filled}

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r}; use an IANA name such as Asia/Shanghai"
            ) from None
        return v


@dataclass(frozen=True)
class Gap:
    """A span in which a team has no primary (tickets would reach only the supervisor)."""

    team: str
    start: datetime
    end: datetime


def _aware(at: datetime, what: str = "time") -> datetime:
    if at.tzinfo is None or at.tzinfo.utcoffset(at) is None:
        raise ValueError(f"{what} {at.isoformat()} has no time zone; pass an aware datetime")
    return at


class OnCall:
    """Answers who is on call, by trade, building and instant; and SLA deadlines.

    Pure: every method takes the instant it is asked about, so the ticket
    service, replays and tests get the same answer for the same question.
    """

    def __init__(self, config: OnCallFile) -> None:
        self.config = config
        self.tz: tzinfo = ZoneInfo(config.timezone)
        self._teams = {t.id: t for t in config.teams}
        self._techs = {t.id: t for t in config.technicians}
        self._contractors = {c.id: c for c in config.contractors}
        self._rotations = {r.team: r for r in config.rotations}
        self._overrides: dict[str, list[tuple[datetime, datetime, str]]] = {}
        for o in config.overrides:
            span = (self.local(o.from_), self.local(o.to), o.technician)
            self._overrides.setdefault(o.team, []).append(span)
        self._holidays: dict[str, list[tuple[datetime, datetime, str]]] = {}
        for h in config.holidays:
            start = self.local(datetime.combine(h.start, time(0, 0)))
            end = self.local(datetime.combine(h.last + timedelta(days=1), time(0, 0)))
            for team, tech in h.on_call.items():
                self._holidays.setdefault(team, []).append((start, end, tech))

    # ------------------------------------------------------------ lookups

    @property
    def teams(self) -> tuple[Team, ...]:
        """Every team, in file order."""
        return self.config.teams

    def local(self, naive: datetime) -> datetime:
        """A wall-clock time in the campus zone as an aware datetime."""
        return naive.replace(tzinfo=self.tz)

    def technician(self, person_id: str) -> Technician:
        """The technician ``person_id``; :class:`UnknownPerson` if there is none."""
        try:
            return self._techs[person_id]
        except KeyError:
            raise UnknownPerson("technician", person_id) from None

    def contractor(self, person_id: str) -> Contractor:
        """The contractor ``person_id``; :class:`UnknownPerson` if there is none."""
        try:
            return self._contractors[person_id]
        except KeyError:
            raise UnknownPerson("contractor", person_id) from None

    def team(self, team_id: str) -> Team:
        """The team ``team_id`` (KeyError if unknown)."""
        return self._teams[team_id]

    def team_for(self, trade: str, building: str) -> Team:
        """The one team responsible for ``trade`` in ``building``; :class:`NoTeam` if none."""
        t = _trade(trade)
        for team in self.config.teams:
            if team.trade == t and team.covers(building):
                return team
        raise NoTeam(f"no team covers {t.value} in building {building!r}")

    def contractors_for(self, trade: str, building: str) -> list[Contractor]:
        """Contractors who can take ``trade`` work in ``building``, in file order."""
        t = _trade(trade)
        return [c for c in self.config.contractors if c.covers(t, building)]

    def coverage(
        self, buildings: Iterable[str], trades: Iterable[str] | None = None
    ) -> list[tuple[Trade, str]]:
        """The (trade, building) pairs no team covers; empty when coverage is whole."""
        wanted = [_trade(t) for t in trades] if trades is not None else list(Trade)
        return _missing(self.config.teams, list(buildings), wanted)

    # ------------------------------------------------------------ who is on call

    def turn(self, team_id: str, at: datetime) -> int | None:
        """The index of the rotation turn at ``at`` (0 from ``start``), or None
        before the first handoff or for a team without a rotation."""
        rot = self._rotations.get(team_id)
        if rot is None:
            return None
        at = _aware(at)
        first = datetime.combine(rot.start, rot.handoff.at)
        naive_now = at.astimezone(self.tz).replace(tzinfo=None)
        k = (naive_now - first) // rot.every
        # The wall-clock estimate can be off by one around a DST change; settle
        # it on the real instants of the local-time boundaries.
        while at < self.local(first + k * rot.every):
            k -= 1
        while at >= self.local(first + (k + 1) * rot.every):
            k += 1
        return k if k >= 0 else None

    def roles(self, trade: str, building: str, at: datetime) -> dict[Role, Technician]:
        """Who fills each role for ``trade`` in ``building`` at ``at``.

        Roles nobody fills (before a rotation starts, a one-member team without
        a secondary) are absent, so the ticket service can skip to the next.
        """
        return self.team_roles(self.team_for(trade, building).id, at)

    def team_roles(self, team_id: str, at: datetime) -> dict[Role, Technician]:
        """Like :meth:`roles`, for a team by id."""
        at = _aware(at)
        team = self._teams[team_id]
        out: dict[Role, Technician] = {}
        rot = self._rotations.get(team_id)
        k = self.turn(team_id, at)
        primary = self._acting(self._overrides, team_id, at) or self._acting(
            self._holidays, team_id, at
        )
        if primary is None and rot is not None and k is not None:
            primary = rot.members[k % len(rot.members)]
        if primary is not None:
            out[Role.primary] = self._techs[primary]
        if rot is not None:
            second = _secondary(rot.members, k, primary)
            if second is not None:
                out[Role.secondary] = self._techs[second]
        out[Role.supervisor] = self._techs[team.supervisor]
        return out

    def chain(self, trade: str, building: str, at: datetime) -> list[Technician]:
        """The people to page in escalation order, each once (a supervisor who is
        also on rotation is paged once, at the first step they appear in)."""
        roles = self.roles(trade, building, at)
        out: list[Technician] = []
        for step in self.config.escalation:
            tech = roles.get(step.notify)
            if tech is not None and tech not in out:
                out.append(tech)
        return out

    def _acting(
        self, table: dict[str, list[tuple[datetime, datetime, str]]], team_id: str, at: datetime
    ) -> str | None:
        for start, end, tech in table.get(team_id, ()):
            if start <= at < end:
                return tech
        return None

    # ------------------------------------------------------------ deadlines

    def sla(self, severity: Severity | str) -> tuple[timedelta, timedelta]:
        """(acknowledge, resolve) durations of ``severity``."""
        d = self.config.sla.of(Severity(severity))
        return d.acknowledge, d.resolve

    def deadlines(self, severity: Severity | str, opened_at: datetime) -> tuple[datetime, datetime]:
        """The acknowledge and resolve deadlines of a ticket opened at ``opened_at``,
        as campus local times."""
        ack, res = self.sla(severity)
        start = _aware(opened_at, "opened_at").astimezone(UTC)
        return (start + ack).astimezone(self.tz), (start + res).astimezone(self.tz)

    def wait(self, severity: Severity | str, level: int) -> timedelta | None:
        """How long a ticket stays unacknowledged at escalation ``level`` before
        moving on; None at the last level."""
        steps = self.config.escalation
        if level < 0:
            raise ValueError(f"escalation level {level} is negative")
        if level >= len(steps) - 1:
            return None
        w = steps[level].wait
        if w == "acknowledge":
            return self.sla(severity)[0]
        return w if isinstance(w, timedelta) else None

    def escalation_due(
        self, severity: Severity | str, opened_at: datetime, level: int
    ) -> datetime | None:
        """When a ticket still unacknowledged at ``level`` (0: primary paged)
        moves to ``level + 1``, as a campus local time; None past the last level.

        Waits add up from the opening, so level 1 is due after the level-0 wait
        plus its own.
        """
        opened = _aware(opened_at, "opened_at").astimezone(UTC)
        if self.wait(severity, level) is None:
            return None
        total = timedelta(0)
        for i in range(level + 1):
            w = self.wait(severity, i)
            assert w is not None
            total += w
        return (opened + total).astimezone(self.tz)

    # ------------------------------------------------------------ checks

    def gaps(self, start: datetime, end: datetime) -> list[Gap]:
        """Spans in [start, end) in which some team has no primary, by team then time."""
        start, end = _aware(start, "start"), _aware(end, "end")
        out: list[Gap] = []
        for team in self.config.teams:
            covered: list[tuple[datetime, datetime]] = []
            rot = self._rotations.get(team.id)
            if rot is not None:
                first = self.local(datetime.combine(rot.start, rot.handoff.at))
                covered.append((first, max(end, first)))
            covered += [(a, b) for a, b, _ in self._overrides.get(team.id, ())]
            covered += [(a, b) for a, b, _ in self._holidays.get(team.id, ())]
            cursor = start
            for a, b in sorted(covered, key=lambda s: s[0]):
                if a > cursor:
                    out.append(Gap(team.id, cursor, min(a, end)))
                cursor = max(cursor, b)
                if cursor >= end:
                    break
            if cursor < end:
                out.append(Gap(team.id, cursor, end))
        return [g for g in out if g.start < g.end]


def _trade(value: str) -> Trade:
    try:
        return Trade(value)
    except ValueError:
        raise ValueError(
            f"unknown trade {value!r}; known: {', '.join(t.value for t in Trade)}"
        ) from None


def _secondary(members: tuple[str, ...], k: int | None, primary: str | None) -> str | None:
    """The next member after the turn's holder who is not the acting primary.

    The member whose turn it is never becomes secondary when replaced: an
    override or holiday usually means they are away.
    """
    n = len(members)
    if k is None:
        if primary is None or primary not in members:
            return None
        k = members.index(primary)
    for step in range(1, n):
        cand = members[(k + step) % n]
        if cand != primary:
            return cand
    return None


def _missing(
    teams: Iterable[Team], buildings: list[str], trades: list[Trade]
) -> list[tuple[Trade, str]]:
    teams = list(teams)
    return [
        (t, b)
        for t in trades
        for b in buildings
        if not any(team.trade == t and team.covers(b) for team in teams)
    ]


# ---------------------------------------------------------------- loading


def load_oncall(path: str | Path, buildings: Iterable[str] | None = None) -> OnCall:
    """Load and check an on-call file; ``buildings`` (the campus's building ids)
    enables the unknown-building and coverage checks."""
    return parse_oncall(load_located(path), buildings)


def load_oncall_text(text: str, name: str, buildings: Iterable[str] | None = None) -> OnCall:
    """Load an on-call file from text (tests, an API lint endpoint)."""
    return parse_oncall(load_located_text(text, name), buildings)


def parse_oncall(located: Located, buildings: Iterable[str] | None = None) -> OnCall:
    """Validate located data; raise :class:`ConfigError` listing every problem."""
    cfg = validate(OnCallFile, located)
    known = None if buildings is None else list(dict.fromkeys(buildings))
    issues = _Checker(located, cfg, known).run()
    if issues:
        issues.sort(key=lambda i: i.line or 0)
        raise ConfigError(issues)
    return OnCall(cfg)


class _Checker:
    """The cross-reference checks pydantic cannot do, each issue located."""

    def __init__(self, located: Located, cfg: OnCallFile, buildings: list[str] | None) -> None:
        self.located = located
        self.cfg = cfg
        self.buildings = buildings
        self.issues: list[ConfigIssue] = []
        self.teams: dict[str, int] = {}
        self.techs: dict[str, int] = {}

    def add(self, path: Path_, message: str) -> None:
        self.issues.append(self.located.issue(path, message))

    def run(self) -> list[ConfigIssue]:
        self._ids()
        self._teams()
        self._coverage()
        self._contractors()
        self._rotations()
        self._overrides()
        self._holidays()
        self._sla_and_escalation()
        return self.issues

    # ids and references

    def _ids(self) -> None:
        for i, team in enumerate(self.cfg.teams):
            if team.id in self.teams:
                self.add(
                    ("teams", i, "id"),
                    f"duplicate team id {team.id!r} (first at teams[{self.teams[team.id]}])",
                )
            else:
                self.teams[team.id] = i
        people: dict[str, str] = {}
        for i, tech in enumerate(self.cfg.technicians):
            if tech.id in self.techs:
                first = self.cfg.technicians[self.techs[tech.id]]
                where = f"technicians[{self.techs[tech.id]}]"
                if first.team != tech.team:
                    self.add(
                        ("technicians", i, "team"),
                        f"technician {tech.id!r} is already in team {first.team!r} ({where}); "
                        "a technician belongs to one team",
                    )
                else:
                    self.add(
                        ("technicians", i, "id"), f"duplicate id {tech.id!r} (first at {where})"
                    )
                continue
            self.techs[tech.id] = i
            people[tech.id] = f"technicians[{i}]"
            if tech.team not in self.teams:
                self.add(("technicians", i, "team"), f"no team with id {tech.team!r}")
        for i, c in enumerate(self.cfg.contractors):
            if c.id in people:
                self.add(
                    ("contractors", i, "id"), f"duplicate id {c.id!r} (first at {people[c.id]})"
                )
            else:
                people[c.id] = f"contractors[{i}]"

    def _tech(self, path: Path_, tech_id: str) -> Technician | None:
        """The technician ``tech_id``, or an issue at ``path`` and None."""
        if tech_id not in self.techs:
            self.add(path, f"no technician with id {tech_id!r}")
            return None
        return self.cfg.technicians[self.techs[tech_id]]

    def _team(self, path: Path_, team_id: str) -> Team | None:
        if team_id not in self.teams:
            self.add(path, f"no team with id {team_id!r}")
            return None
        return self.cfg.teams[self.teams[team_id]]

    def _of_trade(self, path: Path_, tech: Technician, team: Team) -> None:
        """A stand-in must be able to do the team's work."""
        own = self.cfg.teams[self.teams[tech.team]] if tech.team in self.teams else None
        if own is not None and own.trade != team.trade:
            self.add(
                path,
                f"technician {tech.id!r} is {own.trade.value} (team {own.id!r}); "
                f"team {team.id!r} needs {team.trade.value}",
            )

    def _building_ids(self, path: Path_, ids: tuple[str, ...]) -> None:
        if self.buildings is None or ids == (ALL,):
            return
        known = set(self.buildings)
        for j, b in enumerate(ids):
            if b == ALL:
                self.add((*path, j), '"*" stands alone: write buildings: "*"')
            elif b not in known:
                self.add((*path, j), f"unknown building id {b!r}")

    # teams

    def _teams(self) -> None:
        members = {t.team for t in self.cfg.technicians}
        for i, team in enumerate(self.cfg.teams):
            if self.teams.get(team.id) != i:
                continue
            if team.id not in members:
                self.add(
                    ("teams", i, "id"),
                    f"team {team.id!r} has no members (no technician names it as team)",
                )
            self._tech(("teams", i, "supervisor"), team.supervisor)
            self._building_ids(("teams", i, "buildings"), team.buildings)
        listed = list(self.teams.items())
        for a_pos, (a_id, a) in enumerate(listed):
            for b_id, b in listed[a_pos + 1 :]:
                ta, tb = self.cfg.teams[a], self.cfg.teams[b]
                if ta.trade != tb.trade:
                    continue
                both = self._overlap(ta.buildings, tb.buildings)
                if both:
                    self.add(
                        ("teams", b, "buildings"),
                        f"teams {a_id!r} (teams[{a}]) and {b_id!r} both cover "
                        f"{ta.trade.value} in {both}; each building needs one team per trade",
                    )

    def _overlap(self, a: tuple[str, ...], b: tuple[str, ...]) -> str:
        if ALL in a and ALL in b:
            return "every building"
        if ALL in a or ALL in b:
            other = b if ALL in a else a
            return ", ".join(other)
        common = [x for x in a if x in b]
        return ", ".join(common)

    def _coverage(self) -> None:
        if self.buildings is None:
            return
        valid = [self.cfg.teams[i] for i in self.teams.values()]
        missing = _missing(valid, self.buildings, list(Trade))
        by_trade: dict[Trade, list[str]] = {}
        for trade, b in missing:
            by_trade.setdefault(trade, []).append(b)
        for trade, bs in by_trade.items():
            shown = ", ".join(bs[:12]) + (f" and {len(bs) - 12} more" if len(bs) > 12 else "")
            self.add(("teams",), f"no team covers {trade.value} in {shown}")

    def _contractors(self) -> None:
        for i, c in enumerate(self.cfg.contractors):
            self._building_ids(("contractors", i, "buildings"), c.buildings)

    # rotations

    def _rotations(self) -> None:
        seen: dict[str, int] = {}
        for i, rot in enumerate(self.cfg.rotations):
            team = self._team(("rotations", i, "team"), rot.team)
            if team is not None:
                if rot.team in seen:
                    self.add(
                        ("rotations", i, "team"),
                        f"team {rot.team!r} already has a rotation (rotations[{seen[rot.team]}])",
                    )
                seen.setdefault(rot.team, i)
            listed: set[str] = set()
            for j, member in enumerate(rot.members):
                path: Path_ = ("rotations", i, "members", j)
                if member in listed:
                    self.add(path, f"{member!r} is listed twice")
                listed.add(member)
                tech = self._tech(path, member)
                if tech is not None and team is not None and tech.team != team.id:
                    self.add(path, f"{member!r} is in team {tech.team!r}, not {team.id!r}")
            self._rotation_timing(i, rot)
        for team_id, ti in self.teams.items():
            if team_id not in seen:
                self.add(("teams", ti, "id"), f"team {team_id!r} has no rotation")

    def _rotation_timing(self, i: int, rot: Rotation) -> None:
        day = timedelta(days=1)
        if rot.every <= timedelta(0) or rot.every % day:
            self.add(("rotations", i, "every"), "a turn lasts whole days, e.g. 1d, 7d, 2w")
        elif rot.handoff.day is not None and rot.every % timedelta(days=7):
            self.add(
                ("rotations", i, "every"),
                f"handoff {rot.handoff} is on a weekday, so a turn lasts whole weeks (1w, 2w)",
            )
        if rot.handoff.day is not None and DAYS[rot.start.weekday()] != rot.handoff.day:
            self.add(
                ("rotations", i, "start"),
                f"start {rot.start} is a {DAYS[rot.start.weekday()]}; "
                f"the first handoff must fall on {rot.handoff.day}",
            )

    # overrides and holidays

    def _overrides(self) -> None:
        kept: list[tuple[int, Override]] = []
        for i, o in enumerate(self.cfg.overrides):
            team = self._team(("overrides", i, "team"), o.team)
            tech = self._tech(("overrides", i, "technician"), o.technician)
            if team is not None and tech is not None:
                self._of_trade(("overrides", i, "technician"), tech, team)
            if o.to <= o.from_:
                self.add(("overrides", i, "to"), f"to {o.to} must be after from {o.from_}")
                continue
            for j, p in kept:
                if p.team == o.team and o.from_ < p.to and p.from_ < o.to:
                    self.add(
                        ("overrides", i, "from"),
                        f"overlaps overrides[{j}] ({p.technician}, {p.from_} to {p.to}) "
                        f"for team {o.team!r}",
                    )
            kept.append((i, o))

    def _holidays(self) -> None:
        kept: list[tuple[int, Holiday]] = []
        for i, h in enumerate(self.cfg.holidays):
            if h.end is not None and h.end < h.start:
                self.add(("holidays", i, "end"), f"end {h.end} is before start {h.start}")
                continue
            for team_id, tech_id in h.on_call.items():
                path: Path_ = ("holidays", i, "on_call", team_id)
                team = self._team(path, team_id)
                tech = self._tech(path, tech_id)
                if team is not None and tech is not None:
                    self._of_trade(path, tech, team)
                for j, p in kept:
                    if team_id in p.on_call and h.start <= p.last and p.start <= h.last:
                        self.add(
                            path,
                            f"holidays {p.name!r} (holidays[{j}]) and {h.name!r} overlap "
                            f"and both name who is on call for team {team_id!r}",
                        )
            kept.append((i, h))

    # deadlines

    def _sla_and_escalation(self) -> None:
        zero = timedelta(0)
        previous: tuple[Severity, Deadlines] | None = None
        if self.cfg.verify_clear <= zero:
            self.add(("verify_clear",), "verify_clear must be longer than 0s")
        for sev in Severity:
            d = self.cfg.sla.of(sev)
            for field in ("acknowledge", "resolve"):
                if getattr(d, field) <= zero:
                    self.add(("sla", sev.value, field), f"{field} must be longer than 0s")
            if d.acknowledge >= d.resolve:
                self.add(
                    ("sla", sev.value, "resolve"),
                    f"{sev.value}: resolve ({_fmt(d.resolve)}) must be longer than "
                    f"acknowledge ({_fmt(d.acknowledge)})",
                )
            if previous is not None:
                psev, pd = previous
                for field in ("acknowledge", "resolve"):
                    mine, theirs = getattr(d, field), getattr(pd, field)
                    if mine < theirs:
                        self.add(
                            ("sla", sev.value, field),
                            f"{sev.value} {field} ({_fmt(mine)}) is shorter than {psev.value}'s "
                            f"({_fmt(theirs)}); a less urgent severity cannot have a tighter "
                            "deadline",
                        )
            previous = (sev, d)
        self._escalation()

    def _escalation(self) -> None:
        steps = self.cfg.escalation
        if steps[0].notify != Role.primary:
            self.add(("escalation", 0, "notify"), "the chain starts with the primary")
        seen: dict[Role, int] = {}
        for i, step in enumerate(steps):
            if step.notify in seen:
                self.add(
                    ("escalation", i, "notify"),
                    f"{step.notify.value} is already step escalation[{seen[step.notify]}]",
                )
            seen.setdefault(step.notify, i)
            last = i == len(steps) - 1
            if last and step.wait is not None:
                self.add(("escalation", i, "wait"), "the last step has no next step to wait for")
            if not last and step.wait is None:
                self.add(
                    ("escalation", i),
                    "say how long to wait before the next step (wait: acknowledge, or e.g. 30m)",
                )
            if isinstance(step.wait, timedelta) and step.wait <= timedelta(0):
                self.add(("escalation", i, "wait"), "wait must be longer than 0s")
        if any(s.wait is None for s in steps[:-1]) or len(steps) < 2:
            return
        for sev in Severity:
            d = self.cfg.sla.of(sev)
            total = timedelta(0)
            for s in steps[:-1]:
                total += s.wait if isinstance(s.wait, timedelta) else d.acknowledge
            if total >= d.resolve:
                self.add(
                    ("escalation", len(steps) - 2, "wait"),
                    f"for {sev.value} the last step ({steps[-1].notify.value}) is paged after "
                    f"{_fmt(total)}, not before the resolve deadline ({_fmt(d.resolve)})",
                )


def _fmt(d: timedelta) -> str:
    """``timedelta(hours=4)`` -> ``4h``: durations in errors as the file writes them."""
    seconds = int(d.total_seconds())
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out or "0s"
