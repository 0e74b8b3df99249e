"""Online scoring for the rules engine's ``anomaly`` kind.

:class:`ModelScorer` is the engine's :class:`~rules.kinds.anomaly.Scorer`: for
each reading of a device with a trained model it returns the model's score
in [0, 1], computed in one vectorised call over the reading and as much of
the device's recent past as the detector looks back (``Detector.lookback``:
nothing for the seasonal and static detectors, an hour for the forest, 12
hours for the drift, a day and an hour for the regressor): its last
``context`` readings and every reading of its lookback (up to a day and an
hour) in full and, before them, one reading every ``sparse_step_s`` over
the eight days before. The score of a reading never depends on later
readings.

A run of readings of one device (a batch payload of 60 readings, or the
history a restarted engine primes with) is scored in one vectorised detector
call by :meth:`ModelScorer.prepare`; :meth:`ModelScorer.score` then hands
each reading its result. A reading that arrives alone is scored alone.

Cold start: a device without a model gets no score (so anomaly rules stay
silent for it), said once in the log for all such devices; a model file that
cannot be used is said once per device, and the device stays silent until a
good model is trained.
Models are looked up again every ``reload_s`` seconds, so a retraining is
picked up without a restart.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np
import pandas as pd

from campus.errors import SinkError
from campus.influx import InfluxClient, rows
from campus.influxql import quote_ident, quote_literal
from campus.registry import Device
from models.base import Detector, ModelError, readings_frame
from models.choice import MODELLED
from models.explain import explanation, plot_day
from models.registry import Registry

log = logging.getLogger("campus.models")

EIGHT_DAYS_MS = 8 * 86_400_000
FULL_AT_MOST = pd.Timedelta(days=1, hours=1)  # the longest past kept reading by reading


@dataclass
class _Device:
    metric: str
    detector: Detector | None
    version: int | None
    loaded_at: float
    full_ms: int = 0  # how far back every reading is kept (the model's lookback, capped)
    times: deque[int] = field(default_factory=deque)  # the readings kept in full
    values: deque[float] = field(default_factory=deque)
    old_times: deque[int] = field(default_factory=deque)  # one per sparse step, 8 days back
    old_values: deque[float] = field(default_factory=deque)


class ModelScorer:
    """Scores live readings with the newest model of each device."""

    def __init__(
        self,
        registry: Registry,
        *,
        context: int = 180,
        sparse_step_s: float = 900.0,
        reload_s: float = 300.0,
        clock: object = time.monotonic,
    ) -> None:
        self.registry = registry
        self.context = context
        self.sparse_step_ms = int(sparse_step_s * 1000)
        self.reload_s = reload_s
        self._clock = clock
        self._devices: dict[str, _Device] = {}
        self._said: set[str] = set()
        self._said_missing = False
        self.last: dict[str, str] = {}  # device -> explanation of its latest score
        # device -> {epoch ms: (score, explanation)} of its latest scored readings
        self._ready: dict[str, dict[int, tuple[float, str]]] = {}

    def _entry(self, device: Device) -> _Device | None:
        now = self._clock()  # type: ignore[operator]
        entry = self._devices.get(device.id)
        if entry is not None and now - entry.loaded_at < self.reload_s:
            return entry
        modelled = MODELLED.get(device.kind)
        if modelled is None:
            return None
        metric = modelled[0]
        detector, version = None, None
        try:
            saved = self.registry.latest(device.id, metric)
            if saved is None:
                self._missing(device.id)
            elif entry is not None and entry.version == saved.version:
                detector, version = entry.detector, entry.version
            else:
                detector, version = self.registry.load(saved), saved.version
                log.info("anomaly model %s/%s v%d loaded", device.id, metric, version)
        except ModelError as exc:
            self._once(device.id, f"anomaly model of {device.id} not used: {exc}")
        if entry is None:
            entry = _Device(metric, detector, version, now)
            self._devices[device.id] = entry
        else:
            entry.detector, entry.version, entry.loaded_at = detector, version, now
        if detector is not None:
            reach = min(detector.lookback(), FULL_AT_MOST)
            entry.full_ms = int(reach.total_seconds() * 1000)
        return entry

    def _missing(self, device: str) -> None:
        """Say once that devices lack models (a fresh campus lacks them all)."""
        if not self._said_missing:
            self._said_missing = True
            log.warning(
                "no anomaly model for %s yet: anomaly rules stay silent for it and for every "
                "other device without one until `campus model train` makes them",
                device,
            )
        else:
            log.debug("no anomaly model for %s yet", device)

    def _once(self, key: str, message: str) -> None:
        if key not in self._said:
            self._said.add(key)
            log.warning("%s", message)

    def prime(self, device: Device, readings: Sequence[tuple[int, float]]) -> None:
        """Take ``device``'s past readings (epoch ms, value of its modelled metric)
        as context without scoring them: a restarted engine need not wait a
        week for its lag features."""
        entry = self._entry(device)
        if entry is None:
            return
        for ts_ms, value in readings:
            self._remember(entry, ts_ms, value)

    def prime_from(self, client: InfluxClient, devices: Iterable[Device], now_ms: int) -> int:
        """:meth:`prime` each of ``devices`` that has a model with the readings
        of its modelled metric that the model looks back over, read from
        InfluxDB; returns how many readings. When InfluxDB cannot answer, the
        devices not yet primed start cold (said once in the log)."""
        total = 0
        for device in devices:
            lookback = self.lookback(device)
            entry = self._devices.get(device.id)
            if lookback is None or entry is None or lookback <= pd.Timedelta(0):
                continue  # no model, or one that judges a reading by its own time
            since = now_ms - int(min(lookback, pd.Timedelta(days=8)).total_seconds() * 1000)
            q = (
                f"SELECT {quote_ident(entry.metric)} FROM {quote_ident(device.kind)} "
                f"WHERE device = {quote_literal(device.id)} AND time > {since}ms "
                f"AND time <= {now_ms}ms"
            )
            try:
                found = rows(client.query(q))
            except SinkError as exc:
                log.warning(
                    "anomaly models start without their past (from %s on): %s", device.id, exc
                )
                break  # InfluxDB is down or refusing: asking for each device says nothing more
            past = [
                (int(r["time"]), float(r[entry.metric]))
                for r in found
                if isinstance(r.get(entry.metric), int | float)
            ]
            self.prime(device, past)
            total += len(past)
        return total

    def _remember(self, entry: _Device, ts_ms: int, value: float) -> None:
        times, values = entry.times, entry.values
        times.append(ts_ms)
        values.append(value)
        # in full: the last `context` readings, and every reading the model looks
        # back over (up to a day and an hour), so that a window statistic (the
        # drift's 12-hour median, the forest's hour) sees what it saw in training
        full_ms = entry.full_ms
        while len(times) > self.context and times[0] < ts_ms - full_ms:
            t, v = times.popleft(), values.popleft()
            old = entry.old_times
            if not old or t - old[-1] >= self.sparse_step_ms:
                old.append(t)
                entry.old_values.append(v)
            while old and old[0] < ts_ms - EIGHT_DAYS_MS:
                old.popleft()
                entry.old_values.popleft()

    def lookback(self, device: Device) -> pd.Timedelta | None:
        """How much of ``device``'s past its model needs to score a reading
        (what a restarted engine should :meth:`prime` it with), or None
        without a model."""
        entry = self._entry(device)
        if entry is None or entry.detector is None:
            return None
        return entry.detector.lookback()

    def score(self, device: Device, ts_ms: int, metrics: Mapping[str, float]) -> float | None:
        """The model's score of this reading, or None (no model, metric missing)."""
        done = self._ready.get(device.id, {}).get(ts_ms)
        if done is not None:  # scored by prepare(), or asked again (a rule's clear condition)
            self.last[device.id] = done[1]
            return done[0]
        scored = self.prepare(device, [(ts_ms, metrics)])
        return scored[0] if scored else None

    def prepare(
        self, device: Device, readings: Sequence[tuple[int, Mapping[str, float]]]
    ) -> list[float]:
        """Score a run of ``device``'s readings (epoch ms, metrics; oldest
        first) in one vectorised call of its model and keep the results for
        :meth:`score`. Readings without the modelled metric, repeats and
        readings older than the last one scored are skipped, as the engine
        skips them. Returns the scores, in order."""
        entry = self._entry(device)
        if entry is None or entry.detector is None:
            return []
        last = entry.times[-1] if entry.times else None
        new_times: list[int] = []
        new_values: list[float] = []
        for ts_ms, metrics in readings:
            value = metrics.get(entry.metric)
            if value is None or (last is not None and ts_ms <= last):
                continue
            new_times.append(ts_ms)
            new_values.append(float(value))
            last = ts_ms
        if not new_times:
            return []
        since = new_times[0] - int(entry.detector.lookback().total_seconds() * 1000)
        old_times, old_values = self._context(entry, since)
        rows = entry.detector.score_records(
            np.asarray(old_times + new_times, dtype=np.int64) * 1_000_000,
            np.asarray(old_values + new_values, dtype=float),
            len(new_times),
        )
        # remembered once scored: a model that fails leaves the readings unscored,
        # to be tried again one by one (and the failure to reach the engine)
        for ts_ms, value in zip(new_times, new_values, strict=True):
            self._remember(entry, ts_ms, value)
        unit = device.metrics[entry.metric].unit
        ready = {
            ts_ms: (float(row["score"]), explanation(row, value, unit))
            for ts_ms, value, row in zip(new_times, new_values, rows, strict=True)
        }
        self._ready[device.id] = ready  # the previous run's results are no longer asked for
        self.last[device.id] = ready[new_times[-1]][1]
        return [score for score, _ in ready.values()]

    @staticmethod
    def _context(entry: _Device, since: int) -> tuple[list[int], list[float]]:
        """The readings kept of a device from ``since`` on: the sparse ones of
        the days before, then the recent ones in full. Both are in time order,
        so each is walked back from its newest end only as far as ``since``
        (nothing at all for a model that looks back over nothing)."""
        times: list[int] = []
        values: list[float] = []
        for kept_times, kept_values in (
            (entry.old_times, entry.old_values),
            (entry.times, entry.values),
        ):
            first = len(kept_times)
            while first > 0 and kept_times[first - 1] >= since:
                first -= 1
            times += islice(kept_times, first, None)
            values += islice(kept_values, first, None)
        return times, values

    def explain(self, device: str) -> str | None:
        """The explanation of ``device``'s latest score."""
        return self.last.get(device)

    def plot(self, device: str, path: Path, threshold: float = 0.5) -> Path | None:
        """A PNG of ``device``'s last day as its model saw it, or None without one."""
        entry = self._devices.get(device)
        if entry is None or entry.detector is None or not entry.times:
            return None
        times = np.asarray([*entry.old_times, *entry.times], dtype=np.int64) * 1_000_000
        frame = readings_frame(times, [*entry.old_values, *entry.values])
        day = frame[frame.index >= frame.index[-1] - pd.Timedelta(days=1)]
        scored = entry.detector.score(frame).loc[day.index]
        title = f"{device} {entry.metric}: the last day, model v{entry.version}"
        return plot_day(day, scored, path, title, threshold)
