"""`campus rules run` against a real Mosquitto: readings in, alerts out on
ops/alerts, state kept across a restart, a bad reload refused."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from campus.settings import Settings
from tests.integration.procs import start_campus, wait_for

DEVICE = "wm-teach-1-f2"
TOPIC = f"campus/teach-1/water/{DEVICE}"


class Alerts:
    """Subscribes to ops/alerts/# and keeps what arrives, with arrival times."""

    def __init__(self, settings: Settings) -> None:
        self.got: list[tuple[str, dict, float]] = []
        self.lock = threading.Lock()
        target = settings.mqtt
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"a-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_message = self._on_message
        self.client.connect(target.host, target.port)
        self.client.subscribe("ops/alerts/#", qos=1)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:  # type: ignore[no-untyped-def]
        with self.lock:
            self.got.append((msg.topic, json.loads(msg.payload), time.monotonic()))

    def of(self, rule: str, state: str) -> list[dict]:
        with self.lock:
            return [d for _, d, _ in self.got if d["rule"] == rule and d["state"] == state]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def publisher(settings: Settings) -> mqtt.Client:
    target = settings.mqtt
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"p-{uuid.uuid4().hex[:8]}")
    pub.connect(target.host, target.port)
    pub.loop_start()
    return pub


def send(pub: mqtt.Client, ts_ms: int, flow: float) -> float:
    body = {"ts": ts_ms, "metrics": {"flow_lpm": flow, "volume_m3": 100.0, "pressure_kpa": 400.0}}
    info = pub.publish(TOPIC, json.dumps(body), qos=1)
    info.wait_for_publish(10)
    return time.monotonic()


def start_engine(settings: Settings, tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    proc = start_campus(settings, "rules", "run", log=tmp_path / f"{name}.log")
    assert wait_for(lambda: "subscribed to" in (tmp_path / f"{name}.log").read_text(), 30), (
        tmp_path / f"{name}.log"
    ).read_text()
    time.sleep(0.3)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0


def test_burst_fires_survives_restart_resolves_and_bad_reload_is_refused(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(
        update={
            "rules_group": f"rules-{settings.ingest_group}",
            "rules_client_id": f"r-{uuid.uuid4().hex[:6]}",
        }
    )
    alerts = Alerts(settings)
    pub = publisher(settings)
    engine = start_engine(settings, tmp_path, "engine1")
    try:
        now = int(time.time() * 1000) - 30 * 60_000
        # water-burst: above 250 L/min for 3 minutes of event time.
        for k in range(5):
            send(pub, now + k * 60_000, 420.0)
        assert wait_for(lambda: alerts.of("water-burst", "firing"), 15), alerts.got
        (fired,) = alerts.of("water-burst", "firing")
        topic = next(t for t, d, _ in alerts.got if d is fired)
        assert topic == "ops/alerts/P1/teach-1"
        assert fired["device"] == DEVICE and fired["trade"] == "plumbing"
        assert fired["value"] == 420.0 and "420 L/min" in fired["title"]
        assert fired["since"].startswith(time.strftime("%Y-%m-%d", time.gmtime(now / 1000)))
        log_lines = (settings.var_dir / "alerts.jsonl").read_text().splitlines()
        assert any(json.loads(x)["rule"] == "water-burst" for x in log_lines)

        # A restart keeps the firing alert: more high readings announce nothing new.
        stop(engine)
        engine = start_engine(settings, tmp_path, "engine2")
        log2 = (tmp_path / "engine2.log").read_text()
        # (retained offline statuses other tests left on this broker may add pending ones)
        assert re.search(r"restored 1 firing alerts", log2), log2
        for k in range(5, 8):
            send(pub, now + k * 60_000, 430.0)
        time.sleep(1.5)
        assert len(alerts.of("water-burst", "firing")) == 1

        # A bad rules file is refused on reload; the running rules go on.
        rules = tmp_path / "rules.yaml"
        rules.write_text((Path("config/rules.yaml")).read_text() + "\n  - {id: broken\n")
        # the engine reads CAMPUS_CONFIG_DIR/rules.yaml: point a copy at the bad file
        stop(engine)
        cfg = tmp_path / "config"
        cfg.mkdir()
        for name in ("campus.yaml", "calendar.yaml"):
            (cfg / name).write_text((Path("config") / name).read_text())
        (cfg / "rules.yaml").write_text((Path("config") / "rules.yaml").read_text())
        settings = settings.model_copy(update={"config_dir": cfg})
        engine = start_engine(settings, tmp_path, "engine3")
        (cfg / "rules.yaml").write_text(rules.read_text())
        engine.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "rules not reloaded" in (tmp_path / "engine3.log").read_text(), 10)

        # Clear for 10 minutes of event time: resolved, once.
        for k in range(8, 21):
            send(pub, now + k * 60_000, 20.0)
        assert wait_for(lambda: alerts.of("water-burst", "resolved"), 15), alerts.got
        assert len(alerts.of("water-burst", "resolved")) == 1
        assert len(alerts.of("water-burst", "firing")) == 1

        # Out-of-order and duplicate readings change nothing.
        send(pub, now + 2 * 60_000, 900.0)
        send(pub, now + 20 * 60_000, 900.0)
        time.sleep(1.5)
        assert len(alerts.of("water-burst", "firing")) == 1
    finally:
        stop(engine)
        pub.loop_stop()
        alerts.close()
