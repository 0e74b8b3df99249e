"""The reading model: what the ingester decodes from a message and stores."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Reading:
    """One timestamped set of metric values from one device.

    ``ts_ms`` is event time in epoch milliseconds (UTC). ``seq`` is the
    device's own message counter when it sends one (gap detection). Not
    frozen: a frozen dataclass costs five times as much to build, and a batch
    of readings builds one per reading; nothing changes a reading once made.
    """

    building: str
    kind: str
    device: str
    ts_ms: int
    metrics: dict[str, float]
    seq: int | None = None
