"""The rule language: what `config/rules.yaml` may say, validated with pydantic.

A rules file is ``rules:``, a list of rules. Every error names the file, the
line, the rule's id and the field (``config/rules.yaml:12: rule 'burst-pipe':
params.above: ...``). The parameters of each kind are checked by that kind's
own model (``rules/kinds/*.py``), so a kind is one module plus one registry line.
"""

from __future__ import annotations

import fnmatch
import re
import string
from datetime import datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, field_validator, model_validator

from campus.calendar import Period
from campus.errors import ConfigError, ConfigIssue
from campus.registry import Campus, Device
from campus.timeparse import parse_duration
from campus.yamlconf import MAX_VALUES, Located, Strict, load_located, load_located_text

ID_RE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Severity(StrEnum):
    """``P1`` is an emergency repair; ``P4`` can wait for the next round."""

    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"

    @property
    def rank(self) -> int:
        """1 for P1 (most urgent) to 4."""
        return int(self.value[1])


class Trade(StrEnum):
    """Who repairs it."""

    plumbing = "plumbing"
    electrical = "electrical"
    hvac = "hvac"
    general = "general"


def duration(value: Any) -> timedelta:
    """A duration from ``"15m"`` style text or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration is text such as 30s, 15m, 1h, 7d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=value)
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError("a duration is text such as 30s, 15m, 1h, 7d")


Globs = tuple[str, ...]


class Selector(Strict):
    """Which devices a rule watches. Each field is a glob (``dorm-*``) or a list of
    globs (any may match); every field must match."""

    building: Globs = ("*",)
    kind: Globs = ("*",)
    device: Globs = ("*",)
    model: Globs = ("*",)
    tags: dict[str, str] = Field(default_factory=dict)

    @field_validator("building", "kind", "device", "model", mode="before")
    @classmethod
    def _globs(cls, v: Any) -> Any:
        if isinstance(v, str):
            return (v,)
        if isinstance(v, list) and v:
            return tuple(v)
        if isinstance(v, list):
            raise ValueError("an empty list selects nothing; leave the field out to select all")
        return v

    def matches(self, d: Device) -> bool:
        """Whether ``d`` is selected."""
        if not (
            _any(d.building, self.building)
            and _any(d.kind, self.kind)
            and _any(d.id, self.device)
            and _any(d.model or "", self.model)
        ):
            return False
        return all(fnmatch.fnmatchcase(d.tags.get(k, ""), v) for k, v in self.tags.items())


def _any(value: str, globs: Globs) -> bool:
    return any(fnmatch.fnmatchcase(value, g) for g in globs)


class HourSpan(Strict):
    """Local wall-clock hours, ``22:00-06:00`` wrapping past midnight."""

    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> HourSpan:
        m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*", text)
        if not m:
            raise ValueError(f"hours {text!r}: use HH:MM-HH:MM, e.g. 22:00-06:00")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59:
            raise ValueError(f"hours {text!r}: not a time of day")
        end = time(0, 0) if h2 == 24 else time(h2, m2)
        return cls(start=time(h1 % 24, m1), end=end)

    def contains(self, t: time) -> bool:
        """Whether local time ``t`` is inside (start included, end excluded)."""
        if self.start == self.end:
            return True
        if self.start < self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


class Schedule(Strict):
    """When a rule is active: hours, days of the week and academic periods."""

    hours: list[HourSpan] = Field(default_factory=list)
    days: list[str] = Field(default_factory=list)
    periods: list[Period] = Field(default_factory=list)

    @field_validator("hours", mode="before")
    @classmethod
    def _hours(cls, v: Any) -> Any:
        items = [v] if isinstance(v, str) else v
        if isinstance(items, list):
            return [HourSpan.parse(x) if isinstance(x, str) else x for x in items]
        return v

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[str]) -> list[str]:
        out = []
        for d in v:
            key = d.strip().lower()[:3]
            if key not in DAYS:
                raise ValueError(f"day {d!r}: use mon, tue, wed, thu, fri, sat, sun")
            out.append(key)
        return out

    def active(self, local: datetime, period: Period) -> bool:
        """Whether the rule applies at local time ``local`` in ``period``."""
        if self.days and DAYS[local.weekday()] not in self.days:
            return False
        if self.periods and period not in self.periods:
            return False
        return not self.hours or any(h.contains(local.time()) for h in self.hours)


class Maintenance(Strict):
    """A window in which the rule's alerts are held back, for devices or buildings."""

    start: datetime
    end: datetime
    devices: list[str] = Field(default_factory=list)
    buildings: list[str] = Field(default_factory=list)
    reason: str = ""

    @model_validator(mode="after")
    def _check(self) -> Maintenance:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a time zone offset, e.g. 2026-12-01T08:00+08:00")
        if self.end <= self.start:
            raise ValueError("end must come after start")
        if not self.devices and not self.buildings:
            raise ValueError("name the devices or buildings the window covers")
        return self

    def covers(self, d: Device, ts_ms: int) -> bool:
        """Whether device ``d`` is under maintenance at ``ts_ms``."""
        if not self.start.timestamp() * 1000 <= ts_ms < self.end.timestamp() * 1000:
            return False
        return any(fnmatch.fnmatchcase(d.id, p) for p in self.devices) or any(
            fnmatch.fnmatchcase(d.building, p) for p in self.buildings
        )


class Escalate(Strict):
    """Raise the severity once the condition has held this long."""

    after: timedelta
    to: Severity

    _after = field_validator("after", mode="before")(lambda cls, v: duration(v))


TEMPLATE_FIELDS = {
    "rule",
    "device",
    "building",
    "kind",
    "metric",
    "value",
    "severity",
    "trade",
    "floor",
    "room",
    "since",
    "detail",
}


def _template(text: str) -> str:
    names = set()
    try:
        for _, name, _, _ in string.Formatter().parse(text):
            if name is not None:
                names.add(re.split(r"[.\[]", name, maxsplit=1)[0])
    except ValueError as exc:
        raise ValueError(f"template {text!r}: {exc}") from None
    unknown = names - TEMPLATE_FIELDS - {""}
    if "" in names:
        raise ValueError(f"template {text!r}: name every field, e.g. {{device}}")
    if unknown:
        raise ValueError(
            f"template {text!r} uses {sorted(unknown)}; known: {', '.join(sorted(TEMPLATE_FIELDS))}"
        )
    return text


class Rule(Strict):
    """One rule as written in rules.yaml."""

    id: str
    description: str = ""
    kind: str
    select: Selector = Field(default_factory=Selector)
    metric: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    for_: timedelta = Field(default=timedelta(0), alias="for")
    clear: dict[str, Any] = Field(default_factory=dict)
    clear_for: timedelta = timedelta(0)
    severity: Severity
    escalate: Escalate | None = None
    trade: Trade
    title: str
    text: str = ""
    runbook: str = ""
    dedup_key: str = "{rule}:{device}"
    schedule: Schedule | None = None
    maintenance: list[Maintenance] = Field(default_factory=list)
    inhibits_children: bool = False
    enabled: bool = True

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    _durations = field_validator("for_", "clear_for", mode="before")(lambda cls, v: duration(v))

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not ID_RE.fullmatch(v):
            raise ValueError(f"rule id {v!r}: use lower-case letters, digits, '-', '_', '.'")
        return v

    @field_validator("title", "text", "dedup_key")
    @classmethod
    def _templates(cls, v: str) -> str:
        return _template(v)

    @model_validator(mode="after")
    def _escalation(self) -> Rule:
        if self.escalate is not None and self.escalate.to.rank >= self.severity.rank:
            raise ValueError(
                f"escalate.to {self.escalate.to} must be more urgent than severity {self.severity}"
            )
        return self


class RulesFile(Strict):
    """The whole file."""

    rules: list[Rule] = Field(default_factory=list)


def _rule_field(located: Located, loc: tuple[str | int, ...]) -> str:
    """``rules[3].params.above`` -> ``rule 'burst-pipe': params.above``."""
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = located.data.get("rules") if isinstance(located.data, dict) else None
        rid = None
        if isinstance(rules, list) and loc[1] < len(rules) and isinstance(rules[loc[1]], dict):
            rid = rules[loc[1]].get("id")
        rest = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc[2:])
        rest = rest.replace(".[", "[")
        head = f"rule {rid!r}" if isinstance(rid, str) else f"rules[{loc[1]}]"
        return f"{head}: {rest}" if rest else head
    return ".".join(str(p) for p in loc)


def located_issue(located: Located, loc: tuple[str | int, ...], message: str) -> ConfigIssue:
    """An issue at ``loc`` whose field names the rule by its id."""
    return ConfigIssue(located.file, located.line_of(loc), _rule_field(located, loc), message)


def parse_rules(located: Located, campus: Campus) -> list[Rule]:
    """Validate a located rules file against the kinds and the campus; raise
    :class:`ConfigError` listing every problem."""
    from pydantic import ValidationError

    from rules.kinds import KINDS

    data = located.data
    if data is None or data == {}:
        return []
    issues: list[ConfigIssue] = []
    if not isinstance(data, dict) or set(data) - {"rules"}:
        raise ConfigError([located_issue(located, (), "a rules file holds one key: rules")])
    raw = data.get("rules")
    if not isinstance(raw, list):
        raise ConfigError([located_issue(located, ("rules",), "rules must be a list")])
    out: list[Rule] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        try:
            rule = Rule.model_validate(item)
        except ValidationError as exc:
            for err in exc.errors(include_url=False):
                loc = ("rules", i, *(("for" if p == "for_" else p) for p in err["loc"]))
                issues.append(located_issue(located, loc, err["msg"]))
            continue
        if rule.id in seen:
            issues.append(
                located_issue(
                    located, ("rules", i, "id"), f"duplicate id (first at rules[{seen[rule.id]}])"
                )
            )
            continue
        seen[rule.id] = i
        kind = KINDS.get(rule.kind)
        if kind is None:
            issues.append(
                located_issue(
                    located,
                    ("rules", i, "kind"),
                    f"unknown kind {rule.kind!r} (known: {', '.join(sorted(KINDS))})",
                )
            )
            continue
        for field, message in kind.check(rule, campus):
            issues.append(located_issue(located, ("rules", i, *field), message))
        out.append(rule)
    ids = {r.id for r in out}
    for i, rule in enumerate(out):
        for ref in rule.params.get("rules", []) if rule.kind == "composite" else []:
            if ref not in ids:
                idx = seen[rule.id]
                issues.append(
                    located_issue(
                        located, ("rules", idx, "params", "rules"), f"no rule with id {ref!r}"
                    )
                )
            elif ref == rule.id:
                idx = seen[rule.id]
                issues.append(
                    located_issue(located, ("rules", idx, "params", "rules"), "refers to itself")
                )
        del i
    if issues:
        raise ConfigError(issues)
    return out


def load_rules(path: str | Path, campus: Campus) -> list[Rule]:
    """Load and check a rules file."""
    return parse_rules(load_located(path), campus)


def load_rules_text(
    text: str, name: str, campus: Campus, *, max_values: int = MAX_VALUES
) -> list[Rule]:
    """Load and check rules from text (tests, the API's lint: a posted text gets
    a smaller ``max_values``, counted with its aliases expanded)."""
    return parse_rules(load_located_text(text, name, max_values=max_values), campus)
