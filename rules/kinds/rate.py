"""``rate``: the metric changed by more than ``rise`` (or fell by more than
``fall``) within ``window``."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

from pydantic import model_validator

from rules.kinds.base import INACTIVE, Condition, Kind, Params, Verdict, Window


class RateParams(Params):
    window: Window
    rise: float | None = None
    fall: float | None = None

    @model_validator(mode="after")
    def _one(self) -> RateParams:
        if self.rise is None and self.fall is None:
            raise ValueError("give rise, fall or both (positive amounts)")
        if (self.rise is not None and self.rise <= 0) or (self.fall is not None and self.fall <= 0):
            raise ValueError("rise and fall are positive amounts")
        return self


class RateCondition(Condition):
    """The lowest and highest value within the window, kept in two monotonic
    queues: O(1) per reading on average, whatever the window."""

    def __init__(self, metric: str, p: RateParams) -> None:
        self.metric = metric
        self.p = p
        self.window_ms = int(p.window.total_seconds() * 1000)
        self.lows: deque[tuple[int, float]] = deque()  # values ascending
        self.highs: deque[tuple[int, float]] = deque()  # values descending

    def observe(self, source: str, ts_ms: int, metrics: Mapping[str, float]) -> Verdict | None:
        v = metrics.get(self.metric)
        if v is None:
            return None
        lows, highs = self.lows, self.highs
        while lows and lows[-1][1] >= v:
            lows.pop()
        lows.append((ts_ms, v))
        while highs and highs[-1][1] <= v:
            highs.pop()
        highs.append((ts_ms, v))
        start = ts_ms - self.window_ms
        while lows[0][0] < start:
            lows.popleft()
        while highs[0][0] < start:
            highs.popleft()
        lo, hi = lows[0][1], highs[0][1]
        p = self.p
        if p.rise is not None and v - lo > p.rise:
            return Verdict(True, v, f"rose {v - lo:g} within {p.window}")
        if p.fall is not None and hi - v > p.fall:
            return Verdict(True, v, f"fell {hi - v:g} within {p.window}")
        return INACTIVE


class Rate(Kind):
    name = "rate"
    params = RateParams

    def condition(self) -> Condition:
        assert self.rule.metric is not None and isinstance(self.p, RateParams)
        return RateCondition(self.rule.metric, self.p)
