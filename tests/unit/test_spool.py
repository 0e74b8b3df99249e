"""The spool: durable batches, crash-torn records skipped, its size bound, one
owner per folder, and segments found again after a restart."""

from __future__ import annotations

import pytest

from ingest.spool import Spool, SpoolFull, SpoolInUse


def _all(spool: Spool) -> list[list[str]]:
    out = []
    for seg in spool.segments():
        out.extend(Spool.batches(seg))
    return out


def test_batches_come_back_in_order(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    batches = [[f"m,d=x f={i}.0 {i}", f"m,d=y f={i}.5 {i}"] for i in range(10)]
    for b in batches:
        spool.append(b)
    assert len(spool.segments()) > 1  # rolled over at 200 bytes
    assert _all(spool) == batches
    assert not spool.empty()


def test_restart_finds_the_segments_and_continues_numbering(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(["a 1"])
    spool.close()
    again = Spool(tmp_path, max_bytes=1 << 20)
    assert not again.empty() and again.bytes > 0
    again.append(["b 2"])
    assert _all(again) == [["a 1"], ["b 2"]]


def test_torn_record_is_skipped_and_what_came_before_is_kept(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(["good 1", "good 2"])
    seg = spool.segments()[-1]
    with seg.path.open("ab") as fh:  # a crash in the middle of the next append
        fh.write(b"#batch 2 40 12345\ntruncat")
    assert list(Spool.batches(seg)) == [["good 1", "good 2"]]


def test_size_bound_refuses_more(tmp_path):
    spool = Spool(tmp_path, max_bytes=100)
    spool.append(["x" * 40])
    with pytest.raises(SpoolFull, match="spool at"):
        spool.append(["y" * 60])


def test_remove_frees_the_bytes_and_empties(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.append(["a 1"])
    seg = spool.oldest()
    assert seg is not None
    spool.remove(seg)
    assert spool.empty() and spool.bytes == 0


def test_one_ingester_per_folder(tmp_path):
    first = Spool(tmp_path, max_bytes=1 << 20)
    with pytest.raises(SpoolInUse, match="in use by another ingester"):
        Spool(tmp_path, max_bytes=1 << 20)
    first.close()
    Spool(tmp_path, max_bytes=1 << 20).close()
