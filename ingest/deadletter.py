"""The dead-letter file: one JSON object per rejected message or point.

Each line holds the time, the topic, the payload (truncated, decoded with
replacement characters so any bytes can be shown), its size and the reason.

Recording costs the thread that rejects no system call, no lock and no
serialisation: what is kept of a rejection is queued as it is, and
:meth:`DeadLetter.flush` (called before the messages it describes are
acknowledged; in the ingester, by its writer thread, which mostly waits on
InfluxDB) turns everything queued into JSON lines and writes them in one
write. Garbage at volume is tens of thousands of records a second; written
one by one under a lock, the ingester's network thread spent a seventh of its
time in that write, and in waiting for the lock while the writer thread
flushed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

import orjson

log = logging.getLogger(__name__)

PAYLOAD_KEEP = 1024
# a rejection as the rejecting thread queues it: received at (epoch ms), topic,
# the payload's kept head, the payload's length, its size when not kept, the reason
Queued = tuple[int, str, bytes, int, int | None, str]


class DeadLetter:
    """Append-only JSON-lines file, safe to call from several threads.

    Records are queued by :meth:`add` and reach the file at :meth:`flush` or
    :meth:`close`; between two flushes they are held in memory (the ingester
    flushes once per batch, so at most a batch's rejections).
    """

    def __init__(self, path: Path, max_bytes: int = 0, keep: int = 5) -> None:
        self.path = path
        self.max_bytes = max_bytes  # 0: the file grows without bound
        self.keep = keep  # rotated files kept beside it: path.1 (newest) .. path.<keep>
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("ab")  # orjson writes bytes: no text layer to encode again
        self._lock = threading.Lock()  # between flushing threads only
        self._queued: deque[Queued] = deque()  # append and popleft are atomic
        self._second = -1
        self._stamp = ""

    def _time(self, ms: int) -> str:
        """ISO 8601 with milliseconds; the date and time are formatted once a
        second (garbage at volume is thousands of records a second)."""
        second, milli = divmod(ms, 1000)
        if second != self._second:
            self._second = second
            self._stamp = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        return f"{self._stamp}{milli:03d}+00:00"

    def add(
        self,
        topic: str,
        payload: bytes | str,
        reason: str,
        size: int | None = None,
        at_ms: int | None = None,
    ) -> None:
        """Record one rejection (``size``: the payload's, when it was not kept;
        ``at_ms``: when it was received, epoch milliseconds, if known)."""
        raw = payload.encode("utf-8", "replace") if isinstance(payload, str) else payload
        ms = int(time.time() * 1000) if at_ms is None else at_ms
        self._queued.append((ms, topic, raw[:PAYLOAD_KEEP], len(raw), size, reason))

    def _line(self, queued: Queued) -> bytes:
        ms, topic, kept, length, size, reason = queued
        record = {
            "time": self._time(ms),
            "topic": topic[:512],
            "payload": kept.decode("utf-8", "replace"),
            "truncated": length > PAYLOAD_KEEP or size is not None,
            "bytes": length if size is None else size,
            "reason": reason,
        }
        try:
            return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        except orjson.JSONEncodeError:  # a lone surrogate (from a JSON escape) in a reason
            return (json.dumps(record) + "\n").encode()

    def flush(self) -> None:
        """Write the queued records and hand them to the OS; called before the
        messages they describe are acknowledged (once per batch, not once per
        record)."""
        with self._lock:
            self._write_queued()

    def _write_queued(self) -> None:
        queued = self._queued
        # popleft, not a swap of the deque: a record added meanwhile by another
        # thread stays queued for the next flush instead of being lost
        # One growing buffer: each line's bytes object is freed as soon as it is
        # copied (orjson allocates its output outside Python's small-object
        # allocator, and thousands of them kept alive for a join cost three
        # times the serialising)
        out = bytearray()
        for _ in range(len(queued)):
            out += self._line(queued.popleft())
        if self._fh.closed:
            return
        if out:
            self._fh.write(out)
        self._fh.flush()
        if self.max_bytes and self._fh.tell() >= self.max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        """Start a new file: the current one becomes ``<path>.1``, the older
        ones move up by one, and the one past ``keep`` is deleted (garbage at
        volume must not fill the disk the spool and InfluxDB need)."""
        self._fh.close()
        for n in range(self.keep, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if n == self.keep:
                older.unlink(missing_ok=True)
            else:
                newer = self.path.with_name(f"{self.path.name}.{n + 1}")
                if older.exists():
                    older.replace(newer)
        if self.keep > 0:
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink(missing_ok=True)
        self._fh = self.path.open("ab")
        log.warning(
            "dead-letter file reached %d bytes: rotated (%d older files kept)",
            self.max_bytes,
            self.keep,
        )

    def close(self) -> None:
        """Write what is queued, then close the file."""
        with self._lock:
            self._write_queued()
            if not self._fh.closed:
                self._fh.close()
