"""Loss upstream, detected: each device's ``seq`` should grow by one per reading.

A broker killed with SIGKILL loses what it had not saved, whatever its
settings (RELIABILITY.md), so loss must be detected, not prevented. The
tracker keeps the highest ``seq`` seen per device; a jump reports the missing
count, and a ``seq`` at or below the highest (a redelivery or a late reading)
is not a gap. A reading that arrives late into a reported gap (delivery can be
reordered around a broker restart) fills it again: the tracker reports the
fill, so the net of gaps and fills is the true loss. A device whose ``seq``
falls far below the highest restarted its counter: the tracker follows it
without reporting a gap.

With several ingesters on a Mosquitto shared subscription, each sees only part
of every device's sequence: run the tracker where one process sees all of a
device (one ingester, or a broker that shares by topic hash), see docs/scaling.md.
"""

from __future__ import annotations

from dataclasses import dataclass

RESTART_DROP = 1000  # a fall this large means the device's counter restarted
TRACK_MISSING = 10_000  # missing seqs remembered per device, to recognise late arrivals


@dataclass(frozen=True)
class Gap:
    """``missing`` readings between ``after`` and ``before`` for a device."""

    device: str
    after: int
    before: int

    @property
    def missing(self) -> int:
        """How many sequence numbers were skipped."""
        return self.before - self.after - 1


@dataclass(frozen=True)
class Filled:
    """A reading ``seq`` of ``device`` that arrived after its gap was reported."""

    device: str
    seq: int


class GapTracker:
    """Highest ``seq`` per device, and the seqs still missing below it."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.missing: dict[str, set[int]] = {}
        self.total_missing = 0
        self.gaps = 0

    def see(self, device: str, seq: int) -> Gap | Filled | None:
        """Record a reading's ``seq``; return the gap it reveals or fills, if any."""
        last = self.last.get(device)
        if last is None or seq < last - RESTART_DROP:
            self.last[device] = seq
            self.missing.pop(device, None)
            return None
        if seq <= last:
            holes = self.missing.get(device)
            if holes is not None and seq in holes:
                holes.discard(seq)
                self.total_missing -= 1
                return Filled(device, seq)
            return None
        self.last[device] = seq
        if seq == last + 1:
            return None
        gap = Gap(device, last, seq)
        holes = self.missing.setdefault(device, set())
        if len(holes) + gap.missing <= TRACK_MISSING:
            holes.update(range(last + 1, seq))
        self.total_missing += gap.missing
        self.gaps += 1
        return gap
