"""``campus broker config``: the password file, ACL, credentials and
mosquitto.conf made from the registry (run against Mosquitto in
tests/integration/test_broker_security.py)."""

from __future__ import annotations

import csv
import re
import stat
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from click.testing import CliRunner
from paho.mqtt.enums import CallbackAPIVersion

from campus.broker import (
    SERVICES,
    Listeners,
    broker,
    generate,
    hash_password,
    password_matches,
)
from campus.errors import CampusError, SettingsError
from campus.registry import Device, load_campus
from campus.settings import MqttTarget, Settings

ROOT = Path(__file__).resolve().parents[2]
CAMPUS = ROOT / "config" / "campus.yaml"
# made by Mosquitto 2.0.11's `mosquitto_passwd -b passwd alice secret`
MOSQUITTO_HASH = (
    "$7$101$+MzXOjemFoVlx020$0nE4034bfk3F92iJFI9CoRgX9n+C9wdCrxCZZ2QNtl3WHGOQLFnhdYCzKxiLP"
    "SzPvFZu2z2nJK+zoEuBxg19jg=="
)


@pytest.fixture(scope="module")
def devices() -> list[Device]:
    return list(load_campus(CAMPUS))


def run(out: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        broker, ["config", "--out", str(out), "--campus", str(CAMPUS), "--data", "/tmp/d", *args]
    )
    return result.exit_code, result.output


def acl_blocks(out: Path) -> dict[str, list[str]]:
    """user -> its topic lines."""
    blocks: dict[str, list[str]] = {}
    user = ""
    for line in (out / "acl").read_text().splitlines():
        if line.startswith("user "):
            user = line.split(" ", 1)[1]
            blocks[user] = []
        elif line.startswith("topic "):
            blocks[user].append(line)
    return blocks


def csv_passwords(out: Path) -> dict[str, str]:
    with (out / "devices.csv").open() as f:
        return {row["device"]: row["password"] for row in csv.DictReader(f)}


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file under ``out`` with its bytes."""
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def passwd_lines(out: Path) -> dict[str, str]:
    return dict(line.split(":", 1) for line in (out / "passwd").read_text().splitlines())


def test_hashes_are_mosquittos_format() -> None:
    assert password_matches("secret", MOSQUITTO_HASH)
    assert not password_matches("Secret", MOSQUITTO_HASH)
    mine = hash_password("pw")
    assert re.fullmatch(r"\$7\$101\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==", mine), mine
    assert password_matches("pw", mine) and not password_matches("pw2", mine)


def test_every_device_may_publish_only_its_own_topics(
    tmp_path: Path, devices: list[Device]
) -> None:
    code, output = run(tmp_path)
    assert code == 0, output
    blocks = acl_blocks(tmp_path)
    passwords = csv_passwords(tmp_path)
    hashes = passwd_lines(tmp_path)
    assert len(devices) == 855
    for d in devices:
        assert blocks[d.id] == [f"topic write {d.topic}", f"topic write {d.topic}/status"], d.id
        assert d.id in passwords and password_matches(passwords[d.id], hashes[d.id]), d.id
    device_lines = [line for d in devices for line in blocks[d.id]]
    assert not [x for x in device_lines if "#" in x or "+" in x or " read" in x]
    assert set(blocks) == set(SERVICES) | {d.id for d in devices}
    assert set(hashes) == set(blocks)


def test_services_get_only_what_they_use(tmp_path: Path) -> None:
    run(tmp_path, "--ingesters", "2")
    blocks = acl_blocks(tmp_path)
    assert blocks["ingest"] == blocks["ingest-1"] == blocks["ingest-2"] == ["topic read campus/#"]
    assert blocks["rules"] == ["topic read campus/#", "topic write ops/alerts/#"]
    assert blocks["tickets"] == ["topic read ops/alerts/#", "topic write ops/tickets/#"]
    assert blocks["api"] == ["topic read ops/#"]
    assert blocks["simulator"] == ["topic write campus/#"]
    creds = tmp_path / "credentials"
    assert sorted(p.stem for p in creds.glob("*.env")) == sorted(
        [*SERVICES, "ingest-1", "ingest-2"]
    )
    groups = {(creds / f"{n}.env").read_text().split("CAMPUS_INGEST_GROUP=")[1] for n in
              ("ingest", "ingest-1", "ingest-2")}  # fmt: skip
    assert len(groups) == 1 and groups != {"ingest\n"}, "ingesters share one secret group"
    notify = MqttTarget.parse((creds / "tickets-notify.env").read_text().split("URL=")[1])
    tickets_env = (creds / "tickets.env").read_text()
    assert f"CAMPUS_NOTIFY_MQTT_USERNAME={notify.username}\n" in tickets_env
    assert f"CAMPUS_NOTIFY_MQTT_PASSWORD={notify.password}\n" in tickets_env


def test_passwords_survive_reruns_and_new_devices_add_only_themselves(
    tmp_path: Path, devices: list[Device]
) -> None:
    listeners = Listeners()
    generate(tmp_path, devices[:-1], listeners, data_dir=Path("/tmp/d"))
    before = snapshot(tmp_path)
    old_csv, old_hashes = csv_passwords(tmp_path), passwd_lines(tmp_path)
    generate(tmp_path, devices, listeners, data_dir=Path("/tmp/d"))
    new_csv, new_hashes = csv_passwords(tmp_path), passwd_lines(tmp_path)
    assert set(new_csv) - set(old_csv) == {devices[-1].id}
    assert {k: new_csv[k] for k in old_csv} == old_csv
    assert {k: new_hashes[k] for k in old_hashes} == old_hashes  # hashes unchanged too
    generate(tmp_path, devices[:-1], listeners, data_dir=Path("/tmp/d"))
    assert snapshot(tmp_path) == before, "the same registry gives the same files"


def test_rotate_changes_exactly_one_password(tmp_path: Path, devices: list[Device]) -> None:
    run(tmp_path)
    csv1, hashes1 = csv_passwords(tmp_path), passwd_lines(tmp_path)
    env1 = (tmp_path / "credentials" / "rules.env").read_text()
    target = devices[3].id
    code, output = run(tmp_path, "--rotate", target)
    assert code == 0, output
    csv2, hashes2 = csv_passwords(tmp_path), passwd_lines(tmp_path)
    assert [k for k in csv1 if csv1[k] != csv2[k]] == [target]
    assert [k for k in hashes1 if hashes1[k] != hashes2[k]] == [target]
    assert password_matches(csv2[target], hashes2[target])
    run(tmp_path, "--rotate", "rules")
    assert passwd_lines(tmp_path).keys() == hashes2.keys()
    assert [k for k in hashes2 if hashes2[k] != passwd_lines(tmp_path)[k]] == ["rules"]
    assert (tmp_path / "credentials" / "rules.env").read_text() != env1


def test_secrets_are_private_and_the_config_admits_no_one_anonymously(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    for name in ("ca.crt", "server.crt", "server.key"):
        (pki / name).write_text("-----BEGIN-----\n")
    out = tmp_path / "out"
    code, output = run(
        out, "--cafile", str(pki / "ca.crt"), "--certfile", str(pki / "server.crt"),
        "--keyfile", str(pki / "server.key"), "--client-host", "mqtt.campus.example",
        "--port", "1884", "--tls-port", "8884",
    )  # fmt: skip
    assert code == 0, output
    for secret in [out / "devices.csv", *(out / "credentials").glob("*.env")]:
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    assert not stat.S_IMODE((out / "passwd").stat().st_mode) & 0o007
    conf = (out / "mosquitto.conf").read_text()
    assert "allow_anonymous false\n" in conf and f"acl_file {out.resolve()}/acl\n" in conf
    assert "persistence_location /tmp/d/\n" in conf
    # listener options bind to the listener above them (Mosquitto 2.0)
    for block in conf.split("\nlistener ")[1:]:
        assert "use_username_as_clientid true" in block
    assert conf.count("\nlistener ") == 2 and "listener 1884 127.0.0.1\n" in conf
    assert f"certfile {pki.resolve()}/server.crt\ntls_version tlsv1.2" in conf.replace(
        f"keyfile {pki.resolve()}/server.key\n", ""
    )
    env = (out / "credentials" / "api.env").read_text()
    url = re.search(r"CAMPUS_MQTT_URL=(\S+)", env)
    assert url and f"CAMPUS_MQTT_CA_FILE={pki.resolve()}/ca.crt" in env
    target = MqttTarget.parse(url.group(1))
    assert (target.tls, target.host, target.port, target.username) == (
        True, "mqtt.campus.example", 8884, "api",
    )  # fmt: skip


def test_plaintext_only_without_certificates(tmp_path: Path) -> None:
    run(tmp_path)
    conf = (tmp_path / "mosquitto.conf").read_text()
    assert conf.count("\nlistener ") == 1 and "certfile" not in conf
    env = (tmp_path / "credentials" / "ingest.env").read_text()
    assert "CAMPUS_MQTT_URL=mqtt://ingest:" in env and "CA_FILE" not in env


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rotate", "no-such-meter"], "--rotate: no account or device named 'no-such-meter'"),
        (["--cafile", "/etc/hostname"], "TLS needs all of --cafile, --certfile and --keyfile"),
        (["--certfile", "/nonexistent.pem"], "/nonexistent.pem is not a file"),
    ],
)
def test_bad_options_are_one_clear_line_and_change_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    run(tmp_path)
    before = (tmp_path / "passwd").read_text(), (tmp_path / "devices.csv").read_text()
    code, output = run(tmp_path, *args)
    assert code != 0 and message in output and "Traceback" not in output, output
    assert ((tmp_path / "passwd").read_text(), (tmp_path / "devices.csv").read_text()) == before


def test_unwritable_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    code, output = run(blocker / "broker")
    assert code == 1 and "Traceback" not in output
    assert f"cannot write the broker files in {blocker / 'broker'}: " in output, output


def test_a_device_named_like_a_service_is_refused(devices: list[Device], tmp_path: Path) -> None:
    clash = Device("ingest", "lib", "power", None, 60.0, {})
    with pytest.raises(CampusError, match="device id 'ingest' is also a broker account name"):
        generate(tmp_path, [devices[0], clash], Listeners())
    assert not (tmp_path / "passwd").exists()


def test_the_ca_file_reaches_the_mqtt_target(tmp_path: Path) -> None:
    ca = tmp_path / "campus-ca.crt"
    s = Settings(mqtt_url="mqtts://api:pw@mqtt.campus.example", mqtt_ca_file=ca)
    assert (s.mqtt.port, s.mqtt.tls, s.mqtt.ca_file) == (8883, True, ca)
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    with pytest.raises(SettingsError, match=r"CAMPUS_MQTT_CA_FILE: .* is not a file"):
        s.mqtt.secure(client)


def test_certificates_in_out_are_named_as_the_broker_container_sees_them(tmp_path: Path) -> None:
    """With --broker-dir (the folder mounted in the broker's container),
    certificates kept under OUT are written relative to it; others keep their path."""
    out = tmp_path / "broker"
    (out / "certs").mkdir(parents=True)
    for name in ("ca.crt", "server.crt", "server.key"):
        (out / "certs" / name).write_text("-----BEGIN-----\n")
    code, output = run(
        out, "--broker-dir", "/mosquitto/config",
        "--cafile", str(out / "certs" / "ca.crt"), "--certfile", str(out / "certs" / "server.crt"),
        "--keyfile", str(out / "certs" / "server.key"),
    )  # fmt: skip
    assert code == 0, output
    conf = (out / "mosquitto.conf").read_text()
    seen = "/mosquitto/config"
    for line in (
        f"cafile {seen}/certs/ca.crt",
        f"certfile {seen}/certs/server.crt",
        f"keyfile {seen}/certs/server.key",
        f"acl_file {seen}/acl",
    ):
        assert f"\n{line}\n" in conf, conf
