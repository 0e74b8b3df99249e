"""Broker restarts, ingester kills and a full spool disk: nothing is lost, and
what a killed broker loses is reported by the seq gap detector exactly."""

from __future__ import annotations

import re
import signal
import subprocess
import time

import pytest

from .faults import (
    assert_every_reading_stored,
    expected_per_device,
    lost,
    start_ingest,
    stop_ingest,
    stored_per_device,
    stream,
)
from .procs import wait_for


@pytest.mark.integration
def test_broker_restarted_cleanly_mid_stream(
    fault_settings, fault_influx, own_broker, campus, tmp_path
):
    """One ingester subscribed directly: a clean broker restart loses nothing."""
    settings = fault_settings.model_copy(update={"ingest_group": ""})
    ingest, log = start_ingest(settings, tmp_path)
    try:
        run = stream(settings, tmp_path, hours=0.5, rate=600)
        time.sleep(4)
        own_broker.stop()  # SIGTERM: the broker saves its sessions
        time.sleep(2)
        own_broker.start()
        run.wait()
        assert_every_reading_stored(fault_influx, campus, 0.5, 120)
    finally:
        stop_ingest(ingest)
    assert log.read_text().count("session present: True") >= 1


@pytest.mark.integration
def test_broker_restart_with_shared_subscription_loss_is_reported(
    fault_settings, fault_influx, own_broker, campus, tmp_path
):
    """Mosquitto 2.0 forgets shared subscriptions across a restart: what is
    published before the ingester is back is lost at the broker, and the seq
    gap detector reports exactly that much."""
    ingest, log = start_ingest(fault_settings, tmp_path)
    try:
        run = stream(fault_settings, tmp_path, hours=0.5, rate=600)
        time.sleep(4)
        own_broker.stop()
        time.sleep(2)
        own_broker.start()
        run.wait()
        want = expected_per_device(campus, 0.5)
        got = _drained(fault_influx)
    finally:
        stop_ingest(ingest)
    _assert_loss_reported(want, got, log, fault_influx, "clean restart, shared subscription")


def _drained(influx):
    """What InfluxDB holds once points stop arriving."""
    last = -1
    while True:
        time.sleep(3)
        got = stored_per_device(influx)
        if sum(got.values()) == last:
            return got
        last = sum(got.values())


def _assert_loss_reported(want, got, log, influx, what: str) -> None:
    true_loss = lost(want, got)
    text = log.read_text()
    skipped = sum(int(m) for m in re.findall(r"skipped (\d+) readings", text))
    reported = skipped - text.count("seq gap filled")  # net of late arrivals
    series = influx.query('SELECT sum("seq_gap") FROM "device_status"')
    stored_gaps = int(series[0]["values"][0][1]) if series else 0
    print(f"{what}: true loss {true_loss}, reported {reported}, stored {stored_gaps}")
    assert reported == true_loss == stored_gaps


@pytest.mark.integration
def test_ingester_sigkilled_ten_times_during_100k_readings(
    fault_settings, fault_influx, campus, tmp_path
):
    hours = 4  # 4 h of the campus = 99,216 readings
    ingest, _ = start_ingest(fault_settings, tmp_path, "ingest-0")
    run = stream(fault_settings, tmp_path, hours=hours, rate=2500)
    try:
        for i in range(10):
            time.sleep(3)
            ingest.send_signal(signal.SIGKILL)
            ingest.wait(10)
            ingest, _ = start_ingest(fault_settings, tmp_path, f"ingest-{i + 1}")
        published = run.wait(600)
        want = assert_every_reading_stored(fault_influx, campus, hours, 180)
        assert sum(published.values()) == sum(want.values()) >= 99_000
    finally:
        stop_ingest(ingest)


@pytest.mark.integration
def test_spool_disk_full_holds_the_stream_at_the_broker(
    fault_settings, fault_influx, own_influxd, campus, tmp_path
):
    import os

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI and `make test` run as root)")
    spool = tmp_path / "spooldisk"
    spool.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(spool)], check=True)
    settings = fault_settings.model_copy(update={"ingest_spool_dir": spool})
    try:
        ingest, log = start_ingest(settings, tmp_path)
        try:
            own_influxd.stop()
            run = stream(settings, tmp_path, hours=0.5, rate=1500)
            run.wait()
            assert wait_for(lambda: "SPOOL FULL" in log.read_text(), 60), log.read_text()[-2000:]
            own_influxd.start(timeout=60)
            assert_every_reading_stored(fault_influx, campus, 0.5, 180)
        finally:
            stop_ingest(ingest)
    finally:
        subprocess.run(["umount", "-l", str(spool)], check=False)


@pytest.mark.integration
def test_broker_sigkill_loss_is_reported_exactly(
    fault_settings, fault_influx, own_broker, campus, tmp_path
):
    ingest, log = start_ingest(fault_settings, tmp_path)
    try:
        run = stream(fault_settings, tmp_path, hours=1, rate=1500)
        time.sleep(6)
        own_broker.kill(signal.SIGKILL)
        own_broker.proc.wait(10)
        own_broker.start()
        run.wait()
        want = expected_per_device(campus, 1)
        got = _drained(fault_influx)
    finally:
        stop_ingest(ingest)
    _assert_loss_reported(want, got, log, fault_influx, "broker SIGKILL")
