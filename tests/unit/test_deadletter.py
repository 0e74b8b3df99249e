"""The dead-letter file: records are whole JSON lines, written at flush, and
the file is rotated by size so garbage at volume cannot fill the disk."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest

from ingest.deadletter import DeadLetter


def rows(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_records_reach_the_file_at_flush(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    dead = DeadLetter(path)
    dead.add("campus/a/power/m", b"x" * 5000, "payload too large", at_ms=1_790_000_000_123)
    assert path.read_bytes() == b""  # queued, not written yet
    dead.flush()
    (row,) = rows(path)
    assert row["time"] == "2026-09-21T14:13:20.123+00:00"
    assert (row["bytes"], row["truncated"], len(str(row["payload"]))) == (5000, True, 1024)
    dead.close()


def test_the_file_is_rotated_by_size_keeping_the_newest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "dead.jsonl"
    dead = DeadLetter(path, max_bytes=2000, keep=2)
    with caplog.at_level(logging.WARNING, logger="ingest.deadletter"):
        for batch in range(10):  # ten flushes of ten records of about 150 bytes
            for i in range(10):
                dead.add("campus/a/power/m", b"{", f"record {batch * 10 + i}")
            dead.flush()
    dead.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["dead.jsonl", "dead.jsonl.1", "dead.jsonl.2"]  # older ones deleted
    kept = [r["reason"] for name in reversed(files) for r in rows(tmp_path / name)]
    # whole records, oldest first across the files, ending with the newest
    assert kept == [f"record {n}" for n in range(100 - len(kept), 100)]
    assert all((tmp_path / name).stat().st_size < 2000 + 2000 for name in files)
    assert "rotated" in caplog.text


def test_records_added_while_another_thread_flushes_are_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    dead = DeadLetter(path)
    done = threading.Event()

    def flusher() -> None:
        while not done.is_set():
            dead.flush()

    thread = threading.Thread(target=flusher)
    thread.start()
    for i in range(20_000):
        dead.add("campus/a/power/m", b"{", f"r{i}")
    done.set()
    thread.join()
    dead.close()
    assert [r["reason"] for r in rows(path)] == [f"r{i}" for i in range(20_000)]
