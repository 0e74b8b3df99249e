"""The batch writer: lines in, batches of line protocol out to InfluxDB.

A single thread drains a bounded queue (one item per message); a batch is written when it reaches
``batch_size`` lines or ``flush_interval`` seconds after its first line. A
retryable failure (server down, hung, full disk) keeps the batch and retries it
with capped exponential backoff while the queue fills; a full queue blocks the
producer (the MQTT thread), which stops reading from the broker: backpressure
that keeps memory bounded. A partial write dead-letters the refused lines only;
the rest of the batch was stored.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from campus.errors import PartialWriteError, SinkError
from campus.influx import DatabaseNotFound, InfluxClient

log = logging.getLogger(__name__)

_STOP = object()


class BatchWriter:
    """Writes queued line-protocol lines in batches; see the module doc."""

    def __init__(
        self,
        client: InfluxClient,
        *,
        batch_size: int = 5000,
        flush_interval: float = 1.0,
        queue_limit: int = 200_000,
        on_rejected: Callable[[str, str], None] | None = None,
        on_stored: Callable[[int], None] | None = None,
    ) -> None:
        self.client = client
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.queue: queue.Queue[object] = queue.Queue(maxsize=queue_limit)
        self.on_rejected = on_rejected or (lambda line, reason: None)
        self.on_stored = on_stored or (lambda n: None)
        self.stored = 0
        self.refused = 0
        self.write_errors = 0
        self.batches = 0
        self._thread = threading.Thread(target=self._run, name="influx-writer", daemon=True)
        self._stopping = threading.Event()
        self._idle = threading.Event()
        self._idle.set()

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def put(self, lines: list[str]) -> None:
        """Queue one message's lines; blocks while the queue is full (backpressure)."""
        if lines:
            self._idle.clear()
            self.queue.put(lines)

    def pending(self) -> int:
        """Messages queued and not yet written."""
        return self.queue.qsize()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until everything queued so far has been written."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.queue.empty() and self._idle.is_set():
                return True
            time.sleep(0.05)
        return False

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is queued, then stop (gives up retrying after ``timeout``)."""
        self._stopping.set()
        self.queue.put(_STOP)
        self._thread.join(timeout)

    # ------------------------------------------------------------------ thread

    def _run(self) -> None:
        batch: list[str] = []
        deadline: float | None = None
        done = False
        while not done:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                item = self.queue.get(timeout=timeout)
            except queue.Empty:
                item = None
            if item is _STOP:
                done = True
            elif isinstance(item, list):
                batch.extend(item)
                if deadline is None:
                    deadline = time.monotonic() + self.flush_interval
                if len(batch) < self.batch_size:
                    continue
            if batch and (
                done
                or len(batch) >= self.batch_size
                or (deadline is not None and time.monotonic() >= deadline)
            ):
                self._write(batch)
                batch = []
                deadline = None
            if not batch and self.queue.empty():
                self._idle.set()

    def _write(self, batch: list[str]) -> None:
        delay = 0.2
        while True:
            try:
                self.client.write(batch)
            except DatabaseNotFound:
                log.warning("database %r missing; creating it", self.client.database)
                try:
                    self.client.create_database()
                except SinkError as exc:
                    log.warning("cannot create database: %s", exc)
                    self._backoff(delay)
                    delay = min(delay * 2, 30.0)
                continue
            except PartialWriteError as exc:
                self._partial(batch, exc)
                return
            except SinkError as exc:
                if exc.retryable:
                    self.write_errors += 1
                    log.warning(
                        "write of %d lines failed, retrying in %.1f s: %s", len(batch), delay, exc
                    )
                    if self._backoff(delay):
                        log.error("stopping with %d lines unwritten", len(batch))
                        return
                    delay = min(delay * 2, 30.0)
                    continue
                if len(batch) > 1:  # too large or refused whole: halve and try again
                    mid = len(batch) // 2
                    self._write(batch[:mid])
                    self._write(batch[mid:])
                    return
                self.refused += 1
                self.on_rejected(batch[0], str(exc))
                return
            self.stored += len(batch)
            self.batches += 1
            self.on_stored(len(batch))
            return

    def _partial(self, batch: list[str], exc: PartialWriteError) -> None:
        bad_lines = {line for line, _ in exc.bad}
        for line, reason in exc.bad:
            self.on_rejected(line, f"InfluxDB refused the point: {reason}")
        if not exc.bad:
            self.on_rejected("\n".join(batch[:3]), f"InfluxDB refused part of a batch: {exc}")
        refused = len(bad_lines) if exc.bad else 0
        self.refused += refused
        stored = len(batch) - refused
        self.stored += stored
        self.batches += 1
        self.on_stored(stored)

    def _backoff(self, delay: float) -> bool:
        """Sleep ``delay``; True when stopping and retrying should end."""
        if self._stopping.is_set():
            # On shutdown keep trying briefly, then give up loudly.
            time.sleep(min(delay, 1.0))
            return delay >= 8.0
        time.sleep(delay)
        return False
