"""Simulated devices hold a retained ``online`` status and leave ``offline`` as
their last will: killed, the broker announces them offline; stopped cleanly,
they say so themselves. The ingester records both in ``device_status``."""

from __future__ import annotations

import signal
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from campus.influx import rows

from .procs import start_campus, wait_for

PATTERN = "dorm-1-r1*"  # the twelve rooms on the first floor of Dormitory 1


def _retained_status(broker, n_expected: int) -> dict[str, str]:
    """Subscribe afresh and collect the retained statuses (device -> payload)."""
    seen: dict[str, str] = {}
    done = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"status-probe-{time.monotonic_ns()}")

    def on_message(client, userdata, msg):
        seen[msg.topic.split("/")[3]] = msg.payload.decode()
        if len(seen) >= n_expected:
            done.set()

    c.on_message = on_message
    c.connect(broker.host, broker.port)
    c.subscribe("campus/dorm-1/dorm/+/status", qos=1)
    c.loop_start()
    done.wait(5)
    c.disconnect()
    c.loop_stop()
    return seen


def _simulate(settings, log):
    """The first floor of Dormitory 1, live, with a status connection per room."""
    return start_campus(
        settings, "simulate", "--devices", PATTERN, "--client-id", "st-sim", log=log
    )


@pytest.mark.integration
def test_status_online_then_last_will_then_clean_stop(settings, influx, broker, campus, tmp_path):
    rooms = sorted(d.id for d in campus if d.building == "dorm-1" and d.id.startswith("dorm-1-r1"))
    assert len(rooms) == 12
    ingest = start_campus(settings, "ingest", log=tmp_path / "ingest.log")
    try:
        assert wait_for(lambda: "subscribing" in (tmp_path / "ingest.log").read_text(), 30)
        sim = _simulate(settings, tmp_path / "sim1.log")
        assert wait_for(
            lambda: (
                set(_retained_status(broker, 12).values()) == {"online"}
                and len(_retained_status(broker, 12)) == 12
            ),
            30,
        )
        sim.send_signal(signal.SIGKILL)  # no clean goodbye: the broker sends the wills
        sim.wait(10)
        assert wait_for(lambda: _retained_status(broker, 12) == dict.fromkeys(rooms, "offline"), 15)

        sim = _simulate(settings, tmp_path / "sim2.log")
        assert wait_for(lambda: _retained_status(broker, 12) == dict.fromkeys(rooms, "online"), 30)
        sim.send_signal(signal.SIGINT)  # clean stop: devices say offline themselves
        assert sim.wait(30) == 0, (tmp_path / "sim2.log").read_text()
        assert _retained_status(broker, 12) == dict.fromkeys(rooms, "offline")

        def history():
            return rows(influx.query("SELECT status, device FROM device_status ORDER BY time ASC"))

        assert wait_for(lambda: len(history()) >= 4 * 12, 20), len(history())
    finally:
        ingest.send_signal(signal.SIGINT)
        ingest.wait(60)
    per_device: dict[str, list[str]] = {}
    for r in history():
        per_device.setdefault(r["device"], []).append(r["status"])
    assert set(per_device) == set(rooms)
    for states in per_device.values():
        assert states == ["online", "offline", "online", "offline"]
