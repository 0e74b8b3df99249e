"""``offline``: the device's status topic says ``offline`` (its last will)."""

from __future__ import annotations

from rules.kinds.base import Condition, Kind, Params, Verdict


class OfflineParams(Params):
    pass


class OfflineCondition(Condition):
    def status(self, online: bool, ts_ms: int) -> Verdict | None:
        return Verdict(not online, 0.0 if not online else 1.0, "offline" if not online else "")


class Offline(Kind):
    name = "offline"
    params = OfflineParams
    needs_metric = False

    def condition(self) -> Condition:
        return OfflineCondition()
