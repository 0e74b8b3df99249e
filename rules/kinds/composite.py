"""``composite``: ``all`` or ``any`` of other rules' conditions, on the same device.

It reads the other rules' raw conditions (before their ``for`` and clear
delays), so a composite has its own ``for`` and clear like any rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from campus.registry import Campus, Device
from rules.kinds.base import Condition, Issue, Kind, Params, Verdict

if TYPE_CHECKING:
    from rules.model import Rule

Lookup = Callable[[str, str], bool | None]


class CompositeParams(Params):
    op: Literal["all", "any"] = "all"
    rules: list[str] = Field(min_length=1)


class CompositeCondition(Condition):
    def __init__(self, device: str, p: CompositeParams) -> None:
        self.device = device
        self.p = p
        self.lookup: Lookup = lambda rule, device: None  # set by the engine

    def evaluate(self) -> Verdict | None:
        states = [self.lookup(r, self.device) for r in self.p.rules]
        known = [s for s in states if s is not None]
        if self.p.op == "all":
            if any(s is False for s in known):
                return Verdict(False)
            if len(known) < len(states):
                return None
            return Verdict(True, None, "all of " + ", ".join(self.p.rules))
        if any(known):
            on = [r for r, s in zip(self.p.rules, states, strict=True) if s]
            return Verdict(True, None, "any of: " + ", ".join(on))
        return Verdict(False) if known else None


class Composite(Kind):
    name = "composite"
    params = CompositeParams
    needs_metric = False

    @classmethod
    def extra_checks(cls, rule: Rule, campus: Campus, devices: list[Device]) -> Iterator[Issue]:
        if rule.metric is not None:
            yield ("metric",), "a composite rule reads other rules, not a metric"

    def condition(self) -> Condition:
        assert isinstance(self.p, CompositeParams)
        return CompositeCondition(self.device.id, self.p)
