"""The ingester's MQTT client against a real Mosquitto: what it receives, what
it acknowledges, and that an oversized payload is never held whole."""

from __future__ import annotations

import threading
import time
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from campus.stack import Mosquitto
from ingest.mqttclient import IngestClient

LIMIT = 100_000


class Recorder:
    """Collects what the receiver is given, and the largest packet buffer seen."""

    def __init__(self) -> None:
        self.got: list[tuple[str, bytes, int, int, int]] = []
        self.event = threading.Event()
        self.want = 0

    def __call__(self, topic: str, payload: bytes, mid: int, qos: int, dropped: int) -> None:
        self.got.append((topic, payload, mid, qos, dropped))
        if len(self.got) >= self.want:
            self.event.set()


class MeasuredClient(IngestClient):
    """Records the largest packet buffer it ever held."""

    largest = 0

    def _sock_recv(self, bufsize: int) -> bytes:
        data = super()._sock_recv(bufsize)
        held = len(self._in_packet["packet"]) + len(data)
        self.largest = max(self.largest, held)
        return data


def connect(broker: Mosquitto, recorder: Recorder, client_id: str) -> MeasuredClient:
    client = MeasuredClient(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=True,
        receiver=recorder,
        max_publish_bytes=LIMIT,
    )
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 600
    props.ReceiveMaximum = 10_000
    client.connect(broker.host, broker.port, clean_start=False, properties=props)
    client.loop_start()
    return client


def publish(broker: Mosquitto, messages: list[tuple[str, bytes]]) -> None:
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    infos = [pub.publish(t, p, qos=1) for t, p in messages]
    for info in infos:
        info.wait_for_publish(30)
    pub.disconnect()
    pub.loop_stop()


def test_messages_in_order_oversized_dropped_unread_and_acks_delivered(broker: Mosquitto) -> None:
    base = f"campus/t{uuid.uuid4().hex[:6]}/power"
    big = b"x" * 6_000_000  # under the broker's 8 MiB limit, 60 times ours
    messages = [(f"{base}/m{i}", f'{{"i": {i}}}'.encode()) for i in range(3000)]
    messages.insert(1500, (f"{base}/big", big))
    recorder = Recorder()
    recorder.want = len(messages)
    cid = f"c-{uuid.uuid4().hex[:8]}"
    client = connect(broker, recorder, cid)
    client.subscribe(f"{base}/#", qos=1)
    time.sleep(0.5)
    publish(broker, messages)
    assert recorder.event.wait(30), f"received {len(recorder.got)} of {len(messages)}"

    topics = [g[0] for g in recorder.got]
    assert topics == [t for t, _ in messages]  # every one, in order, none twice
    small = [g for g in recorder.got if g[0] != f"{base}/big"]
    assert [g[1] for g in small] == [p for t, p in messages if t != f"{base}/big"]
    assert all(g[3] == 1 and g[4] == 0 and g[2] > 0 for g in small)
    (dropped,) = [g for g in recorder.got if g[0] == f"{base}/big"]
    assert dropped[1] == b"" and dropped[4] > len(big)  # reported with its size...
    assert client.largest < 4_096  # ...its head kept and the rest skipped unread, never held

    # Acknowledge all in one write each batch; the broker must not send them again.
    client.ack_many([g[2] for g in recorder.got[:2000]])
    client.ack_many([g[2] for g in recorder.got[2000:]])
    time.sleep(0.5)
    client.disconnect()
    client.loop_stop()
    again = Recorder()
    again.want = 1
    client = connect(broker, again, cid)
    try:
        assert not again.event.wait(2), f"redelivered after acknowledgement: {again.got[:3]}"
    finally:
        client.disconnect()
        client.loop_stop()


def test_unacknowledged_messages_come_back(broker: Mosquitto) -> None:
    base = f"campus/t{uuid.uuid4().hex[:6]}/water"
    recorder = Recorder()
    recorder.want = 10
    cid = f"c-{uuid.uuid4().hex[:8]}"
    client = connect(broker, recorder, cid)
    client.subscribe(f"{base}/#", qos=1)
    time.sleep(0.5)
    publish(broker, [(f"{base}/w{i}", b"{}") for i in range(10)])
    assert recorder.event.wait(10)
    client.ack_many([g[2] for g in recorder.got[:4]])  # six left unacknowledged
    time.sleep(0.5)
    client.disconnect()
    client.loop_stop()
    again = Recorder()
    again.want = 6
    client = connect(broker, again, cid)
    try:
        assert again.event.wait(10)
        assert [g[0] for g in again.got] == [f"{base}/w{i}" for i in range(4, 10)]
    finally:
        client.disconnect()
        client.loop_stop()
