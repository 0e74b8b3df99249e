"""Two ingesters share the stream through the shared subscription: every
reading is stored exactly once, and both took a share."""

from __future__ import annotations

import re
import signal

import pytest

from .faults import expected_per_device, start_ingest, stream, wait_all_stored


@pytest.mark.integration
def test_two_ingesters_share_the_stream(fault_settings, fault_influx, campus, tmp_path):
    # Each ingester sees only part of every device's seq on Mosquitto, so gap
    # detection is for single-ingester deployments (docs/scaling.md).
    settings = fault_settings.model_copy(update={"ingest_gap_detection": False})
    a, log_a = start_ingest(
        settings.model_copy(update={"ingest_client_id": "ingest-a", "var_dir": tmp_path / "a"}),
        tmp_path,
        "a",
    )
    b, log_b = start_ingest(
        settings.model_copy(update={"ingest_client_id": "ingest-b", "var_dir": tmp_path / "b"}),
        tmp_path,
        "b",
    )
    try:
        run = stream(settings, tmp_path, hours=1, rate=3000)
        published = run.wait()
        want = expected_per_device(campus, 1)
        assert sum(published.values()) == sum(want.values())
        got = wait_all_stored(fault_influx, want, 120)
        assert got == want  # no reading missing, none stored twice
    finally:
        for proc in (a, b):
            proc.send_signal(signal.SIGINT)
            assert proc.wait(60) == 0
    shares = []
    for log in (log_a, log_b):
        m = re.search(r"ingest stopped: (\d+) messages", log.read_text())
        assert m, log.read_text()[-1000:]
        shares.append(int(m.group(1)))
    total = sum(want.values())
    assert sum(shares) >= total  # redeliveries may add, never subtract
    assert min(shares) > total * 0.2, shares  # both took a real share
