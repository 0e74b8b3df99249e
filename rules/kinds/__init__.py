"""The rule kinds: one module each, one line each in :data:`KINDS`."""

from __future__ import annotations

from rules.kinds.anomaly import Anomaly
from rules.kinds.balance import Balance
from rules.kinds.base import Kind
from rules.kinds.composite import Composite
from rules.kinds.counter import Counter
from rules.kinds.expression import Expression
from rules.kinds.flatline import Flatline
from rules.kinds.night_flow import NightFlow
from rules.kinds.offline import Offline
from rules.kinds.rate import Rate
from rules.kinds.stale import Stale
from rules.kinds.threshold import Threshold

KINDS: dict[str, type[Kind]] = {
    k.name: k
    for k in (
        Threshold,
        Rate,
        Stale,
        Offline,
        Flatline,
        NightFlow,
        Balance,
        Counter,
        Expression,
        Anomaly,
        Composite,
    )
}
