"""The batch writer: messages in, batches of line protocol out, acknowledged
only once durably stored.

A single thread drains a bounded queue of messages; a batch is stored when it
reaches ``batch_size`` lines, when no message has come for ``flush_idle``
seconds (the stream paused: waiting longer only adds latency), or at the
latest ``flush_interval`` seconds after its first message. "Stored" means
written to InfluxDB, or appended and fsynced to the spool when InfluxDB is
down, hung or refusing writes for its own reasons (a full disk answers HTTP
400 on InfluxDB 1.6, and is retried, never dropped).
Only then are the batch's messages acknowledged to the broker, through the
``ack`` callback, in the order they arrived.

While the spool holds batches, the same thread replays a few of them after
every live batch, oldest first, so live data keeps flowing during recovery.
A partial write dead-letters the refused lines only: InfluxDB stored the rest.
When the spool is full too, nothing is acknowledged: the writer keeps its
batch and retries, the queue fills, the MQTT thread blocks, and the broker
holds the stream. Memory stays bounded throughout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from campus.errors import PartialWriteError, SinkError
from campus.influx import DatabaseNotFound, InfluxClient
from ingest.spool import Segment, Spool, SpoolFull

log = logging.getLogger(__name__)


class Message:
    """One MQTT message's lines and what acknowledges it (a plain slotted
    class: one is made per message, and a dataclass with a default factory
    cost twice as much to build)."""

    __slots__ = ("at", "lines", "token")

    def __init__(self, lines: list[str], token: object = None) -> None:
        self.lines = lines
        self.token = token  # handed back to ``ack`` once stored (the MQTT mid)
        self.at = time.monotonic()  # when it arrived


@dataclass
class WriterStats:
    """Counters for progress lines and metrics."""

    stored: int = 0  # points written to InfluxDB directly
    spooled: int = 0  # points appended to the spool
    replayed: int = 0  # points written from the spool
    refused: int = 0  # points InfluxDB refused for their content
    write_errors: int = 0
    spool_full_events: int = 0
    batches: int = 0


class BatchWriter:
    """Writes queued messages in batches; see the module doc."""

    def __init__(
        self,
        client: InfluxClient,
        *,
        spool: Spool | None = None,
        batch_size: int = 5000,
        flush_interval: float = 1.0,
        flush_idle: float = 0.05,
        queue_limit: int = 50_000,
        ack: Callable[[Sequence[object]], None] | None = None,
        on_rejected: Callable[[str, str], None] | None = None,
        on_write: Callable[[float], None] | None = None,
        replay_batches_per_turn: int = 4,
    ) -> None:
        self.client = client
        self.spool = spool
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.flush_idle = min(flush_idle, flush_interval)
        self.queue_limit = queue_limit
        self._arrived = 0  # messages put so far (one producer: the network thread)
        self._items: deque[Message] = deque()
        self._lines = 0  # lines queued, for batching
        self._count_lock = threading.Lock()
        self._wake = threading.Event()
        self.ack = ack or (lambda tokens: None)
        self.on_rejected = on_rejected or (lambda line, reason: None)
        self.on_write = on_write or (lambda seconds: None)
        self.replay_batches_per_turn = replay_batches_per_turn
        self.stats = WriterStats()
        self.healthy = True
        self._next_probe = 0.0
        self._replay_at: tuple[Segment, Iterator[list[str]]] | None = None
        self._replay_batch: list[str] | None = None
        self._thread = threading.Thread(target=self._run, name="influx-writer", daemon=True)
        self._stopping = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._full_since: float | None = None
        self._last_refused = 0  # points refused by the latest _write

    # ------------------------------------------------------------------ public

    @property
    def stored(self) -> int:
        """Points durably stored so far (InfluxDB or spool)."""
        return self.stats.stored + self.stats.spooled

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def put(self, message: Message) -> None:
        """Queue one message; blocks while the queue is full (backpressure).

        The writer is not woken per message (two thread switches a message cost
        more than decoding it): only when a batch is full, or by its own timer.
        """
        if self._idle.is_set():  # clearing takes a lock: only when there is something to clear
            self._idle.clear()
        self._items.append(message)
        self._arrived += 1
        with self._count_lock:
            self._lines += len(message.lines) or 1
        if self._lines >= self.batch_size:
            self._wake.set()
        while len(self._items) > self.queue_limit and not self._stopping.is_set():
            time.sleep(0.01)

    def pending(self) -> int:
        """Messages queued and not yet stored."""
        return len(self._items)

    def backlog_bytes(self) -> int:
        """Bytes waiting in the spool."""
        return self.spool.bytes if self.spool is not None else 0

    def wait_idle(self, timeout: float) -> bool:
        """Wait until everything queued so far has been stored."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._items and self._idle.is_set():
                return True
            time.sleep(0.05)
        return False

    def stop(self, timeout: float = 30.0) -> None:
        """Store what is queued, then stop; what cannot be stored stays unacknowledged."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        items = self._items
        while True:
            stopping = self._stopping.is_set()
            if not items:
                if stopping:
                    self._idle.set()
                    return
                self._idle.set()
                spool_waiting = self.spool is not None and not self.spool.empty()
                self._wake.wait(0.5 if spool_waiting else self.flush_interval)
                self._wake.clear()
                self._replay_some()
                continue
            deadline = items[0].at + self.flush_interval
            while self._lines < self.batch_size and not self._stopping.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                arrived = self._arrived
                self._wake.wait(min(remaining, self.flush_idle))
                self._wake.clear()
                if self._arrived == arrived:
                    break  # nothing came for flush_idle: the stream paused, store now
            lines: list[str] = []
            tokens: list[object] = []
            taken = 0
            while items and len(lines) < self.batch_size:
                message = items.popleft()
                lines.extend(message.lines)
                tokens.append(message.token)
                taken += len(message.lines) or 1
            with self._count_lock:
                self._lines -= taken
            if self._store(lines, final=self._stopping.is_set()):
                self.ack(tokens)
            self._replay_some()

    # ------------------------------------------------------------------- store

    def _store(self, lines: list[str], final: bool = False) -> bool:
        """Store one batch durably; False when it could not be (do not acknowledge)."""
        if not lines:
            return True
        while True:
            if self.healthy or self.spool is None:
                error = self._write(lines)
                if error is None:
                    self.stats.stored += len(lines) - self._last_refused
                    return True
                self._mark_unhealthy(error)
            if self.spool is not None:
                try:
                    self.spool.append(lines)
                except SpoolFull as exc:
                    self._spool_full(exc)
                else:
                    self._full_since = None
                    self.stats.spooled += len(lines)
                    return True
            if final or self._stopping.is_set():
                log.error(
                    "stopping with %d points not stored; the broker keeps them "
                    "unacknowledged and delivers them again",
                    len(lines),
                )
                return False
            time.sleep(1.0)
            self._probe(force=True)

    def _write(self, lines: list[str]) -> SinkError | None:
        """Write to InfluxDB; None on success (partial writes included)."""
        self._last_refused = 0
        for _ in range(3):
            started = time.monotonic()
            try:
                self.client.write(lines)
            except DatabaseNotFound:
                log.warning("database %r missing; creating it", self.client.database)
                try:
                    self.client.create_database()
                except SinkError as exc:
                    return exc
                continue
            except PartialWriteError as exc:
                if not exc.bad and len(lines) > 1:
                    # Refused lines not named: halve the batch until each refused line
                    # stands alone (rewriting stored points is idempotent).
                    return self._split(lines, exc)
                self._partial(lines, exc)
                return None
            except SinkError as exc:
                if exc.retryable:
                    self.stats.write_errors += 1
                    return exc
                return self._split(lines, exc)
            self.on_write(time.monotonic() - started)
            self.stats.batches += 1
            return None
        return SinkError("database could not be created", retryable=True)

    def _split(self, lines: list[str], exc: SinkError) -> SinkError | None:
        """A batch refused whole (too large): halve it until the parts go through."""
        if len(lines) == 1:
            self._last_refused = 1
            self.stats.refused += 1
            self.on_rejected(lines[0], str(exc))
            return None
        mid = len(lines) // 2
        refused = 0
        for part in (lines[:mid], lines[mid:]):
            error = self._write(part)
            if error is not None:
                return error
            refused += self._last_refused
        self._last_refused = refused
        return None

    def _partial(self, lines: list[str], exc: PartialWriteError) -> None:
        for line, reason in exc.bad:
            self.on_rejected(line, f"InfluxDB refused the point: {reason}")
        if not exc.bad:
            self.on_rejected("\n".join(lines[:3]), f"InfluxDB refused part of a batch: {exc}")
        self._last_refused = len({line for line, _ in exc.bad})
        self.stats.refused += self._last_refused
        self.stats.batches += 1

    def _mark_unhealthy(self, error: SinkError) -> None:
        if self.healthy:
            log.warning("InfluxDB cannot take writes (%s); spooling to disk until it can", error)
        self.healthy = False
        self._next_probe = time.monotonic() + 1.0

    def _spool_full(self, exc: SpoolFull) -> None:
        self.stats.spool_full_events += 1
        now = time.monotonic()
        if self._full_since is None or now - self._full_since > 30:
            log.error(
                "SPOOL FULL (%s): holding the batch and acknowledging nothing more; "
                "the broker keeps the stream until InfluxDB or the spool has room",
                exc,
            )
            self._full_since = now

    # ------------------------------------------------------------------ replay

    def _probe(self, force: bool = False) -> None:
        """While unhealthy, check now and then whether InfluxDB answers again."""
        if self.healthy or (not force and time.monotonic() < self._next_probe):
            return
        self._next_probe = time.monotonic() + 2.0
        if self.client.ping():
            self.healthy = True
            log.info("InfluxDB answers again")

    def _replay_some(self) -> None:
        """Write a few spooled batches, oldest first, when InfluxDB looks healthy."""
        if self.spool is None or self.spool.empty():
            return
        self._probe()
        if not self.healthy:
            return
        for _ in range(self.replay_batches_per_turn):
            if self._replay_at is None:
                seg = self.spool.oldest()
                if seg is None:
                    return
                self._replay_at = (seg, Spool.batches(seg))
                self._replay_batch = None
            seg, batches = self._replay_at
            if self._replay_batch is None:
                self._replay_batch = next(batches, None)
            if self._replay_batch is None:
                self.spool.remove(seg)
                self._replay_at = None
                if self.spool.empty():
                    log.info("spool replayed; back to writing directly")
                continue
            error = self._write(self._replay_batch)
            if error is not None:  # keep the batch; try it again later
                self._mark_unhealthy(error)
                return
            self.stats.replayed += len(self._replay_batch) - self._last_refused
            self._replay_batch = None
