"""The live stream (``/api/stream``) of a real ``campus api`` on the real broker: a ticket
raised through the API and announced by the real outbox dispatcher on
``ops/tickets/...`` reaches the open streams within seconds, a technician's
stream carries only their scope, alerts and the campus state arrive too, and
the server stops promptly (SIGTERM) with streams still open."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from api.accounts import add_user, create_token
from campus.settings import Settings
from campus.stack import free_port
from tickets.cli import open_tickets
from tickets.models import Role
from tickets.outbox import Dispatcher, load_channels

from .procs import ROOT, wait_for

pytestmark = pytest.mark.integration

USERS = {
    "eng": (Role.engineer, None),
    "wang": (Role.technician, "tech-wang-jg"),  # plumbing in the teaching area
    "liu": (Role.technician, "tech-liu-dm"),  # plumbing in the dormitories
}


class Events:
    """The events of one open stream, read by a thread of its own."""

    def __init__(self, client: httpx.Client, token: str) -> None:
        self.events: list[tuple[str, Any]] = []
        self.retry: int | None = None
        self._cond = threading.Condition()
        self._cm = client.stream("GET", "/api/stream", headers={"Authorization": f"Bearer {token}"})
        self.response = self._cm.__enter__()
        assert self.response.status_code == 200, self.response.read()
        assert self.response.headers["content-type"].startswith("text/event-stream")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        name = "message"
        try:
            for line in self.response.iter_lines():
                if line.startswith("retry:"):
                    self.retry = int(line[6:])
                elif line.startswith("event:"):
                    name = line[6:].strip()
                elif line.startswith("data:"):
                    with self._cond:
                        self.events.append((name, json.loads(line[5:])))
                        self._cond.notify_all()
                    name = "message"
        except httpx.HTTPError:
            pass  # the server went away

    def wait_for(self, pred: Callable[[str, Any], bool], timeout: float = 5.0) -> tuple[str, Any]:
        """The first event matching ``pred``, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self.events:
                    if pred(*ev):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such event within {timeout} s: {self.events}")
                self._cond.wait(left)

    def tickets(self) -> list[int]:
        with self._cond:
            return [d["ticket_id"] for n, d in self.events if n == "ticket"]

    def close(self) -> None:
        self._cm.__exit__(None, None, None)


class Served:
    """``campus api`` in a process of its own, with a token per account and the
    ticket service's outbox dispatcher (its MQTT channel) in this one."""

    def __init__(self, settings: Settings, tmp_path: Path) -> None:
        notify = tmp_path / "notify.yaml"
        notify.write_text("channels:\n  ops-mqtt: {type: mqtt}\nbroadcast: [ops-mqtt]\n")
        self.tickets = open_tickets(settings)
        channels = load_channels(notify, settings=settings)
        for user, (r, tech) in USERS.items():
            add_user(self.tickets.store, user, "", r, technician=tech)
        self.tokens = {u: create_token(self.tickets.store, u) for u in USERS}
        self.dispatcher = Dispatcher(self.tickets.store, channels, self.tickets.clock)
        port = free_port()
        self.log = tmp_path / "api.log"
        env = {
            **os.environ,
            "CAMPUS_MQTT_URL": settings.mqtt_url,
            "CAMPUS_INFLUX_URL": settings.influx_url,
            "CAMPUS_INFLUX_DB": settings.influx_db,
            "CAMPUS_DB_URL": settings.db_url,
            "CAMPUS_VAR_DIR": str(settings.var_dir),
            "CAMPUS_CONFIG_DIR": str(settings.config_dir),
        }
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "campus.cli", "api", "--port", str(port)],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

        def up() -> bool:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                return self.http.get("/healthz").status_code == 200
            except httpx.TransportError:
                return False

        assert wait_for(up, 30, 0.1), self.log.read_text()

    def metric(self, name: str) -> float:
        text = self.http.get("/metrics").text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name:
                    return float(s.value)
        raise KeyError(name)

    def stop(self) -> float:
        """Stop the API as a service manager does (SIGTERM); how long it took."""
        t = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(15)
        return time.monotonic() - t

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.dispatcher.close()
        self.http.close()
        self.tickets.store.close()


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Iterator[Served]:
    s = Served(settings, tmp_path)
    yield s
    s.close()


def _publish_alert(settings: Settings, building: str, trade: str) -> str:
    """An alert document as the rules engine publishes it; returns its rule id."""
    rule = f"test-{uuid.uuid4().hex[:6]}"
    doc = {
        "rule": rule,
        "device": f"wm-{building}",
        "building": building,
        "state": "firing",
        "severity": "P2",
        "trade": trade,
        "title": "Water leak",
        "ts_ms": int(time.time() * 1000),
    }
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-pub-{rule}")
    client.connect(settings.mqtt.host, settings.mqtt.port)
    client.loop_start()
    try:
        info = client.publish(f"ops/alerts/P2/{building}", json.dumps(doc), qos=1)
        info.wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()
    return rule


def test_ticket_changes_reach_the_streams_in_each_ones_scope(
    served: Served, settings: Settings
) -> None:
    deadline = time.monotonic() + 10
    while served.metric("campus_api_stream_subscribed") != 1:
        assert time.monotonic() < deadline, "the API never subscribed to ops/#"
        time.sleep(0.05)
    assert served.http.get("/api/stream").status_code == 401

    streams = {who: Events(served.http, served.tokens[who]) for who in USERS}
    try:
        for ev in streams.values():  # the campus state comes first, straight away
            _, campus = ev.wait_for(lambda n, d: n == "campus")
            assert campus["buildings"]["teach-1"]["state"] in ("ok", "warning", "fault", "offline")
            assert ev.retry is not None and ev.retry > 0
        assert served.metric("campus_api_stream_clients") == 3

        eng = {"Authorization": f"Bearer {served.tokens['eng']}"}
        body = {"building": "teach-1", "trade": "plumbing", "title": "Leak in room 101"}
        r = served.http.post("/api/tickets", json=body, headers=eng)
        assert r.status_code == 201, r.text
        teach = r.json()["id"]
        assert served.dispatcher.dispatch() >= 1  # the real outbox, over the real broker
        t = time.monotonic()
        for who in ("eng", "wang"):
            _, doc = streams[who].wait_for(lambda n, d: n == "ticket" and d["ticket_id"] == teach)
            assert doc["event"] == "opened" and doc["data"]["building"] == "teach-1"
        assert time.monotonic() - t < 5

        body = {"building": "dorm-1", "trade": "plumbing", "title": "Leak in room 201"}
        dorm = served.http.post("/api/tickets", json=body, headers=eng).json()["id"]
        assert served.dispatcher.dispatch() >= 1
        streams["liu"].wait_for(lambda n, d: n == "ticket" and d["ticket_id"] == dorm)
        streams["eng"].wait_for(lambda n, d: n == "ticket" and d["ticket_id"] == dorm)
        # one publisher's messages arrive in order: had the teaching-area ticket
        # been sent to the dormitories' plumber, he would have it by now
        assert streams["liu"].tickets() == [dorm]
        rule = _publish_alert(settings, "dorm-1", "plumbing")
        streams["liu"].wait_for(lambda n, d: n == "alert" and d["rule"] == rule)
        streams["eng"].wait_for(lambda n, d: n == "alert" and d["rule"] == rule)
        assert streams["wang"].tickets() == [teach]
        assert not any(n == "alert" for n, _ in streams["wang"].events)

        took = served.stop()  # with three streams still open
        assert took < 3, took
        log = served.log.read_text()
        print(log)
        assert "Application shutdown complete" in log, log  # the app's stop ran
        assert "Traceback" not in log and "Waiting for connections" not in log, log
        # uvicorn exits by the signal it was sent, once it has shut down cleanly
        assert served.proc.returncode in (0, -signal.SIGTERM)
    finally:
        for ev in streams.values():
            ev.close()
