"""The reading model shared by ingest, rules and the simulators."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Reading:
    """One timestamped set of metric values from one device.

    ``ts_ms`` is event time in epoch milliseconds (UTC). ``seq`` is the
    device's own message counter when it sends one (gap detection).
    """

    building: str
    kind: str
    device: str
    ts_ms: int
    metrics: dict[str, float]
    seq: int | None = None
    tags: dict[str, str] = field(default_factory=dict)
