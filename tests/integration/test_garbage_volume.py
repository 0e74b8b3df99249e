"""A stream that is half garbage loses none of its good half, and every piece
of garbage is dead-lettered with a reason."""

from __future__ import annotations

import json
import signal

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from .faults import start_ingest
from .procs import wait_for

T0_MS = 1_790_000_000_000


@pytest.mark.integration
def test_half_garbage_stream(fault_settings, fault_influx, own_broker, campus, tmp_path):
    meters = [d for d in campus if d.kind == "power"][:50]
    garbage = [
        ("campus/teach-1/power/pm-teach-1-f1", b'{"ts": 1, "metrics": {'),  # malformed JSON
        ("campus/teach-1/power/pm-teach-1-f1", b"x" * 300_000),  # oversized
        ("campus/teach-1/nonsense/dev", b'{"metrics": {"a": 1}}'),  # unknown kind
        ("campus/only/three", b'{"metrics": {"a": 1}}'),  # wrong topic shape
    ]
    ingest, _ = start_ingest(fault_settings, tmp_path)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="garbage-pub")
    pub.max_inflight_messages_set(500)
    pub.connect(own_broker.host, own_broker.port)
    pub.loop_start()
    good = bad = 0
    try:
        infos = []
        for k in range(40):
            for d in meters:
                payload = {
                    "ts": T0_MS + k * 60_000,
                    "seq": k,
                    "metrics": {"power_kw": 10.0 + k, "voltage_v": 380.0},
                }
                infos.append(pub.publish(d.topic, json.dumps(payload), qos=1))
                good += 1
                topic, junk = garbage[bad % len(garbage)]
                infos.append(pub.publish(topic, junk, qos=1))
                bad += 1
        for info in infos:
            info.wait_for_publish(120)
        assert wait_for(lambda: fault_influx.count("power") == good, 120), fault_influx.count(
            "power"
        )
        dead = fault_settings.dead_letter_file
        assert wait_for(lambda: dead.exists() and len(dead.read_text().splitlines()) == bad, 30)
    finally:
        pub.disconnect()
        pub.loop_stop()
        ingest.send_signal(signal.SIGINT)
        assert ingest.wait(60) == 0
    records = [json.loads(x) for x in fault_settings.dead_letter_file.read_text().splitlines()]
    reasons = {r["reason"].split(":")[0] for r in records}
    assert reasons == {
        "malformed JSON",
        "payload too large",
        "unknown kind 'nonsense' (known",
        "topic must be campus/{building}/{kind}/{device} or .../status",
    }, reasons
    assert max(len(r["payload"]) for r in records) <= 1024
