"""``campus broker``: Mosquitto accounts, topic ACLs and TLS from the registry.

``campus broker config --out DIR`` writes everything a Mosquitto 2.0 broker
needs to admit only known clients:

- ``mosquitto.conf``: anonymous access off, a plaintext listener and, given a
  certificate, a TLS listener; ``use_username_as_clientid`` on every listener
  so a valid login cannot take over another account's session;
- ``passwd``: one PBKDF2-SHA512 (``$7$``) hash per account;
- ``acl``: each device may publish only its own reading and status topics and
  read nothing; each service reads and writes only what it uses;
- ``credentials/<account>.env``: ``CAMPUS_MQTT_URL`` (and the CA) per service,
  and the secret shared-subscription group of the ingesters and rules engine;
- ``devices.csv``: device id, user name and password for provisioning meters.

Passwords are random and kept across runs: the existing credentials are read
back, so adding a device to ``campus.yaml`` and running again adds only that
device, and ``--rotate`` replaces the password of the named accounts only.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import ipaddress
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote, urlsplit

import click

from campus.errors import CampusError
from campus.files import write_file

if TYPE_CHECKING:
    from campus.registry import Device

# Mosquitto 2.0's defaults for the ``$7$`` format (mosquitto_passwd).
PBKDF2_ITERATIONS = 101
SALT_BYTES = 12

INGEST = "ingest"
NOTIFY = "tickets-notify"
#: What each service account may do, as (access, topic filter) pairs. A shared
#: subscription (``$share/<group>/campus/#``) is delivered only when the account
#: may read the real topic, so ``campus/#`` covers it (Mosquitto 2.0.11
#: checks each delivery against the message's own topic).
SERVICES: dict[str, tuple[tuple[str, str], ...]] = {
    INGEST: (("read", "campus/#"),),
    "rules": (("read", "campus/#"), ("write", "ops/alerts/#")),
    "tickets": (("read", "ops/alerts/#"), ("write", "ops/tickets/#")),
    # the ticket notices' MQTT channel holds its own connection next to the
    # ticket service's, so it needs its own user name (hence client id)
    NOTIFY: (("write", "ops/tickets/#"),),
    "api": (("read", "ops/#"),),
    # the simulated campus, for demonstrations only: it may publish as any device
    "simulator": (("write", "campus/#"),),
}


#: Services that read ``campus/#`` through a shared subscription, and the setting
#: naming their group. Mosquitto's ACL file never refuses a subscription, and a
#: shared group hands each message to one member even when the ACL then drops
#: it: a device that joined ``$share/ingest/...`` would silently swallow a share
#: of the readings. So the group name is a random secret given only to the
#: service (in its credentials file), never the guessable default.
GROUPS = {INGEST: "CAMPUS_INGEST_GROUP", "rules": "CAMPUS_RULES_GROUP"}


@dataclass(frozen=True)
class Listeners:
    """Where the broker listens, and what clients are told to connect to."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls_host: str = ""  # every interface: the devices' network
    tls_port: int = 8883
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    client_host: str | None = None  # default: ``host``, or localhost for a wildcard

    @property
    def tls(self) -> bool:
        """True when a TLS listener is configured."""
        return self.certfile is not None

    def url(self, user: str, password: str) -> str:
        """The ``CAMPUS_MQTT_URL`` of an account (TLS when there is a TLS listener)."""
        host = self.client_host or ("localhost" if _unspecified(self.host) else self.host)
        scheme, port = ("mqtts", self.tls_port) if self.tls else ("mqtt", self.port)
        return f"{scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{host}:{port}"


def _unspecified(host: str) -> bool:
    """True for an address meaning every interface (``""``, 0.0.0.0, ``::``)."""
    try:
        return not host or ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


@dataclass
class Account:
    """A broker login with what it may publish (write) and receive (read)."""

    name: str
    rules: tuple[tuple[str, str], ...]
    password: str = ""
    device: bool = False
    topics: list[str] = field(default_factory=list)  # a device's own topics
    env: dict[str, str] = field(default_factory=dict)  # more settings for its .env

    @property
    def service(self) -> str:
        """The service this account belongs to (``ingest-2`` is an ``ingest``)."""
        base, _, n = self.name.rpartition("-")
        return base if base == INGEST and n.isdigit() else self.name


def hash_password(password: str, salt: bytes | None = None) -> str:
    """A Mosquitto 2.0 password-file hash: ``$7$<iterations>$<salt>$<digest>``."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    b64 = base64.b64encode
    return f"$7${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def password_matches(password: str, hashed: str) -> bool:
    """True when ``hashed`` (a ``$7$`` entry) is the hash of ``password``."""
    parts = hashed.split("$")
    if len(parts) != 5 or parts[1] != "7":
        return False
    try:
        salt, digest = base64.b64decode(parts[3]), base64.b64decode(parts[4])
        rounds = int(parts[2])
    except ValueError:
        return False
    mine = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds)
    return hmac.compare_digest(mine, digest)


def plan_accounts(devices: Iterable[Device], ingesters: int = 0) -> list[Account]:
    """Every account of the broker: the services, then one per device.

    ``ingesters`` adds ``ingest-1`` .. ``ingest-N`` (same rights as ``ingest``):
    the user name is the client id, and two ingesters must not share one.
    """
    accounts = [Account(name, rights) for name, rights in SERVICES.items()]
    accounts += [Account(f"{INGEST}-{i}", SERVICES[INGEST]) for i in range(1, ingesters + 1)]
    taken = {a.name for a in accounts}
    for d in devices:
        dev_id, topic = d.id, d.topic
        if dev_id in taken:
            raise CampusError(
                f"device id {dev_id!r} is also a broker account name; rename the device"
            )
        taken.add(dev_id)
        own = [topic, f"{topic}/status"]
        accounts.append(Account(dev_id, tuple(("write", t) for t in own), device=True, topics=own))
    return accounts


def read_known(out: Path) -> tuple[dict[str, str], dict[str, str]]:
    """The passwords (by account) and the secret group names (by setting) of an
    earlier run in ``out`` (devices.csv and credentials/)."""
    known: dict[str, str] = {}
    groups: dict[str, str] = {}
    csv_file = out / "devices.csv"
    if csv_file.is_file():
        for row in csv.DictReader(io.StringIO(csv_file.read_text())):
            if row.get("username") and row.get("password"):
                known[row["username"]] = row["password"]
    creds = out / "credentials"
    if creds.is_dir():
        for env in sorted(creds.glob("*.env")):
            for line in env.read_text().splitlines():
                key, _, value = line.partition("=")
                if key == "CAMPUS_MQTT_URL":
                    url = urlsplit(value.strip())
                    if url.username and url.password:
                        known[unquote(url.username)] = unquote(url.password)
                elif key in GROUPS.values() and value.strip():
                    groups[key] = value.strip()
    return known, groups


def read_hashes(passwd: Path) -> dict[str, str]:
    """The ``user -> hash`` entries of an existing password file."""
    if not passwd.is_file():
        return {}
    entries = (line.split(":", 1) for line in passwd.read_text().splitlines() if ":" in line)
    return {user: hashed for user, hashed in entries}


def assign_passwords(accounts: list[Account], known: dict[str, str], rotate: set[str]) -> None:
    """Keep each account's known password; make new ones for new or rotated accounts."""
    names = {a.name for a in accounts}
    unknown = sorted(rotate - names)
    if unknown:
        raise CampusError(f"--rotate: no account or device named {', '.join(map(repr, unknown))}")
    for a in accounts:
        keep = known.get(a.name)
        a.password = keep if keep and a.name not in rotate else secrets.token_urlsafe(24)


def assign_settings(accounts: list[Account], groups: dict[str, str]) -> None:
    """Give the ingesters and the rules engine their secret shared-subscription
    group (kept across runs; every ingester shares the same one), and the ticket
    service the login of its MQTT notice channel (``username_env`` and
    ``password_env`` in notify.yaml)."""
    by_name = {a.name: a for a in accounts}
    for a in accounts:
        setting = GROUPS.get(a.service)
        if setting:
            a.env[setting] = groups.setdefault(setting, f"{a.service}-{secrets.token_hex(12)}")
    notify = by_name[NOTIFY]
    by_name["tickets"].env.update(
        CAMPUS_NOTIFY_MQTT_USERNAME=notify.name, CAMPUS_NOTIFY_MQTT_PASSWORD=notify.password
    )


def render_passwd(accounts: list[Account], old: dict[str, str]) -> str:
    """The password file; an unchanged password keeps its old hash (stable file)."""
    lines = []
    for a in accounts:
        hashed = old.get(a.name, "")
        if not password_matches(a.password, hashed):
            hashed = hash_password(a.password)
        lines.append(f"{a.name}:{hashed}")
    return "\n".join(lines) + "\n"


def render_acl(accounts: list[Account]) -> str:
    """The ACL file: a ``user`` block per account, nothing for anyone else."""
    out = [
        "# Generated by `campus broker config` from the campus registry.",
        "# Devices publish only their own topics and read nothing; see docs/security.md.",
    ]
    for a in accounts:
        out += ["", f"user {a.name}"] + [f"topic {access} {topic}" for access, topic in a.rules]
    return "\n".join(out) + "\n"


def _as_seen_from(listeners: Listeners, out: Path, conf_dir: Path) -> Listeners:
    """``listeners`` with certificate files inside ``out`` named as the broker sees
    them under ``conf_dir`` (``--broker-dir``: the folder mounted in its container)."""

    def seen(p: Path | None) -> Path | None:
        if p is None:
            return None
        try:
            return conf_dir / p.resolve().relative_to(out.resolve())
        except ValueError:
            return p  # outside OUT: the same path on the broker's machine

    return replace(
        listeners,
        cafile=seen(listeners.cafile),
        certfile=seen(listeners.certfile),
        keyfile=seen(listeners.keyfile),
    )


def render_conf(listeners: Listeners, broker_dir: Path, data_dir: Path, tuning: str) -> str:
    """mosquitto.conf: authenticated listeners, ACL, persistence and queue sizes."""
    head = [
        "# Generated by `campus broker config`: edit the command's options, not this file.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {broker_dir / 'passwd'}",
        f"acl_file {broker_dir / 'acl'}",
        "persistence true",
        f"persistence_location {str(data_dir).rstrip('/')}/",
        tuning.rstrip("\n"),
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "",
        # listener options: Mosquitto 2.0 applies them to the listener above them only
        f"listener {listeners.port} {listeners.host}",
        "use_username_as_clientid true",
    ]
    if listeners.tls:
        head += [
            "",
            f"listener {listeners.tls_port} {listeners.tls_host}".rstrip(),
            "use_username_as_clientid true",
            f"cafile {listeners.cafile}",
            f"certfile {listeners.certfile}",
            f"keyfile {listeners.keyfile}",
            "tls_version tlsv1.2",
            "require_certificate false",
        ]
    return "\n".join(head) + "\n"


def render_env(account: Account, listeners: Listeners) -> str:
    """A service's ``credentials/<account>.env``."""
    lines = [
        f"# MQTT account {account.name!r} (campus broker config); keep this file secret",
        f"CAMPUS_MQTT_URL={listeners.url(account.name, account.password)}",
    ]
    if listeners.tls and listeners.cafile is not None:
        lines.append(f"CAMPUS_MQTT_CA_FILE={listeners.cafile}")
    lines += [f"{key}={value}" for key, value in account.env.items()]
    return "\n".join(lines) + "\n"


def render_devices_csv(accounts: list[Account]) -> str:
    """device, username, password of every device, for provisioning the meters."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["device", "username", "password"])
    for a in accounts:
        if a.device:
            writer.writerow([a.name, a.name, a.password])
    return buf.getvalue()


def broker_group() -> int | None:
    """The ``mosquitto`` group when we may hand files to it (running as root).

    Mosquitto reads its password and ACL files after dropping to that user.
    """
    if os.geteuid() != 0:
        return None
    import grp

    try:
        return grp.getgrnam("mosquitto").gr_gid
    except KeyError:
        return None


def generate(
    out: Path,
    devices: Iterable[Device],
    listeners: Listeners,
    *,
    ingesters: int = 0,
    rotate: Iterable[str] = (),
    broker_dir: Path | None = None,
    data_dir: Path = Path("/var/lib/mosquitto"),
) -> list[Account]:
    """Write the broker's files into ``out`` and return the accounts."""
    from campus.stack import Mosquitto

    accounts = plan_accounts(devices, ingesters)
    try:
        (out / "credentials").mkdir(parents=True, exist_ok=True)
        os.chmod(out / "credentials", 0o700)
        known, groups = read_known(out)
        assign_passwords(accounts, known, set(rotate))
        assign_settings(accounts, groups)
        group = broker_group()
        conf_dir = broker_dir or out.resolve()
        conf = render_conf(
            _as_seen_from(listeners, out, conf_dir), conf_dir, data_dir, Mosquitto.TUNING
        )
        write_file(out / "mosquitto.conf", conf, 0o644)
        old = read_hashes(out / "passwd")
        write_file(out / "passwd", render_passwd(accounts, old), 0o640, group)
        write_file(out / "acl", render_acl(accounts), 0o640, group)
        write_file(out / "devices.csv", render_devices_csv(accounts), 0o600)
        names = set()
        for a in accounts:
            if not a.device:
                names.add(f"{a.name}.env")
                write_file(out / "credentials" / f"{a.name}.env", render_env(a, listeners), 0o600)
        for stale in (out / "credentials").glob("*.env"):
            if stale.name not in names:
                stale.unlink()
    except OSError as exc:
        raise CampusError(
            f"cannot write the broker files in {out}: {exc.strerror or exc}"
        ) from None
    return accounts


@click.group()
def broker() -> None:
    """Mosquitto: accounts, topic ACLs and TLS from the registry."""


def _existing_file(_ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    if value is not None and not value.is_file():
        raise click.BadParameter(f"{value} is not a file")
    return value.resolve() if value is not None else None


@broker.command("config")
@click.option(
    "--out", "out", required=True, type=click.Path(path_type=Path), help="Folder to write."
)
@click.option(
    "--campus",
    "campus_file",
    type=click.Path(path_type=Path),
    default=None,
    help="The registry (default: campus.yaml of the settings' config folder).",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address of the plaintext listener."
)
@click.option("--port", default=1883, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--tls-host", default="", help="Address of the TLS listener (default: every interface)."
)
@click.option("--tls-port", default=8883, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--cafile",
    type=click.Path(path_type=Path),
    callback=_existing_file,
    help="The campus CA certificate (PEM).",
)
@click.option(
    "--certfile",
    type=click.Path(path_type=Path),
    callback=_existing_file,
    help="The broker's certificate, signed by the CA (PEM).",
)
@click.option(
    "--keyfile",
    type=click.Path(path_type=Path),
    callback=_existing_file,
    help="The broker's private key (PEM).",
)
@click.option(
    "--client-host",
    default=None,
    help="Host name the services connect to (default: --host; must match the "
    "certificate with TLS).",
)
@click.option(
    "--ingesters",
    default=0,
    show_default=True,
    type=click.IntRange(0, 100),
    help="Also make ingest-1 .. ingest-N, one account per ingester.",
)
@click.option(
    "--rotate",
    multiple=True,
    metavar="ACCOUNT|DEVICE",
    help="Give this account or device a new password (repeatable).",
)
@click.option(
    "--data",
    "data_dir",
    type=click.Path(path_type=Path),
    default=Path("/var/lib/mosquitto"),
    show_default=True,
    help="The broker's persistence folder (must belong to its user).",
)
@click.option(
    "--broker-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the broker will read these files (default: --out), e.g. a container's mount point.",
)
def config_command(
    out: Path,
    campus_file: Path | None,
    host: str,
    port: int,
    tls_host: str,
    tls_port: int,
    cafile: Path | None,
    certfile: Path | None,
    keyfile: Path | None,
    client_host: str | None,
    ingesters: int,
    rotate: tuple[str, ...],
    data_dir: Path,
    broker_dir: Path | None,
) -> None:
    """Write mosquitto.conf, passwd, acl, credentials/ and devices.csv into OUT.

    Existing passwords in OUT are kept; only --rotate changes one.
    """
    tls_files = (cafile, certfile, keyfile)
    if any(tls_files) and not all(tls_files):
        raise click.UsageError("TLS needs all of --cafile, --certfile and --keyfile")
    listeners = Listeners(
        host, port, tls_host, tls_port, cafile, certfile, keyfile, client_host=client_host
    )
    try:
        from campus.registry import load_campus
        from campus.settings import get_settings

        devices = list(load_campus(campus_file or get_settings().campus_file))
        accounts = generate(
            out,
            devices,
            listeners,
            ingesters=ingesters,
            rotate=rotate,
            broker_dir=broker_dir,
            data_dir=data_dir,
        )
    except CampusError as exc:
        raise click.ClickException(str(exc)) from None
    n_dev = sum(a.device for a in accounts)
    click.echo(
        f"wrote {out}: {len(accounts) - n_dev} service accounts, {n_dev} devices"
        + (f", rotated {', '.join(rotate)}" if rotate else "")
        + (f"; TLS on {tls_host or '*'}:{tls_port}" if listeners.tls else "")
    )
