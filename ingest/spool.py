"""The spool: append-only segment files that hold batches InfluxDB could not take.

A batch is appended and fsynced before its messages are acknowledged to the
broker, so a reading is always in InfluxDB, in the spool, or still with the
broker. Segments are replayed oldest first once InfluxDB answers again, and a
segment is deleted only after every batch in it was written.

Record format (text, one per batch)::

    #batch <number of lines> <byte length of the body> <crc32 of the body>\\n
    <body: the lines joined with \\n>\\n

A record cut short by a crash (the process died between write and fsync) fails
its length or checksum and is skipped: its messages were never acknowledged,
so the broker delivers them again.

Policy when the spool is full (``max_bytes`` reached, or its disk is full):
nothing more is acknowledged, the writer keeps its batch in memory and retries,
and the broker keeps the rest of the stream in the ingester's session. The
ingester logs an error every time this starts and counts it in its metrics.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from campus.errors import CampusError

log = logging.getLogger(__name__)


class SpoolInUse(CampusError):
    """Another process holds the spool folder."""


class SpoolFull(Exception):
    """The spool may not grow (its size bound, or the disk under it, is reached)."""


@dataclass
class Segment:
    """One segment file."""

    path: Path
    size: int


class Spool:
    """Append-only, size-bounded, crash-safe batch spool in one folder."""

    def __init__(self, folder: Path, max_bytes: int, segment_bytes: int = 16 << 20) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        folder.mkdir(parents=True, exist_ok=True)
        # One ingester per folder: another would replay and delete our segments.
        self._lockfile = (folder / ".lock").open("a")
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lockfile.close()
            raise SpoolInUse(
                f"spool folder {folder} is in use by another ingester; "
                "give each ingester its own CAMPUS_INGEST_SPOOL_DIR"
            ) from None
        self._lock = threading.Lock()
        self._current: Path | None = None
        self._fh: int | None = None
        names = sorted(p for p in folder.glob("*.seg"))
        self._next = int(names[-1].stem) + 1 if names else 1
        self.bytes = sum(p.stat().st_size for p in names)
        self._count = len(names)  # segments on disk, so empty() needs no directory scan

    # ---------------------------------------------------------------- writing

    def append(self, lines: list[str]) -> None:
        """Store a batch durably (written and fsynced) or raise :class:`SpoolFull`."""
        body = "\n".join(lines).encode("utf-8")
        record = b"#batch %d %d %d\n" % (len(lines), len(body), zlib.crc32(body)) + body + b"\n"
        with self._lock:
            if self.bytes + len(record) > self.max_bytes:
                raise SpoolFull(f"spool at {self.bytes} bytes of {self.max_bytes}")
            if self._fh is None or self._current_size() + len(record) > self.segment_bytes:
                self._roll()
            assert self._fh is not None
            try:
                view = memoryview(record)
                while view:  # a nearly full disk may take part of a write
                    view = view[os.write(self._fh, view) :]
                os.fsync(self._fh)
            except OSError as exc:
                # A partial record is harmless (skipped on read); start a fresh segment.
                self._close_current()
                raise SpoolFull(f"cannot write the spool: {exc.strerror}") from exc
            self.bytes += len(record)

    def _current_size(self) -> int:
        return os.fstat(self._fh).st_size if self._fh is not None else 0

    def _roll(self) -> None:
        self._close_current()
        path = self.folder / f"{self._next:012d}.seg"
        self._next += 1
        self._fh = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._current = path
        self._count += 1
        dir_fd = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the new file's name survives a crash too
        finally:
            os.close(dir_fd)

    def _close_current(self) -> None:
        if self._fh is not None:
            os.close(self._fh)
        self._fh = None
        self._current = None

    # ---------------------------------------------------------------- reading

    def segments(self) -> list[Segment]:
        """Segments oldest first."""
        return [Segment(p, p.stat().st_size) for p in sorted(self.folder.glob("*.seg"))]

    def oldest(self) -> Segment | None:
        """The oldest segment, closing it for writing first if it is the current one."""
        with self._lock:
            segs = self.segments()
            if not segs:
                return None
            if self._current is not None and segs[0].path == self._current:
                self._close_current()
            return segs[0]

    @staticmethod
    def batches(segment: Segment) -> Iterator[list[str]]:
        """The intact batches of a segment, in order."""
        data = segment.path.read_bytes()
        pos = 0
        while pos < len(data):
            end = data.find(b"\n", pos)
            if end < 0:
                return
            header = data[pos:end].split()
            try:
                if header[0] != b"#batch":
                    raise ValueError
                n, length, crc = int(header[1]), int(header[2]), int(header[3])
            except (ValueError, IndexError):
                log.error(
                    "spool segment %s is damaged at byte %d; skipping the rest", segment.path, pos
                )
                return
            body = data[end + 1 : end + 1 + length]
            if len(body) != length or zlib.crc32(body) != crc:
                log.warning(
                    "spool segment %s ends with an incomplete batch (never "
                    "acknowledged, so the broker redelivers it)",
                    segment.path,
                )
                return
            lines = body.decode("utf-8").split("\n")
            if len(lines) == n:
                yield lines
            pos = end + 1 + length + 1

    def remove(self, segment: Segment) -> None:
        """Delete a fully replayed segment."""
        with self._lock:
            if self._current == segment.path:
                self._close_current()
            if segment.path.exists():
                segment.path.unlink()
                self._count -= 1
            self.bytes = max(0, self.bytes - segment.size)

    def empty(self) -> bool:
        """True when nothing waits for replay."""
        return self._count == 0

    def close(self) -> None:
        """Close the open segment and release the folder."""
        with self._lock:
            self._close_current()
            self._lockfile.close()
