"""Bad input, mixed with good readings, through the real broker, ingester and influxd.

Every bad message or metric is rejected with a reason in the dead-letter file
(or, where the broker itself refuses it, never stored), and every good reading
sent alongside is stored exactly.
"""

from __future__ import annotations

import json
import re
import signal
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from campus.influx import rows
from campus.influxql import quote_literal

from .procs import run_campus, start_campus, wait_for

NOW_S = int(time.time()) - 120
GOOD_POWER = {
    "power_kw": 12.5,
    "energy_kwh": 1000.25,
    "voltage_v": 380.0,
    "current_a": 20.0,
    "power_factor": 0.9,
}


def _publisher(url_host: str, port: int, cid: str) -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=cid)
    c.connect(url_host, port)
    c.loop_start()
    return c


def _send(c: mqtt.Client, topic: str, payload: bytes | str) -> None:
    info = c.publish(topic, payload, qos=1)
    info.wait_for_publish(10)
    assert info.is_published(), topic


def _good(i: int) -> bytes:
    return json.dumps({"ts": NOW_S + 2 * i, "seq": i, "metrics": GOOD_POWER}).encode()


# (topic, payload, reason fragment expected in the dead-letter file)
BAD: list[tuple[str, bytes | str, str]] = [
    ("campus/teach-1/power/pm-teach-1-f1", b'{"ts": 1, "metrics": {', "malformed JSON"),
    (
        "campus/teach-1/power/pm-teach-1-f1",
        b'{"metrics": {"power_kw": "lots"}}',
        "metric 'power_kw' is not a number (str)",
    ),
    (
        "campus/teach-1/power/pm-teach-1-f1",
        b'{"metrics": {"power_kw": NaN}}',
        "non-finite number NaN",
    ),
    (
        "campus/teach-1/power/pm-teach-1-f1",
        b'{"metrics": {"power_kw": Infinity}}',
        "non-finite number Infinity",
    ),
    (
        "campus/teach-1/power/pm-teach-1-f1",
        b'{"metrics": {"power_kw": -Infinity}}',
        "non-finite number -Infinity",
    ),
    ("campus/teach-1/power", b'{"metrics": {"power_kw": 1}}', "topic must be"),
    (
        "campus/teach-1/power/pm-teach-1-f1/extra/level",
        b'{"metrics": {"power_kw": 1}}',
        "topic must be",
    ),
    (
        "campus/teach-1/power/pm-teach-1-f1",
        json.dumps({"ts": int(time.time()) + 3600, "metrics": {"power_kw": 1.0}}),
        "s in the future",
    ),
    (
        "campus/teach-1/power/pm-teach-1-f1",
        b'{"metrics": {"power_kw": 1.0}, "pad": "' + b"x" * (1024 * 1024) + b'"}',
        "payload too large",
    ),
    ("campus/teach-1/power/pm bad id", b'{"metrics": {"power_kw": 1}}', "device id 'pm bad id'"),
    ("campus/teach-1/power/pm,x=1", b'{"metrics": {"power_kw": 1}}', "device id 'pm,x=1'"),
    ('campus/teach-1/power/pm"q', b'{"metrics": {"power_kw": 1}}', "device id 'pm\"q'"),
    ("campus/teach-1/power/pm=eq", b'{"metrics": {"power_kw": 1}}', "device id 'pm=eq'"),
    (
        "campus/teach-1/power/pm-teach-1-f1",
        json.dumps(
            {
                "ts": NOW_S - 1,
                "metrics": {
                    "power kw": 1.0,
                    "a,b": 2.0,
                    "c=d": 3.0,
                    'q"': 4.0,
                    "line\nbreak": 5.0,
                    "power_kw": 7.5,
                },
            }
        ),
        "metric name 'line\\nbreak' is not allowed",
    ),
    (
        "campus/dorm-1/dorm/dorm-1-r101",
        json.dumps({"ts": NOW_S, "metrics": {"temp_c": 900}}),
        "outside valid range",
    ),
]


@pytest.mark.integration
def test_bad_input_rejected_and_good_stored(settings, influx, broker, tmp_path):
    log = tmp_path / "ingest.log"
    ingest = start_campus(settings, "ingest", log=log)
    pub = None
    try:
        assert wait_for(lambda: "subscribing" in log.read_text(), 30), log.read_text()
        pub = _publisher(broker.host, broker.port, "bad-input-test")
        good_sent = 0
        for i, (topic, payload, _) in enumerate(BAD):
            _send(pub, "campus/teach-1/power/pm-teach-1-f1", _good(i))
            good_sent += 1
            _send(pub, topic, payload)
        # The three timestamp forms and a batch with one bad reading among good ones.
        _send(
            pub,
            "campus/dorm-1/dorm/dorm-1-r102",
            json.dumps({"ts": "2026-10-20T08:00:00.250+08:00", "metrics": {"temp_c": 21.5}}),
        )
        _send(
            pub,
            "campus/dorm-1/dorm/dorm-1-r103",
            json.dumps({"ts": 1_792_454_400, "metrics": {"temp_c": 22.5}}),
        )
        _send(
            pub,
            "campus/dorm-1/dorm/dorm-1-r104",
            json.dumps({"ts": 1_792_454_400_500, "metrics": {"temp_c": 23.5}}),
        )
        _send(
            pub,
            "campus/plant/water/wm-plant-f1",
            json.dumps(
                {
                    "readings": [
                        {"ts": NOW_S - 300, "metrics": {"flow_lpm": 10.0}},
                        {"ts": "yesterday", "metrics": {"flow_lpm": 11.0}},
                        {"ts": NOW_S - 240, "metrics": {"flow_lpm": 12.0}},
                    ]
                }
            ),
        )
        # A device the registry does not know: stored, flagged, listed.
        _send(
            pub,
            "campus/lab-2/power/pm-new-lab-2-f9",
            json.dumps({"ts": NOW_S, "metrics": {"power_kw": 3.25}}),
        )
        # The broker itself refuses a newline in a topic: it must never be stored.
        evil = _publisher(broker.host, broker.port, "evil-topic")
        evil.publish("campus/teach-1/power/pm\nbad", b'{"metrics": {"power_kw": 1}}', qos=1)
        time.sleep(0.5)
        evil.loop_stop()

        def stored():
            return influx.count("power", "device = 'pm-teach-1-f1'")

        # good power readings: one per BAD case, plus power_kw=7.5 kept from the bad-names one
        assert wait_for(lambda: stored() == good_sent + 1, 30), stored()
        assert wait_for(lambda: influx.count("water") == 2, 10)
        assert wait_for(lambda: influx.count("dorm") == 3, 10)
        status = run_campus(settings, "ingest", "--status")
        assert status.returncode == 0, status.stderr
        figures = dict(re.findall(r"^  (\S.*?\S)\s{2,}([\d,.]+)$", status.stdout, re.M))
        assert int(figures["messages received"].replace(",", "")) >= 2 * len(BAD)
        assert int(figures["rejected"].replace(",", "")) >= len(BAD)
        assert int(figures["stored directly"].replace(",", "")) >= good_sent
    finally:
        if pub is not None:
            pub.loop_stop()
        ingest.send_signal(signal.SIGINT)
        assert ingest.wait(60) == 0

    dead = [json.loads(line) for line in settings.dead_letter_file.read_text().splitlines()]
    reasons = [d["reason"] for d in dead]
    for _topic, _, fragment in BAD:
        assert any(fragment in r for r in reasons), (fragment, reasons)
    assert any("readings[1]: ts 'yesterday' is not an RFC 3339 time" in r for r in reasons)
    for name in ("power kw", "a,b", "c=d", 'q"'):
        assert any(f"metric name {name!r} is not allowed" in r for r in reasons), name
    big = next(d for d in dead if "payload too large" in d["reason"])
    assert big["truncated"] and len(big["payload"]) <= 1024 and big["bytes"] > 1024 * 1024
    assert all(d["topic"] and d["time"] for d in dead)

    # Exactly the expected measurements and devices exist: nothing was injected.
    measurements = {v[0] for s in influx.query("SHOW MEASUREMENTS") for v in s["values"]}
    assert measurements == {"power", "water", "dorm"}
    devices = {
        v[1] for s in influx.query('SHOW TAG VALUES WITH KEY = "device"') for v in s["values"]
    }
    assert devices == {
        "pm-teach-1-f1",
        "pm-new-lab-2-f9",
        "wm-plant-f1",
        "dorm-1-r102",
        "dorm-1-r103",
        "dorm-1-r104",
    }
    kept = rows(influx.query("SELECT power_kw FROM power WHERE power_kw = 7.5"))
    assert len(kept) == 1 and kept[0]["time"] == (NOW_S - 1) * 1000
    temps = {
        r["device"]: (r["time"], r["temp_c"])
        for r in rows(influx.query("SELECT temp_c, device FROM dorm"))
    }
    assert temps == {
        "dorm-1-r102": (1_792_454_400_250, 21.5),
        "dorm-1-r103": (1_792_454_400_000, 22.5),
        "dorm-1-r104": (1_792_454_400_500, 23.5),
    }
    flows = sorted(r["flow_lpm"] for r in rows(influx.query("SELECT flow_lpm FROM water")))
    assert flows == [10.0, 12.0]

    # The unknown device is flagged in InfluxDB and listed for commissioning.
    flagged = influx.query(
        f"SELECT power_kw FROM power WHERE unregistered = {quote_literal('true')}"
    )
    assert [v[1] for v in flagged[0]["values"]] == [3.25]
    out = run_campus(settings, "devices", "unknown", "--json")
    assert out.returncode == 0, out.stderr
    listed = json.loads(out.stdout)
    assert [(u["device"], u["building"], u["kind"], u["readings"]) for u in listed] == [
        ("pm-new-lab-2-f9", "lab-2", "power", 1)
    ]
