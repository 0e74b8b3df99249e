"""`campus up` on a machine where nothing answers: it starts Mosquitto and
influxd with data under var/, runs ingest, the rules engine, the ticket service
and the simulated campus, lands readings in InfluxDB, turns an injected fault
into an alert on ops/alerts and a ticket that a technician works and that
closes itself once the readings stay normal, announced on every configured
channel; stops everything on Ctrl-C, and finds its data again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from campus.influx import InfluxClient
from campus.stack import tcp_open

from .procs import ROOT, fresh_stack_env, wait_for


def _up(
    env: dict[str, str], log: Path, *extra: str, backfill: str = "10m"
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "campus.cli", "up", "--backfill", backfill, *extra],
        env=env,
        cwd=ROOT,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def _count(client: InfluxClient) -> int:
    try:
        return sum(client.count(k) for k in ("power", "water", "hvac", "dorm"))
    except Exception:
        return 0


@pytest.mark.integration
def _answers(client: httpx.Client, path: str) -> bool:
    try:
        return client.get(path).status_code == 200
    except httpx.HTTPError:
        return False


def test_up_starts_runs_stops_and_restarts_with_its_data(tmp_path):
    env, mqtt_port, influx_port = fresh_stack_env(tmp_path)
    env["CAMPUS_TICKETS_VERIFY_CLEAR_S"] = "1"
    client = InfluxClient(f"http://127.0.0.1:{influx_port}", "campus")
    log1 = tmp_path / "up1.log"
    # A burst pipe 20 minutes ago for 5 minutes, played by the backfill: the rules
    # engine must page, and (after its 10 minutes of clear readings) resolve.
    proc = _up(env, log1, "--fault", "wm-teach-1-f2:burst_pipe:at=-20m:for=5m", backfill="25m")
    alerts: list[dict] = []
    notices: list[dict] = []
    try:
        assert wait_for(lambda: tcp_open("127.0.0.1", mqtt_port), 30), log1.read_text()
        sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="test-up-alerts")
        sub.on_message = lambda c, u, m: (
            notices if m.topic.startswith("ops/tickets/") else alerts
        ).append(json.loads(m.payload))
        sub.connect("127.0.0.1", mqtt_port)
        sub.subscribe([("ops/alerts/#", 1), ("ops/tickets/#", 1)])
        sub.loop_start()
        burst = lambda: [a for a in alerts if a["rule"] == "water-burst"]  # noqa: E731
        assert wait_for(burst, 90), (alerts, log1.read_text())
        assert burst()[0]["device"] == "wm-teach-1-f2" and burst()[0]["state"] == "firing"
        logged = (tmp_path / "var" / "alerts.jsonl").read_text()
        assert '"rule":"water-burst"' in logged

        # ... and the alert is a ticket (the store under var/, as campus up's children use)
        def listed() -> str:
            cmd = [sys.executable, "-m", "campus.cli", "tickets", "list", "--json"]
            done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
            return done.stdout

        def burst_ticket() -> list[dict]:
            key = "water-burst:wm-teach-1-f2"
            return [t for t in json.loads(listed() or "[]") if t["dedup_key"] == key]

        assert wait_for(burst_ticket, 30), listed()
        ticket = burst_ticket()[0]
        assert ticket["source"] == "rule" and ticket["count"] == 1
        # The supervisor gives it to a technician on the command line; the
        # technician works it through the API that campus up serves. The fault
        # is over, so once the readings have stayed normal (1 s here) the
        # ticket closes itself.
        tid = str(ticket["id"])

        def campus(*args: str) -> str:
            cmd = [sys.executable, "-m", "campus.cli", *args]
            done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
            assert done.returncode == 0, done.stdout + done.stderr
            return done.stdout

        campus("tickets", "ack", tid, "--by", "supervisor")
        campus("tickets", "assign", tid, "--technician", "tech-wang-jg", "--by", "supervisor")
        campus("users", "add", "wang", "--role", "technician", "--technician", "tech-wang-jg")
        token = campus("tokens", "create", "wang").strip()
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{env['CAMPUS_API_PORT']}",
            headers={"Authorization": f"Bearer {token}"},
        )
        # the API starts beside four other services on two cores: wait until it listens
        assert wait_for(lambda: _answers(api, "/healthz"), 60), log1.read_text()
        assert api.get("/readyz").json() == {
            "ready": True,
            "checks": {"database": "ok", "influxdb": "ok", "broker": "ok"},
        }

        # the office sees the building in fault; occupants see a notice without names
        def teach_1() -> str:
            return str(api.get("/api/buildings/teach-1").json().get("state"))

        assert wait_for(lambda: teach_1() == "fault", 30), teach_1()
        board = httpx.get(f"http://127.0.0.1:{env['CAMPUS_API_PORT']}/?lang=en")
        assert board.status_code == 200 and "Teaching Building 1" in board.text
        assert "tech-wang-jg" not in board.text and "wm-teach-1-f2" not in board.text
        public = api.get("/api/notices?lang=en").json()["notices"]
        assert [n["building"] for n in public] == ["teach-1"], public
        assert api.post(f"/api/tickets/{tid}/start").status_code == 200
        r = api.post(f"/api/tickets/{tid}/resolve", json={"note": "valve replaced"})
        assert r.status_code == 200 and r.json()["state"] == "resolved"
        api.close()
        assert wait_for(lambda: burst_ticket() == [], 60), listed()  # closed: not listed

        # every configured channel heard of it: ops/tickets and the tickets measurement
        def events() -> set[str]:
            return {n["event"] for n in notices if n["ticket_id"] == ticket["id"]}

        wanted = {"opened", "acknowledged", "resolved", "closed"}
        assert wait_for(lambda: wanted <= events(), 30), events()
        annotations = client.query(f"SELECT * FROM tickets WHERE \"ticket\" = '{tid}'")
        assert annotations and len(annotations[0]["values"]) >= 4
        sub.loop_stop()
        sub.disconnect()
        assert wait_for(lambda: _count(client) > 3000, 90), log1.read_text()
        text = log1.read_text()
        assert "mosquitto: starting on 127.0.0.1" in text
        assert "influxd: starting on 127.0.0.1" in text
        assert f"InfluxDB      http://127.0.0.1:{influx_port}" in text
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(90) == 0, log1.read_text()
    assert not tcp_open("127.0.0.1", mqtt_port) and not tcp_open("127.0.0.1", influx_port)
    assert (tmp_path / "var" / "influxdb" / "data").is_dir()
    assert any((tmp_path / "var" / "mosquitto" / "data").iterdir())

    log2 = tmp_path / "up2.log"
    proc = _up(env, log2)
    try:
        # The first run's readings are back, and the live campus keeps adding to them.
        assert wait_for(lambda: _count(client) > 0, 60), log2.read_text()
        first = _count(client)
        assert first > 3000
        assert wait_for(lambda: "InfluxDB holds" in log2.read_text(), 60), log2.read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(90) == 0, log2.read_text()
        client.close()
    assert not tcp_open("127.0.0.1", influx_port)
