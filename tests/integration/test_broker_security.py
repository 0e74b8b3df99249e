"""The secured broker of ``campus broker config`` (S1-S3 of RELIABILITY.md).

Mosquitto runs with the generated mosquitto.conf, passwd and acl, on free ports,
as a child of the test; the campus CA and the broker's certificate are made
with ``openssl`` as docs/security.md shows. Every ACL claim is checked by
counting delivered messages: Mosquitto grants a SUBACK even where its ACL will
deliver nothing, and acknowledges a denied PUBLISH.
"""

from __future__ import annotations

import csv
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from campus.broker import broker as broker_cli
from campus.registry import Device, load_campus
from campus.settings import MqttTarget
from campus.stack import Mosquitto, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CAMPUS = ROOT / "config" / "campus.yaml"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(folder: Path, name: str) -> None:
    """A self-signed CA ``<name>.crt`` / ``<name>.key`` (as in docs/security.md)."""
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
        "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.crt",
        cwd=folder,
    )  # fmt: skip


def make_server_cert(folder: Path) -> None:
    """server.crt for 127.0.0.1 / localhost, signed by the campus CA."""
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "server.key", "-out", "server.csr",
        cwd=folder,
    )  # fmt: skip
    (folder / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
    )
    openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "campus-ca.crt", "-CAkey", "campus-ca.key",
        "-CAcreateserial", "-days", "30", "-extfile", "server.ext", "-out", "server.crt",
        cwd=folder,
    )  # fmt: skip


@dataclass
class Secured:
    """The running broker and what ``campus broker config`` wrote for it."""

    server: Mosquitto
    out: Path
    tls_port: int
    ca: Path
    other_ca: Path
    devices: dict[str, str]  # device id -> password
    a: Device
    b: Device

    def env(self, account: str, key: str) -> str:
        """A setting from credentials/<account>.env."""
        for line in (self.out / "credentials" / f"{account}.env").read_text().splitlines():
            if line.startswith(f"{key}="):
                return line.split("=", 1)[1]
        raise AssertionError(f"no {key} in {account}.env")

    def service_url(self, account: str) -> str:
        """The account's CAMPUS_MQTT_URL (TLS)."""
        return self.env(account, "CAMPUS_MQTT_URL")

    def stream(self, account: str) -> str:
        """The service's shared subscription, in its secret group."""
        setting = "CAMPUS_INGEST_GROUP" if account.startswith("ingest") else "CAMPUS_RULES_GROUP"
        return f"$share/{self.env(account, setting)}/campus/#"

    def plain(self, user: str | None, password: str | None) -> MqttTarget:
        """A target on the plaintext listener."""
        return MqttTarget("127.0.0.1", self.server.port, False, user, password)

    def service(self, account: str) -> MqttTarget:
        """A service account on the TLS listener, trusting the campus CA."""
        return MqttTarget.parse(self.service_url(account), self.ca)

    def device(self, dev: Device) -> MqttTarget:
        """A device on the TLS listener with its devices.csv password."""
        return MqttTarget("127.0.0.1", self.tls_port, True, dev.id, self.devices[dev.id], self.ca)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """Mosquitto started from the generated files (campus CA, TLS on a second port)."""
    root = tmp_path_factory.mktemp("secured")
    pki = root / "pki"
    pki.mkdir()
    make_ca(pki, "campus-ca")
    make_ca(pki, "other-ca")
    make_server_cert(pki)
    out = root / "broker"
    port, tls_port = free_port(), free_port()
    result = CliRunner().invoke(
        broker_cli,
        [
            "config", "--out", str(out), "--campus", str(CAMPUS),
            "--host", "127.0.0.1", "--port", str(port),
            "--tls-host", "127.0.0.1", "--tls-port", str(tls_port),
            "--cafile", str(pki / "campus-ca.crt"), "--certfile", str(pki / "server.crt"),
            "--keyfile", str(pki / "server.key"), "--data", str(root / "data"),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with (out / "devices.csv").open() as f:
        devices = {row["username"]: row["password"] for row in csv.DictReader(f)}
    campus = load_campus(CAMPUS)
    a, b = list(campus)[:2]
    server = Mosquitto(root / "run", port, config=out / "mosquitto.conf")
    server.start(timeout=20)
    try:
        yield Secured(
            server, out, tls_port, pki / "campus-ca.crt", pki / "other-ca.crt", devices, a, b
        )
    finally:
        server.stop()


class Client:
    """A paho MQTT 5 client that records its CONNACK, disconnects and messages."""

    def __init__(
        self, target: MqttTarget, client_id: str = "", session_expiry: int | None = None
    ) -> None:
        self.target = target
        self.session_expiry = session_expiry
        self.mqtt = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.connack = threading.Event()
        self.accepted = False
        self.disconnects = 0
        self.messages: list[str] = []
        self.suback = threading.Event()
        self._lock = threading.Lock()
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_disconnect = self._on_disconnect
        self.mqtt.on_message = self._on_message
        self.mqtt.on_subscribe = lambda *args: self.suback.set()

    def _on_connect(self, c: mqtt.Client, u: object, f: object, rc: object, p: object) -> None:
        self.accepted = not getattr(rc, "is_failure", True)
        self.connack.set()

    def _on_disconnect(self, c: mqtt.Client, u: object, f: object, rc: object, p: object) -> None:
        if self.accepted:
            self.disconnects += 1
        self.connack.set()  # a refused or broken connection ends the wait too

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg.topic)

    def connect(self, timeout: float = 5.0) -> bool:
        """Connect; True when the broker accepted (CONNACK success)."""
        self.target.secure(self.mqtt)
        props = None
        if self.session_expiry is not None:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.session_expiry
        self.mqtt.reconnect_delay_set(60, 120)  # no retries within a test
        try:
            self.mqtt.connect(
                self.target.host,
                self.target.port,
                clean_start=self.session_expiry is None,
                properties=props,
            )
        except (ssl.SSLError, OSError):
            return False
        self.mqtt.loop_start()
        self.connack.wait(timeout)
        return self.accepted

    def subscribe(self, *topics: str) -> None:
        """Subscribe at QoS 1 and wait for the SUBACK (which proves nothing more)."""
        self.suback.clear()
        self.mqtt.subscribe([(t, 1) for t in topics])
        assert self.suback.wait(5), f"no SUBACK for {topics}"

    def publish(self, topic: str, n: int = 1) -> None:
        """Publish ``n`` messages at QoS 1 and wait for their PUBACKs."""
        infos = [self.mqtt.publish(topic, f"{i}", qos=1) for i in range(n)]
        for info in infos:
            info.wait_for_publish(5)

    def count(self, prefix: str) -> int:
        """Messages received on topics starting with ``prefix``."""
        with self._lock:
            return sum(t.startswith(prefix) for t in self.messages)

    def wait_count(self, prefix: str, n: int, timeout: float = 5.0) -> int:
        """Wait until ``n`` messages on ``prefix`` arrived; the count reached."""
        deadline = time.monotonic() + timeout
        while self.count(prefix) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.count(prefix)

    def close(self) -> None:
        """Disconnect and stop the network loop."""
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    """Clients made by a test, closed after it."""
    made: list[Client] = []
    yield made
    for c in made:
        c.close()


def connected(
    made: list[Client],
    target: MqttTarget,
    client_id: str = "",
    session_expiry: int | None = None,
) -> Client:
    c = Client(target, client_id, session_expiry)
    made.append(c)
    assert c.connect(), f"{target.username} was refused on port {target.port}"
    return c


# S1 ------------------------------------------------------------------------


def test_s1_only_authenticated_clients_and_trusted_tls_get_in(
    secured: Secured, clients: list[Client]
) -> None:
    a = secured.a
    ingest = connected(clients, secured.plain("ingest", _password(secured, "ingest")))
    ingest.subscribe("campus/#")

    refused = {
        "anonymous": Client(secured.plain(None, None)),
        "wrong password": Client(secured.plain(a.id, "not-the-password")),
        "plaintext to the TLS port": Client(
            MqttTarget("127.0.0.1", secured.tls_port, False, a.id, secured.devices[a.id])
        ),
        "a different CA": Client(
            MqttTarget(
                "127.0.0.1", secured.tls_port, True, a.id, secured.devices[a.id], secured.other_ca
            )
        ),
    }
    clients.extend(refused.values())
    admitted = {name: c.connect(timeout=3) for name, c in refused.items()}
    for c in refused.values():
        c.mqtt.publish(a.topic, "intruder", qos=0)

    device = connected(clients, secured.device(a))
    device.publish(a.topic, 20)
    got = ingest.wait_count(a.topic, 20)
    time.sleep(0.2)  # anything the refused clients slipped in would be here by now
    assert [n for n, ok in admitted.items() if ok] == [], f"admitted: {admitted}"
    assert ingest.count(a.topic) == 20, (
        f"ingest received {got} of 20 readings sent over TLS with the campus CA "
        f"(and {ingest.count(a.topic) - got} from refused clients)"
    )


def _password(secured: Secured, account: str) -> str:
    password = MqttTarget.parse(secured.service_url(account)).password
    assert password
    return password


# S2 ------------------------------------------------------------------------


def test_s2_a_device_publishes_only_its_own_topics(secured: Secured, clients: list[Client]) -> None:
    a, b = secured.a, secured.b
    ingest = connected(clients, secured.service("ingest"))
    ingest.subscribe(secured.stream("ingest"))
    api = connected(clients, secured.service("api"))
    api.subscribe("ops/#")
    dev = connected(clients, secured.device(a))

    dev.publish(b.topic, 10)
    dev.publish(f"{b.topic}/status", 10)
    dev.publish("ops/alerts/P1/forged", 10)
    dev.publish("ops/tickets/P1/forged", 10)
    dev.publish(f"campus/{a.building}/{a.kind}/{a.id}-twin", 10)
    dev.publish(f"{a.topic}/status")
    dev.publish(a.topic, 10)  # last: once these arrived, the forged ones would have too
    own = ingest.wait_count(a.topic, 11)
    time.sleep(0.2)
    forged = {
        "as device B": ingest.count(b.topic),
        "on a made-up device topic": ingest.count(f"{a.topic}-twin"),
        "to ops/": api.count("ops/"),
    }
    assert forged == {"as device B": 0, "on a made-up device topic": 0, "to ops/": 0}, (
        f"deliveries of device A's forged messages (of 20, 10, 20): {forged}"
    )
    assert own == 11, f"device A's own readings and status delivered: {own} of 11"


def test_s2_a_device_reads_nothing_and_services_work_end_to_end(
    secured: Secured, clients: list[Client]
) -> None:
    a, b = secured.a, secured.b
    spy = connected(clients, secured.device(a))
    # the ACL file admits any subscription; joining a shared group whose messages
    # the ACL then drops would swallow a share of them, hence secret group names
    spy.subscribe("ops/#", "campus/#", "#", "$share/ingest/campus/#", "$share/rules/campus/#")
    ingest = connected(clients, secured.service("ingest"))
    ingest.subscribe(secured.stream("ingest"))
    tickets = connected(clients, secured.service("tickets"))
    tickets.subscribe("ops/alerts/#")
    api = connected(clients, secured.service("api"))
    api.subscribe("ops/#")
    rules = connected(clients, secured.service("rules"))
    rules.subscribe(secured.stream("rules"))

    connected(clients, secured.device(b)).publish(b.topic, 10)
    rules_got = rules.wait_count(b.topic, 10)
    ingest_got = ingest.wait_count(b.topic, 10)
    rules.publish(f"ops/alerts/P2/{b.building}", 5)
    tickets_got = tickets.wait_count("ops/alerts/", 5)
    # the ticket notices go out on their own login, next to the ticket service's
    connected(clients, secured.service("tickets-notify")).publish(f"ops/tickets/P2/{b.building}", 5)
    api_got = api.wait_count("ops/", 10)
    time.sleep(0.3)
    figures = {
        "ingest (secret shared group) readings": ingest_got,
        "rules readings": rules_got,
        "tickets alerts": tickets_got,
        "api alerts+tickets": api_got,
    }
    assert figures == {
        "ingest (secret shared group) readings": 10,
        "rules readings": 10,
        "tickets alerts": 5,
        "api alerts+tickets": 10,
    }, f"services' deliveries (of 10, 10, 5, 10): {figures}"
    assert len(spy.messages) == 0, (
        f"device A subscribed to ops/#, campus/# and # received {len(spy.messages)} of the "
        f"20 readings, alerts and tickets: {spy.messages[:5]}"
    )


# S3 ------------------------------------------------------------------------


def test_s3_no_login_takes_over_the_ingesters_session(
    secured: Secured, clients: list[Client]
) -> None:
    a = secured.a
    ingest = connected(clients, secured.service("ingest"), "campus-ingest", session_expiry=3600)
    ingest.subscribe(secured.stream("ingest"))
    takers = [
        (secured.device(a), "ingest"),
        (secured.device(a), "campus-ingest"),
        (secured.service("rules"), "ingest"),
        (secured.plain("simulator", _password(secured, "simulator")), "ingest"),
    ]
    for target, client_id in takers:
        connected(clients, target, client_id)
    time.sleep(0.3)
    connected(clients, secured.device(a), f"meter-{uuid.uuid4().hex[:6]}").publish(a.topic, 100)
    got = ingest.wait_count(a.topic, 100)
    assert (got, ingest.disconnects) == (100, 0), (
        f"after {len(takers)} logins with the ingester's client id it received {got} of 100 "
        f"readings and was disconnected {ingest.disconnects} times"
    )


def test_s3_control_the_same_account_twice_does_take_over(
    secured: Secured, clients: list[Client]
) -> None:
    """The counter above can fail: a second login of the same account (the only way
    to get its client id) replaces the first, which is why each ingester has its own."""
    first = connected(clients, secured.service("api"))
    connected(clients, secured.service("api"))
    deadline = time.monotonic() + 3
    while first.disconnects == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert first.disconnects == 1, f"first api session saw {first.disconnects} disconnects"


def test_the_ticket_notifier_publishes_over_tls_with_its_own_login(
    secured: Secured, clients: list[Client], tmp_path: Path
) -> None:
    """The MQTT notice channel as `campus tickets serve` builds it from the
    service's tickets.env (mqtts:// URL, campus CA, the notices' own login):
    it publishes over TLS and the API hears it."""
    from campus.settings import Settings
    from tickets.notify.base import Notice
    from tickets.outbox import load_channels

    notify = tmp_path / "notify.yaml"
    notify.write_text("channels:\n  ops-mqtt: {type: mqtt, timeout: 5}\n")
    env = {
        "CAMPUS_NOTIFY_MQTT_USERNAME": secured.env("tickets", "CAMPUS_NOTIFY_MQTT_USERNAME"),
        "CAMPUS_NOTIFY_MQTT_PASSWORD": secured.env("tickets", "CAMPUS_NOTIFY_MQTT_PASSWORD"),
    }
    settings = Settings(mqtt_url=secured.service_url("tickets"), mqtt_ca_file=secured.ca)
    channels = load_channels(notify, env=env, settings=settings)
    api = connected(clients, secured.service("api"))
    api.subscribe("ops/tickets/#")
    notifier = channels.notifier("ops-mqtt", None)
    notice = Notice("k1", 7, "opened", "P1", secured.b.building, "plumbing", "t", "b", "en", {})
    try:
        notifier.send(notice)
    finally:
        notifier.close()
    assert api.wait_count("ops/tickets/P1/", 1) == 1


def test_simulated_devices_hold_their_status_under_their_own_logins(
    secured: Secured, clients: list[Client]
) -> None:
    """`campus simulate --device-credentials devices.csv`: each status
    connection logs in as its device, so none takes over another's."""
    from simulators.mqtt import StatusFleet, read_logins

    campus = load_campus(CAMPUS)
    chosen = [d for d in campus if d.building == secured.b.building][:6]
    ingest = connected(clients, secured.service("ingest"))
    ingest.subscribe(secured.stream("ingest"))
    logins = read_logins(secured.out / "devices.csv")
    fleet = StatusFleet(secured.service("simulator"), chosen, prefix="sim", logins=logins)
    fleet.start()
    try:
        assert fleet.wait_online(10), f"{fleet.online} of {len(chosen)} devices came online"
        got = ingest.wait_count(f"campus/{secured.b.building}/", len(chosen))
        time.sleep(1.0)  # a connection taken over is closed by the broker meanwhile
        still = sum(c.is_connected() for c in fleet.clients.values())
    finally:
        fleet.stop()
    assert (got, still) == (len(chosen), len(chosen)), f"statuses {got}, still connected {still}"
