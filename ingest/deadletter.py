"""The dead-letter file: one JSON object per rejected message or point.

Each line holds the time, the topic, the payload (truncated, decoded with
replacement characters so any bytes can be shown), its size and the reason.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import orjson

PAYLOAD_KEEP = 1024


class DeadLetter:
    """Append-only JSON-lines file, safe to call from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()
        self.count = 0

    def add(self, topic: str, payload: bytes | str, reason: str, size: int | None = None) -> None:
        """Record one rejection (``size``: the payload's, when it was not kept)."""
        raw = payload.encode("utf-8", "replace") if isinstance(payload, str) else payload
        text = raw[:PAYLOAD_KEEP].decode("utf-8", "replace")
        record = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "topic": topic[:512],
            "payload": text,
            "truncated": len(raw) > PAYLOAD_KEEP or size is not None,
            "bytes": len(raw) if size is None else size,
            "reason": reason,
        }
        try:
            line = orjson.dumps(record).decode()
        except orjson.JSONEncodeError:  # a lone surrogate (from a JSON escape) in a reason
            line = json.dumps(record)
        with self._lock:
            self._fh.write(line + "\n")
            self.count += 1

    def flush(self) -> None:
        """Hand buffered records to the OS; called before the messages they
        describe are acknowledged (once per batch, not once per record)."""
        with self._lock:
            if not self._fh.closed:
                self._fh.flush()

    def close(self) -> None:
        """Flush and close the file."""
        with self._lock:
            if not self._fh.closed:
                self._fh.close()
