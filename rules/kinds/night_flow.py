"""``night_flow``: the lowest flow over a night window stays above ``level``:
the classic leak signature (something runs all night). Judged once per night,
when the first reading after the window arrives; the verdict holds until the
next night is judged."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from pydantic import Field, field_validator

from campus.registry import Campus, Device
from rules.kinds.base import Condition, Issue, Kind, Params, Verdict

if TYPE_CHECKING:
    from rules.model import HourSpan, Rule


class NightFlowParams(Params):
    hours: Any = "01:00-05:00"
    level: float = Field(ge=0)
    min_samples: int = Field(3, ge=1)

    @field_validator("hours", mode="before")
    @classmethod
    def _hours(cls, v: object) -> object:
        from rules.model import HourSpan

        if isinstance(v, str):
            return HourSpan.parse(v)
        raise ValueError("hours is text such as 01:00-05:00")


class NightFlowCondition(Condition):
    def __init__(self, metric: str, p: NightFlowParams, tz: ZoneInfo) -> None:
        self.metric = metric
        self.level = p.level
        self.span: HourSpan = p.hours
        self.min_samples = p.min_samples
        self.tz = tz
        self.low: float | None = None
        self.samples = 0
        self.verdict: Verdict | None = None

    def observe(self, source: str, ts_ms: int, metrics: Mapping[str, float]) -> Verdict | None:
        v = metrics.get(self.metric)
        if v is None:
            return self.verdict
        local = datetime.fromtimestamp(ts_ms / 1000, UTC).astimezone(self.tz)
        if self.span.contains(local.time()):
            self.low = v if self.low is None else min(self.low, v)
            self.samples += 1
        elif self.samples:
            if self.samples >= self.min_samples and self.low is not None:
                low = self.low
                active = low > self.level
                detail = f"night minimum {low:g} > {self.level:g}" if active else ""
                self.verdict = Verdict(active, low, detail)
            self.low, self.samples = None, 0
        return self.verdict


class NightFlow(Kind):
    name = "night_flow"
    params = NightFlowParams

    @classmethod
    def extra_checks(cls, rule: Rule, campus: Campus, devices: list[Device]) -> Iterator[Issue]:
        if rule.clear:
            yield ("clear",), "night_flow is judged once a night; it has no clear parameters"

    def condition(self) -> Condition:
        assert self.rule.metric is not None and isinstance(self.p, NightFlowParams)
        return NightFlowCondition(self.rule.metric, self.p, ZoneInfo(self.campus.timezone))
