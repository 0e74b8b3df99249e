"""``balance``: a parent meter against the sum of its children, over a window:
more than ``tolerance_pct`` (and ``min_abs``) apart means a leak or a loss
between them. Judged on the ticks where the parent and every child reported."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import TYPE_CHECKING

from pydantic import Field

from campus.registry import Campus, Device
from rules.kinds.base import INACTIVE, Condition, Issue, Kind, Params, Verdict, Window

if TYPE_CHECKING:
    from rules.model import Rule


class BalanceParams(Params):
    window: Window = timedelta(minutes=15)
    tolerance_pct: float = Field(5.0, ge=0)
    min_abs: float = Field(0.0, ge=0)


class BalanceCondition(Condition):
    def __init__(self, metric: str, p: BalanceParams, parent: str, children: list[str]) -> None:
        self.metric = metric
        self.p = p
        self.parent = parent
        self.children = set(children)
        self.window_ms = int(p.window.total_seconds() * 1000)
        self.ticks: dict[int, dict[str, float]] = {}
        self.done: deque[tuple[int, float, float]] = deque()  # (ts, parent, sum of children)

    def observe(self, source: str, ts_ms: int, metrics: Mapping[str, float]) -> Verdict | None:
        v = metrics.get(self.metric)
        if v is None:
            return None
        tick = self.ticks.get(ts_ms)
        if tick is None:  # a new tick: drop ticks that never completed within the window
            for old in [t for t in self.ticks if t < ts_ms - self.window_ms]:
                del self.ticks[old]
            tick = self.ticks[ts_ms] = {}
        tick[source] = v
        if self.parent not in tick or not self.children.issubset(tick):
            return None
        del self.ticks[ts_ms]
        kids = sum(tick[c] for c in self.children)
        self.done.append((ts_ms, tick[self.parent], kids))
        while self.done and self.done[0][0] <= ts_ms - self.window_ms:
            self.done.popleft()
        parent_sum = sum(p for _, p, _ in self.done)
        kid_sum = sum(k for _, _, k in self.done)
        n = len(self.done)
        gap = (parent_sum - kid_sum) / n
        limit = max(self.p.tolerance_pct / 100 * abs(parent_sum / n), self.p.min_abs)
        if abs(gap) > limit:
            return Verdict(
                True, gap, f"parent {parent_sum / n:g} vs children {kid_sum / n:g} ({gap:+g})"
            )
        return INACTIVE


class Balance(Kind):
    name = "balance"
    params = BalanceParams

    @classmethod
    def applies(cls, rule: Rule, device: Device, campus: Campus) -> bool:
        kids = campus.children.get(device.id, [])
        return (
            super().applies(rule, device, campus)
            and bool(kids)
            and all(rule.metric in k.metrics for k in kids)
        )

    @classmethod
    def extra_checks(cls, rule: Rule, campus: Campus, devices: list[Device]) -> Iterator[Issue]:
        if not any(cls.applies(rule, d, campus) for d in devices):
            yield ("select",), "selects no meter with child meters reporting the metric"

    @classmethod
    def watched(cls, rule: Rule, device: Device, campus: Campus) -> list[str]:
        return [device.id, *(k.id for k in campus.children.get(device.id, []))]

    def condition(self) -> Condition:
        assert self.rule.metric is not None and isinstance(self.p, BalanceParams)
        kids = [k.id for k in self.campus.children.get(self.device.id, [])]
        return BalanceCondition(self.rule.metric, self.p, self.device.id, kids)
