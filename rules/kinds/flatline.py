"""``flatline``: every value of the metric for at least ``window`` stayed within a
band ``tolerance`` wide (a stuck sensor)."""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from rules.kinds.base import INACTIVE, Condition, Kind, Params, Verdict, Window


class FlatlineParams(Params):
    window: Window
    tolerance: float = Field(0.0, ge=0)


class FlatlineCondition(Condition):
    """Tracks the current flat run: since when every value stayed within a band
    ``tolerance`` wide. O(1) per reading, whatever the window."""

    def __init__(self, metric: str, p: FlatlineParams) -> None:
        self.metric = metric
        self.p = p
        self.window_ms = int(p.window.total_seconds() * 1000)
        self.run: tuple[int, float, float] | None = None  # (start, low, high)

    def observe(self, source: str, ts_ms: int, metrics: Mapping[str, float]) -> Verdict | None:
        v = metrics.get(self.metric)
        if v is None:
            return None
        run = self.run
        if run is None:
            self.run = (ts_ms, v, v)
            return INACTIVE
        start, lo, hi = run
        lo, hi = min(lo, v), max(hi, v)
        if hi - lo > self.p.tolerance:
            self.run = (ts_ms, v, v)
            return INACTIVE
        self.run = (start, lo, hi)
        if ts_ms - start >= self.window_ms:
            return Verdict(True, v, f"stuck at {v:g} for {self.p.window}")
        return INACTIVE


class Flatline(Kind):
    name = "flatline"
    params = FlatlineParams

    def condition(self) -> Condition:
        assert self.rule.metric is not None and isinstance(self.p, FlatlineParams)
        return FlatlineCondition(self.rule.metric, self.p)
