"""InfluxDB down, hung and out of disk mid-stream: every reading still lands.

Each test streams simulated readings through a real broker into a real
`campus ingest` while the fault is injected into a real influxd, then counts
the stored points per device against what the simulator published.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from .faults import (
    assert_every_reading_stored,
    start_ingest,
    stop_ingest,
    stream,
)
from .procs import wait_for


@pytest.mark.integration
def test_influxd_stopped_60s_then_restarted(
    fault_settings, fault_influx, own_influxd, campus, tmp_path
):
    ingest, log = start_ingest(fault_settings, tmp_path)
    try:
        run = stream(fault_settings, tmp_path, hours=1, rate=300)  # about 80 s of publishing
        time.sleep(5)
        own_influxd.stop()
        time.sleep(60)
        assert "spooling to disk" in log.read_text()
        spool = fault_settings.spool_folder
        assert any(spool.glob("*.seg")), "nothing spooled while InfluxDB was down"
        own_influxd.start(timeout=60)
        published = run.wait()
        want = assert_every_reading_stored(fault_influx, campus, 1, 120)
        assert sum(published.values()) == sum(want.values())
        assert wait_for(lambda: not any(spool.glob("*.seg")), 30), "spool not drained"
    finally:
        stop_ingest(ingest)
    assert "spool replayed" in log.read_text()


@pytest.mark.integration
def test_influxd_hung_with_sigstop(fault_settings, fault_influx, own_influxd, campus, tmp_path):
    ingest, log = start_ingest(fault_settings, tmp_path)
    try:
        run = stream(fault_settings, tmp_path, hours=0.5, rate=400)
        time.sleep(4)
        own_influxd.kill(signal.SIGSTOP)
        time.sleep(15)
        own_influxd.kill(signal.SIGCONT)
        run.wait()
        assert_every_reading_stored(fault_influx, campus, 0.5, 120)
    finally:
        stop_ingest(ingest)
    assert "spooling to disk" in log.read_text()


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB tmpfs (root only): a disk that can be filled and freed."""
    import os

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI and `make test` run as root)")
    mnt = tmp_path / "disk"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(folder, leave_bytes: int) -> None:
    """Fill the file system under ``folder`` until ``leave_bytes`` are free."""
    import os

    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    with open(folder / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, free - leave_bytes))


@pytest.mark.integration
def test_influxd_disk_full_is_retried_not_dropped(
    fault_settings, fault_influx, own_influxd, campus, tmp_path, small_disk
):
    from campus.stack import Influxd

    own_influxd.stop()
    server = Influxd(small_disk / "influxd", own_influxd.port, rpc_port=own_influxd.rpc_port)
    server.start(timeout=60)
    ingest, log = start_ingest(fault_settings, tmp_path)
    try:
        _fill(small_disk, leave_bytes=64 * 1024)
        run = stream(fault_settings, tmp_path, hours=0.5, rate=600)
        assert wait_for(lambda: "no space left on device" in log.read_text(), 60), log.read_text()[
            -2000:
        ]
        run.wait()
        (small_disk / "filler").unlink()  # free the space; influxd needs a restart to recover
        server.stop()
        server.start(timeout=60)
        assert_every_reading_stored(fault_influx, campus, 0.5, 120)
    finally:
        stop_ingest(ingest)
        server.stop()
    dead = fault_settings.dead_letter_file
    assert not dead.exists() or "no space" not in dead.read_text()
