"""`campus tickets serve` on the real broker and a real SQLite store: alerts
become one ticket per fault, announced on ops/tickets and in InfluxDB's
tickets measurement, clearing is recorded,
bad documents are set aside, and alerts published while the service is down
are not lost."""

from __future__ import annotations

import json
import signal
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from campus.errors import SinkError
from campus.influx import InfluxClient
from campus.settings import Settings
from campus.stack import Mosquitto
from tickets.db import open_store
from tickets.service import Tickets

from .procs import start_campus, wait_for

T_MS = 1_790_000_000_000


def alert_doc(key: str, state: str = "firing", severity: str = "P1", ts_ms: int = T_MS) -> bytes:
    rule, device = key.split(":")
    return json.dumps(
        {
            "state": state,
            "rule": rule,
            "device": device,
            "building": "dorm-1",
            "kind": "water",
            "metric": "flow_m3h",
            "value": 0.4,
            "severity": severity,
            "trade": "plumbing",
            "ts_ms": ts_ms,
            "since_ms": ts_ms,
            "title": "夜间用水异常",
            "text": "flow 0.4 m3/h at 03:00",
            "runbook": "",
            "dedup_key": key,
        }
    ).encode()


def publish(broker: Mosquitto, messages: list[tuple[str, bytes]]) -> None:
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    for info in [pub.publish(t, p, qos=1) for t, p in messages]:
        info.wait_for_publish(30)
    pub.disconnect()
    pub.loop_stop()


@pytest.mark.integration
def test_alerts_become_tickets_and_wait_while_the_service_is_down(
    settings: Settings, broker: Mosquitto, influx: InfluxClient, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'tickets.db'}"
    cfg = settings.model_copy(
        update={"db_url": url, "tickets_client_id": f"tickets-{uuid.uuid4().hex[:8]}"}
    )
    notices: list[dict] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}")
    sub.on_message = lambda c, u, m: notices.append({"topic": m.topic, **json.loads(m.payload)})
    sub.connect(broker.host, broker.port)
    sub.subscribe("ops/tickets/#", qos=1)
    sub.loop_start()
    log = tmp_path / "serve.log"
    proc = start_campus(cfg, "tickets", "serve", log=log)
    try:
        assert wait_for(lambda: "subscribed" in log.read_text(), 30), log.read_text()
        publish(
            broker,
            [
                ("ops/alerts/P2/dorm-1", alert_doc("leak:wm-1", severity="P2")),
                ("ops/alerts/P1/dorm-1", alert_doc("leak:wm-1", ts_ms=T_MS + 60_000)),
                ("ops/alerts/P1/dorm-1", b"{not json"),
                ("ops/alerts/P1/dorm-1", alert_doc("leak:wm-1", "resolved", ts_ms=T_MS + 120_000)),
            ],
        )
        tickets = Tickets(open_store(url))
        assert wait_for(lambda: tickets.list() and not tickets.list()[0].alert_firing, 30)
        (t,) = tickets.list()
        assert (t.count, t.severity, t.dedup_key) == (2, "P1", "leak:wm-1")
        assert t.clear_since is not None and t.clear_since.timestamp() * 1000 == T_MS + 120_000
        # the outbox announced it on the broadcast channel of config/notify.yaml
        assert wait_for(lambda: any(n["event"] == "opened" for n in notices), 30), notices
        opened = next(n for n in notices if n["event"] == "opened")
        # a notice tells of the ticket as it is when sent: P1 by then
        assert (opened["topic"], opened["ticket_id"]) == ("ops/tickets/P1/dorm-1", t.id)

        # ... and wrote it to InfluxDB's tickets measurement, for dashboard annotations
        def points() -> list[dict]:
            try:
                series = influx.query('SELECT * FROM "tickets"')
            except SinkError:  # no database until the first point
                return []
            return [
                dict(zip(x["columns"], row, strict=True)) for x in series for row in x["values"]
            ]

        assert wait_for(lambda: any(p["event"] == "opened" for p in points()), 30), points()
        first = next(p for p in points() if p["event"] == "opened")
        assert (first["ticket"], first["building"], first["state"]) == (str(t.id), "dorm-1", "open")
        rejected = [json.loads(x) for x in (cfg.var_dir / "tickets-rejected.jsonl").open()]
        assert [r["reason"].split(":")[0] for r in rejected] == ["not JSON"]

        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        # published while the service is away: its session keeps them
        publish(broker, [("ops/alerts/P3/dorm-2", alert_doc("smoke:sd-2", severity="P3"))])
        proc = start_campus(cfg, "tickets", "serve", log=tmp_path / "serve2.log")
        assert wait_for(lambda: len(tickets.list()) == 2, 30)
        assert tickets.list()[0].dedup_key == "smoke:sd-2"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        sub.loop_stop()
        sub.disconnect()
