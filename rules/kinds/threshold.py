"""``threshold``: the metric above ``above`` or below ``below``."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import model_validator

from rules.kinds.base import INACTIVE, Condition, Kind, Params, Verdict


class ThresholdParams(Params):
    above: float | None = None
    below: float | None = None

    @model_validator(mode="after")
    def _one(self) -> ThresholdParams:
        if self.above is None and self.below is None:
            raise ValueError("give above, below or both")
        return self


class ThresholdCondition(Condition):
    def __init__(self, metric: str, p: ThresholdParams) -> None:
        self.metric = metric
        self.p = p

    def observe(self, source: str, ts_ms: int, metrics: Mapping[str, float]) -> Verdict | None:
        v = metrics.get(self.metric)
        if v is None:
            return None
        p = self.p
        if p.above is not None and v > p.above:
            return Verdict(True, v, f"{v:g} > {p.above:g}")
        if p.below is not None and v < p.below:
            return Verdict(True, v, f"{v:g} < {p.below:g}")
        return INACTIVE


class Threshold(Kind):
    name = "threshold"
    params = ThresholdParams

    def condition(self) -> Condition:
        assert self.rule.metric is not None and isinstance(self.p, ThresholdParams)
        return ThresholdCondition(self.rule.metric, self.p)
