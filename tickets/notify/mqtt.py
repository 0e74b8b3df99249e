"""MQTT notifier: publishes each notice as JSON to ``ops/tickets/{severity}/{building}``.

Boards and on-call apps subscribe to ``ops/tickets/P1/#`` and the like. Messages
go out with QoS 1, not retained (a retained alert would be replayed to every
new subscriber long after the ticket is closed), and :meth:`MqttNotifier.send`
returns only after the broker's PUBACK, so a return means the broker has the
message. QoS 1 is at least once: a retry after a lost PUBACK may deliver a
second copy, which subscribers drop by the notice's ``key``.

One connection is opened on first use and kept; paho's network thread
reconnects it after a loss, and a send waits (within its timeout) for the
connection to come back.
"""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tickets.notify.base import Notice, NotifyError, notice_json

CHANNEL = "mqtt"
TOPIC_PREFIX = "ops/tickets"
_UNSAFE = re.compile(r"[/+#\x00]")


def topic_for(notice: Notice) -> str:
    """The topic of ``notice``. ``/``, ``+`` and ``#`` in a building or severity
    would add levels or wildcards, so they become ``_``."""
    severity = _UNSAFE.sub("_", notice.severity) or "_"
    building = _UNSAFE.sub("_", notice.building) or "_"
    return f"{TOPIC_PREFIX}/{severity}/{building}"


class MqttNotifier:
    """Publishes notices over one long-lived MQTT connection."""

    name = CHANNEL

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        timeout: float = 10.0,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        ca_file: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.client_id = client_id
        self.timeout = timeout
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        if username:
            self._client.username_pw_set(username, password)
        if tls:  # the broker's certificate must be signed by ca_file, else a system CA
            self._client.tls_set(ca_certs=ca_file)
        self._client.connect_timeout = timeout
        # A broker restart should not leave alerts waiting two minutes.
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._connected = threading.Event()
        self._last_refusal = ""
        self._started = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------- callbacks

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            self._last_refusal = str(reason_code)
            return
        self._last_refusal = ""
        self._connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        self._connected.clear()

    @property
    def connected(self) -> bool:
        """True while the connection to the broker is up (for health checks)."""
        return self._connected.is_set()

    # ------------------------------------------------------------------ send

    def _ensure_connected(self, deadline: float) -> None:
        """Start the connection on first use and wait, up to ``deadline``, for it
        to be up. After the first start paho's loop does the reconnecting."""
        if not self._started:
            self._client.connect_async(self.host, self.port, keepalive=30)
            self._client.loop_start()
            self._started = True
        if not self._connected.wait(max(0.0, deadline - time.monotonic())):
            why = f" (broker refused: {self._last_refusal})" if self._last_refusal else ""
            raise NotifyError(
                CHANNEL,
                f"not connected to {self.host}:{self.port} within {self.timeout:g} s{why}",
                retryable=True,
            )

    def send(self, notice: Notice) -> None:
        """Publish ``notice`` and wait for the broker's PUBACK."""
        deadline = time.monotonic() + self.timeout
        topic = topic_for(notice)
        with self._lock:
            self._ensure_connected(deadline)
            info = self._client.publish(topic, notice_json(notice), qos=1, retain=False)
            try:
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            except (RuntimeError, ValueError) as exc:
                raise NotifyError(
                    CHANNEL, f"publish to {topic} failed: {exc}", retryable=True
                ) from exc
            if not info.is_published():
                raise NotifyError(
                    CHANNEL,
                    f"no PUBACK for {topic} from {self.host}:{self.port} within {self.timeout:g} s",
                    retryable=True,
                )

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        if self._started:
            self._client.disconnect()
            self._client.loop_stop()
            self._started = False
            self._connected.clear()

    def __enter__(self) -> MqttNotifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
