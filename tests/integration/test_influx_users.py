"""``campus db users`` on an influxd with ``auth-enabled = true``: each service
can do what it needs on the campus database and nothing more."""

from __future__ import annotations

import json
import stat
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from campus.dbcli import SERVICE_PRIVILEGES, db
from campus.errors import SinkError
from campus.influx import InfluxClient
from campus.settings import get_settings
from campus.stack import Influxd, free_port

ROOT = Path(__file__).resolve().parents[2]
DB = "campus"
ADMIN = ("root", "admin-secret")
T = (int(time.time()) - 3600) * 1000  # within the raw retention
LINE = f"power,building=lib,device=pm-lib kw=1.0 {T}"

Run = Callable[..., Result]


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Influxd]:
    """An influxd that demands credentials, with no user yet."""
    server = Influxd(tmp_path / "influxd", free_port(), auth=True)
    server.start(timeout=60)
    yield server
    server.stop()


@pytest.fixture
def run(secured: Influxd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:
    """``campus db ...`` against the secured server, state under ``tmp_path/var``."""
    monkeypatch.setenv("CAMPUS_INFLUX_URL", secured.url)
    monkeypatch.setenv("CAMPUS_INFLUX_DB", DB)
    monkeypatch.setenv("CAMPUS_CONFIG_DIR", str(ROOT / "config"))
    monkeypatch.setenv("CAMPUS_VAR_DIR", str(tmp_path / "var"))
    for name in ("USER", "PASSWORD", "ADMIN_USER", "ADMIN_PASSWORD", "TOKEN"):
        monkeypatch.delenv(f"CAMPUS_INFLUX_{name}", raising=False)

    def invoke(*args: str) -> Result:
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(db, list(args))
        finally:
            get_settings.cache_clear()

    yield invoke
    get_settings.cache_clear()


def as_user(server: Influxd, user: str | None, password: str | None) -> InfluxClient:
    """A client of the campus database with these credentials (None: anonymous)."""
    return InfluxClient(server.url, DB, username=user, password=password, timeout=10)


def env_lines(output: str) -> dict[str, str]:
    """user -> password from the CAMPUS_INFLUX_USER / _PASSWORD lines printed."""
    users = [
        line.split("=", 1)[1]
        for line in output.splitlines()
        if line.startswith("CAMPUS_INFLUX_USER=")
    ]
    secrets = [
        line.split("=", 1)[1]
        for line in output.splitlines()
        if line.startswith("CAMPUS_INFLUX_PASSWORD=")
    ]
    return dict(zip(users, secrets, strict=True))


def refused(action: Callable[[], object]) -> bool:
    """True when InfluxDB refuses the action for its credentials."""
    try:
        action()
    except SinkError as exc:
        return exc.status in (401, 403) or "not authorized" in str(exc)
    return False


def test_services_get_least_privilege(run: Run, secured: Influxd, tmp_path: Path) -> None:
    admin_args = ("--admin-user", ADMIN[0], "--admin-password", ADMIN[1])
    # before any account: db init cannot work without an admin, and says so
    early = run("init")
    assert early.exit_code == 1
    assert "--admin-user" in early.output and "Traceback" not in early.output

    created = run("users", *admin_args)
    assert created.exit_code == 0, created.output
    assert f"created admin {ADMIN[0]}" in created.output
    passwords = env_lines(created.output)
    assert set(passwords) == set(SERVICE_PRIVILEGES)
    file = tmp_path / "var" / "influx-users.json"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    assert json.loads(file.read_text()) == passwords

    init = run("init", *admin_args)
    assert init.exit_code == 0, init.output

    anonymous = as_user(secured, None, None)
    assert refused(lambda: anonymous.query("SHOW DATABASES", database=False))
    assert refused(lambda: anonymous.write([LINE]))
    wrong = as_user(secured, "ingest", "not-the-password")
    assert refused(lambda: wrong.write([LINE]))

    ingest = as_user(secured, "ingest", passwords["ingest"])
    ingest.write([LINE])
    assert refused(lambda: ingest.query('SELECT * FROM "power"'))
    assert refused(lambda: ingest.query('DROP MEASUREMENT "power"'))
    assert refused(lambda: ingest.query("DROP DATABASE campus", database=False))
    as_user(secured, "tickets", passwords["tickets"]).write(
        [f'tickets,severity=P1 state="open" {T}']
    )

    for reader in ("grafana", "api", "rules", "models"):
        client = as_user(secured, reader, passwords[reader])
        assert client.query('SELECT "kw" FROM "power"')[0]["values"] == [[T, 1.0]]
        assert client.query('SELECT last("lat") FROM "meta"."buildings"')  # the map's positions
        assert refused(partial(client.write, [LINE]))
        assert refused(partial(client.query, 'DELETE FROM "power"'))
        assert refused(partial(client.query, "CREATE USER x WITH PASSWORD 'y'", database=False))

    admin = as_user(secured, *ADMIN)
    admin.write([LINE.replace("1.0", "2.0")])
    assert admin.query('SELECT "kw" FROM "power"')[0]["values"] == [[T, 2.0]]

    # running again changes nothing: no new passwords, every account still works
    again = run("users", *admin_args)
    assert again.exit_code == 0, again.output
    assert env_lines(again.output) == {}
    assert "unchanged: ingest, tickets, grafana, api, rules, models" in again.output
    assert json.loads(file.read_text()) == passwords
    ingest.write([LINE])
    assert as_user(secured, "api", passwords["api"]).query('SELECT count("kw") FROM "power"')

    # a given password replaces the stored one, for that account only
    given = run("users", *admin_args, "--password", "grafana=chosen-by-the-office")
    assert given.exit_code == 0, given.output
    assert env_lines(given.output) == {"grafana": "chosen-by-the-office"}
    assert as_user(secured, "grafana", "chosen-by-the-office").query(
        'SELECT count("kw") FROM "power"'
    )
    assert refused(lambda: as_user(secured, "grafana", passwords["grafana"]).query("SELECT 1"))

    bad = run("users", "--admin-user", ADMIN[0], "--admin-password", "wrong")
    assert bad.exit_code == 1 and "authorization failed" in bad.output


def test_an_open_server_is_named(
    influxd: Influxd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Accounts on a server without auth-enabled protect nothing: say so."""
    monkeypatch.setenv("CAMPUS_INFLUX_URL", influxd.url)
    monkeypatch.setenv("CAMPUS_INFLUX_DB", f"open{free_port()}")
    monkeypatch.setenv("CAMPUS_VAR_DIR", str(tmp_path / "var"))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(db, ["users", "--admin-user", "boss", "--admin-password", "pw"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert "answers without credentials" in result.output
    assert "auth-enabled = true" in result.output
