"""``counter``: a cumulative counter that goes backwards (by more than
``tolerance``) or climbs faster than ``max_per_hour``: a meter fault or a reset."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from rules.kinds.base import INACTIVE, Condition, Kind, Params, Verdict


class CounterParams(Params):
    tolerance: float = Field(0.0, ge=0)
    max_per_hour: float | None = Field(None, gt=0)


class CounterCondition(Condition):
    def __init__(self, metric: str, p: CounterParams) -> None:
        self.metric = metric
        self.p = p
        self.prev: tuple[int, float] | None = None

    def observe(self, source: str, ts_ms: int, metrics: Mapping[str, float]) -> Verdict | None:
        v = metrics.get(self.metric)
        if v is None:
            return None
        prev, self.prev = self.prev, (ts_ms, v)
        if prev is None or ts_ms <= prev[0]:
            return None
        step = v - prev[1]
        if step < -self.p.tolerance:
            return Verdict(True, v, f"went back from {prev[1]:g} to {v:g}")
        hours = (ts_ms - prev[0]) / 3_600_000
        if self.p.max_per_hour is not None and step / hours > self.p.max_per_hour:
            return Verdict(True, v, f"jumped {step:g} in {hours * 60:.0f} min")
        return INACTIVE


class Counter(Kind):
    name = "counter"
    params = CounterParams

    def condition(self) -> Condition:
        assert self.rule.metric is not None and isinstance(self.p, CounterParams)
        return CounterCondition(self.rule.metric, self.p)
