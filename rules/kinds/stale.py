"""``stale``: no reading for ``intervals`` times the device's reporting interval.

Driven by time: the watermark (the latest event time seen) in replay and
scenario runs, the clock when live.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from pydantic import Field

from campus.registry import Campus, Device
from rules.kinds.base import Condition, Kind, Params, Verdict

if TYPE_CHECKING:
    from rules.model import Rule


class StaleParams(Params):
    intervals: float = Field(3.0, gt=0)


class StaleCondition(Condition):
    """Reads the engine's latest event time per device (``seen``) instead of
    being fed every reading: the engine keeps that map anyway."""

    def __init__(self, limit_ms: int, device: str, seen: Mapping[str, int]) -> None:
        self.limit_ms = limit_ms
        self.device = device
        self.seen = seen

    def next_check_ms(self) -> int | None:
        last = self.seen.get(self.device)
        return None if last is None else last + self.limit_ms + 1

    def at(self, now_ms: int) -> Verdict | None:
        last = self.seen.get(self.device)
        if last is None:
            return None  # never heard from: nothing to compare with yet
        silent = now_ms - last
        if silent > self.limit_ms:
            return Verdict(True, silent / 1000, f"no reading for {silent / 1000:.0f} s")
        return Verdict(False)


class Stale(Kind):
    name = "stale"
    params = StaleParams
    needs_metric = False
    time_driven = True
    seen: Mapping[str, int] = {}  # set by the engine: its latest event time per device

    @classmethod
    def watched(cls, rule: Rule, device: Device, campus: Campus) -> list[str]:
        return []  # the engine's own record of the latest reading per device feeds it

    def condition(self) -> Condition:
        assert isinstance(self.p, StaleParams)
        limit = int(self.p.intervals * self.device.interval_s * 1000)
        return StaleCondition(limit, self.device.id, self.seen)
