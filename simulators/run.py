"""Plays the simulator on a clock: real time, accelerated, or as fast as possible.

Event time starts at ``start`` and advances tick by tick. With ``speed`` set,
tick ``t`` is published when ``(t - start) / speed`` wall seconds have passed;
with ``speed=None`` ticks follow each other at once. In every mode the
simulator never publishes the future: once event time reaches the wall clock
it continues in real time (or stops at ``end``).
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson

from campus.registry import Device
from simulators.engine import CampusSimulator
from simulators.faults import FaultInjector

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes], None]


@functools.lru_cache(maxsize=8)
def rfc3339(t: int) -> str:
    """``t`` (epoch seconds) as an RFC 3339 UTC time; every device due at one
    tick shares it, so it is formatted once a tick."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def payload(t: int, seq: int, metrics: dict[str, float]) -> bytes:
    """The contract payload of one reading, with an RFC 3339 ``ts``."""
    return orjson.dumps({"ts": rfc3339(t), "seq": seq, "metrics": metrics})


def select_devices(devices: list[Device], patterns: list[str] | None) -> list[Device]:
    """Devices whose id or building matches one of the glob ``patterns`` (all if none)."""
    if not patterns:
        return devices
    return [
        d
        for d in devices
        if any(fnmatch.fnmatchcase(d.id, p) or fnmatch.fnmatchcase(d.building, p) for p in patterns)
    ]


@dataclass
class SimulationRun:
    """One run of the simulator from ``start`` to ``end`` (epoch seconds)."""

    sim: CampusSimulator
    publish: Publish
    start: float
    end: float | None = None
    speed: float | None = 1.0
    devices: set[str] | None = None
    max_rate: float | None = None
    clock: Callable[[], float] = time.time
    on_tick: Callable[[int, int], None] | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    published: Counter[str] = field(default_factory=Counter)
    injector: FaultInjector | None = None
    publish_status: Publish | None = None  # retained status changes of injected faults

    def ticks_total(self) -> int | None:
        """How many ticks the run has, when it has an end."""
        if self.end is None:
            return None
        first = self.sim.first_tick(self.start)
        return max(0, int((self.end - first + self.sim.step - 1) // self.sim.step))

    def run(self) -> Counter[str]:
        """Publish until ``end`` or until :attr:`stop_event` is set; return counts by kind."""
        t = self.sim.first_tick(self.start)
        wall0 = time.monotonic()
        done = 0
        sent = 0
        while (self.end is None or t < self.end) and not self.stop_event.is_set():
            if self.speed is not None:
                due = wall0 + (t - self.start) / self.speed
                self._wait(due - time.monotonic())
            ahead = t - self.clock()
            if ahead > 0:  # never publish the future
                self._wait(ahead)
            if self.stop_event.is_set():
                break
            readings = self.sim.readings_at(t)
            if self.devices is not None:
                readings = [(d, m) for d, m in readings if d.id in self.devices]
            if self.injector is not None:
                injected = self.injector.apply(t, readings)
                readings = injected.readings
                if self.publish_status is not None:
                    for device, online in injected.status:
                        state = b"online" if online else b"offline"
                        self.publish_status(f"{device.topic}/status", state)
            for device, metrics in readings:
                seq = t // int(device.interval_s)
                self.publish(device.topic, payload(t, seq, metrics))
                self.published[device.kind] += 1
                sent += 1
            if self.max_rate is not None:  # hold the average at or under max_rate
                self._wait(wall0 + sent / self.max_rate - time.monotonic())
            done += 1
            if self.on_tick is not None:
                self.on_tick(t, done)
            t += self.sim.step
        return self.published

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self.stop_event.wait(seconds)
