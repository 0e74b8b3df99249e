"""MQTT side of the simulator: a readings publisher and the fleet of device
status connections.

Readings go through one publishing connection, as a building-management
gateway would forward them. Each simulated device also holds its own small
connection whose last will is a retained ``offline`` on its status topic, and
publishes a retained ``online`` when it connects (DESIGN.md section 3). The
fleet's connections are driven by one thread with paho's external-loop API
(``loop_read``/``loop_write``/``loop_misc``), not a thread per device.
"""

from __future__ import annotations

import collections
import csv
import logging
import resource
import selectors
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from campus.errors import CampusError
from campus.registry import Device
from campus.settings import MqttTarget

log = logging.getLogger(__name__)


def read_logins(path: Path) -> dict[str, tuple[str, str]]:
    """``devices.csv`` of ``campus broker config``: device id -> (user, password)."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        return {r["device"]: (r["username"], r["password"]) for r in rows}
    except (OSError, KeyError, csv.Error) as exc:
        raise CampusError(
            f"{path}: not a devices.csv of `campus broker config` "
            f"(columns device, username, password): {exc}"
        ) from None


def _client(target: MqttTarget, client_id: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    target.secure(client)
    return client


class ReadingPublisher:
    """Publishes readings at QoS 1 with a bounded number awaiting acknowledgement."""

    def __init__(
        self, target: MqttTarget, client_id: str, qos: int = 1, max_outstanding: int = 2000
    ) -> None:
        self.qos = qos
        self.max_outstanding = max_outstanding
        self.client = _client(target, client_id)
        self.client.max_inflight_messages_set(500)
        self.client.max_queued_messages_set(0)
        self._outstanding: collections.deque[mqtt.MQTTMessageInfo] = collections.deque()
        self._connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: self._connected.set()
        self.client.on_disconnect = lambda c, u, f, rc, p: self._connected.clear()
        # PUBACKs by message id: MQTTMessageInfo reports a message published while
        # disconnected as failed even after paho resends it, so track acks here.
        self._acked: set[int] = set()
        self._acked_cond = threading.Condition()
        self.client.on_publish = self._on_publish
        self.target = target
        self.published = 0

    def _on_publish(self, c: object, u: object, mid: int, rc: object, p: object) -> None:
        with self._acked_cond:
            self._acked.add(mid)
            self._acked_cond.notify_all()

    def _settle(self, info: mqtt.MQTTMessageInfo, timeout: float) -> bool:
        """Wait until ``info`` is acknowledged, across reconnects; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._acked_cond:
            while info.mid not in self._acked:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._acked_cond.wait(min(remaining, 1.0))
            self._acked.discard(info.mid)
        return True

    def connect(self, timeout: float = 10.0) -> None:
        """Connect and start the network thread; raise if the broker does not answer."""
        try:
            self.client.connect(self.target.host, self.target.port, keepalive=30)
        except OSError as exc:
            raise CampusError(
                f"cannot reach the MQTT broker at {self.target.host}:{self.target.port}: {exc}"
            ) from exc
        self.client.loop_start()
        if not self._connected.wait(timeout):
            raise CampusError("the MQTT broker did not acknowledge the connection")

    def publish_retained(self, topic: str, payload: bytes) -> None:
        """Publish a retained message (a status change) at QoS 1, without waiting."""
        self.client.publish(topic, payload, qos=1, retain=True)

    def publish(self, topic: str, payload: bytes) -> None:
        """Queue one message; waits while too many await their PUBACK.

        A message published while the broker is away stays in paho's queue and
        goes out when the connection is back; nothing is dropped here.
        """
        info = self.client.publish(topic, payload, qos=self.qos)
        self.published += 1
        if self.qos > 0:
            self._outstanding.append(info)
            while len(self._outstanding) > self.max_outstanding:
                if self._settle(self._outstanding[0], 300.0):
                    self._outstanding.popleft()
                else:
                    raise CampusError("the broker acknowledged nothing for 300 s")

    def flush(self, timeout: float = 120.0) -> bool:
        """Wait until every message was acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._outstanding:
            if not self._settle(self._outstanding[0], deadline - time.monotonic()):
                return False
            self._outstanding.popleft()
        return True

    def close(self) -> None:
        """Disconnect cleanly."""
        self.client.disconnect()
        self.client.loop_stop()


class StatusFleet:
    """One connection per device carrying its online/offline status."""

    def __init__(
        self,
        target: MqttTarget,
        devices: Iterable[Device],
        prefix: str = "sim",
        logins: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        self.target = target
        self.devices = list(devices)
        self.prefix = prefix
        # device id -> (user, password): on a secured broker each device logs in as
        # itself, since the broker makes the user name the client id
        self.logins = logins or {}
        self.clients: dict[str, mqtt.Client] = {}
        self.online = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="status-fleet", daemon=True)
        self._sel = selectors.DefaultSelector()

    def start(self) -> None:
        """Connect every device and publish its retained ``online``."""
        _raise_fd_limit(len(self.devices) + 256)
        for d in self.devices:
            c = _client(self.target, f"{self.prefix}-{d.id}")
            if d.id in self.logins:
                c.username_pw_set(*self.logins[d.id])
            topic = f"{d.topic}/status"
            c.will_set(topic, "offline", qos=1, retain=True)
            c.on_connect = self._on_connect(topic)
            try:
                c.connect(self.target.host, self.target.port, keepalive=60)
            except OSError as exc:
                raise CampusError(f"status connection for {d.id} failed: {exc}") from exc
            sock = c.socket()
            if sock is not None:
                self._sel.register(sock, selectors.EVENT_READ, c)
            self.clients[d.id] = c
        self._thread.start()

    def _on_connect(self, topic: str):  # type: ignore[no-untyped-def]
        def handler(c: mqtt.Client, u: object, f: object, rc: object, p: object) -> None:
            c.publish(topic, "online", qos=1, retain=True)
            with self._lock:
                self.online += 1

        return handler

    def _loop(self) -> None:
        last_misc = 0.0
        while not self._stop.is_set():
            for key, _ in self._sel.select(timeout=0.2):
                key.data.loop_read()
            for c in self.clients.values():
                if c.want_write():
                    c.loop_write()
            now = time.monotonic()
            if now - last_misc >= 1.0:
                for c in self.clients.values():
                    c.loop_misc()
                last_misc = now

    def wait_online(self, timeout: float = 30.0) -> bool:
        """Wait until every device has connected."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.online >= len(self.clients):
                    return True
            time.sleep(0.05)
        return False

    def stop(self, clean: bool = True) -> None:
        """Publish ``offline`` (clean stop) and disconnect every device."""
        if clean:
            for d in self.devices:
                c = self.clients.get(d.id)
                if c is not None:
                    c.publish(f"{d.topic}/status", "offline", qos=1, retain=True)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and any(
                c.want_write() for c in self.clients.values()
            ):
                time.sleep(0.05)
            time.sleep(0.3)  # let PUBACKs come back through the loop
        self._stop.set()
        self._thread.join(5)
        for c in self.clients.values():
            try:
                c.disconnect()
                c.loop_write()
            except Exception:  # noqa: S110 - best effort on the way out
                pass
        self._sel.close()


def _raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        if new < wanted:
            log.warning("only %d file descriptors allowed; %d devices need more", new, wanted)
