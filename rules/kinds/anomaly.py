"""``anomaly``: the score of an anomaly model above ``threshold``.

The model plugs in through :class:`Scorer`. With no scorer (no model trained
yet) the rule gives no verdicts, and the engine says so once in its log.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from pydantic import Field

from campus.registry import Device
from rules.kinds.base import Condition, Kind, Params, Verdict


class Scorer(Protocol):
    """What the anomaly model offers the rules engine.

    A scorer may also offer ``prepare(device, readings)``, scoring a run of
    one device's readings (epoch ms, metrics; oldest first) in one call;
    :meth:`rules.engine.Engine.feed_many` then calls it before feeding the
    run, and each reading's :meth:`score` returns its result."""

    def score(self, device: Device, ts_ms: int, metrics: Mapping[str, float]) -> float | None:
        """An anomaly score for one reading (higher is stranger), or None."""

    def explain(self, device: str) -> str | None:
        """What the latest score of ``device`` rests on (expected value, band,
        drivers), or None."""


class AnomalyParams(Params):
    threshold: float = Field(gt=0)


class AnomalyCondition(Condition):
    def __init__(self, device: Device, p: AnomalyParams) -> None:
        self.device = device
        self.threshold = p.threshold
        self.scorer: Scorer | None = None  # set by the engine that owns this condition

    def observe(self, source: str, ts_ms: int, metrics: Mapping[str, float]) -> Verdict | None:
        scorer = self.scorer
        if scorer is None:
            return None
        s = scorer.score(self.device, ts_ms, metrics)
        if s is None:
            return None
        explain = getattr(scorer, "explain", None)  # optional for simple scorers
        why = explain(self.device.id) if explain is not None else None
        text = f"anomaly score {s:.2f} > {self.threshold:g}" + (f": {why}" if why else "")
        return Verdict(s > self.threshold, s, text)


class Anomaly(Kind):
    name = "anomaly"
    params = AnomalyParams
    needs_metric = False

    def condition(self) -> Condition:
        assert isinstance(self.p, AnomalyParams)
        return AnomalyCondition(self.device, self.p)
