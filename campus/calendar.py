"""The academic calendar (``config/calendar.yaml``): term, exams and holidays.

The simulator follows it (empty dorms in winter break) and rule schedules
refer to its periods. Dates not covered by any period are holidays; closures
(public holidays) override periods.
"""

from __future__ import annotations

import itertools
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import Field, model_validator

from campus.errors import ConfigError
from campus.yamlconf import Strict, load_located, validate


class Period(StrEnum):
    """What kind of time it is on campus."""

    term = "term"
    exams = "exams"
    holidays = "holidays"


class PeriodSpan(Strict):
    """A named run of days of one period kind, both ends included."""

    name: str
    kind: Period
    start: date
    end: date

    @model_validator(mode="after")
    def _order(self) -> PeriodSpan:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class Closure(Strict):
    """A public holiday or campus closure (counts as holidays)."""

    name: str
    start: date
    end: date


class CalendarConfig(Strict):
    """The whole calendar.yaml file."""

    timezone: str = "Asia/Shanghai"
    periods: list[PeriodSpan] = Field(min_length=1)
    closures: list[Closure] = Field(default_factory=list)


class AcademicCalendar:
    """Answers "which period is this moment in" in the campus time zone."""

    def __init__(self, config: CalendarConfig) -> None:
        self.config = config
        self.tz = ZoneInfo(config.timezone)
        self._periods = sorted(config.periods, key=lambda p: p.start)
        self._cache: dict[date, tuple[Period, bool]] = {}

    def day(self, d: date) -> tuple[Period, bool]:
        """The period of a local date and whether it is a closure day."""
        hit = self._cache.get(d)
        if hit is None:
            closed = any(c.start <= d <= c.end for c in self.config.closures)
            period = Period.holidays
            if not closed:
                for p in self._periods:
                    if p.start <= d <= p.end:
                        period = p.kind
                        break
            hit = (period, closed)
            self._cache[d] = hit
        return hit

    def period_at(self, when: datetime) -> Period:
        """The period at an aware datetime."""
        return self.day(when.astimezone(self.tz).date())[0]


def load_calendar(path: str | Path) -> AcademicCalendar:
    """Load and validate calendar.yaml."""
    located = load_located(path)
    cfg = validate(CalendarConfig, located)
    issues = []
    spans = sorted(enumerate(cfg.periods), key=lambda ip: ip[1].start)
    for (_, a), (j, b) in itertools.pairwise(spans):
        if b.start <= a.end:
            issues.append(
                located.issue(("periods", j, "start"), f"period {b.name!r} overlaps {a.name!r}")
            )
    if issues:
        raise ConfigError(issues)
    return AcademicCalendar(cfg)
