"""Static checks of the production deployment in ``deploy/`` (no Docker engine runs here).

The compose file must be valid Compose (the Compose Specification's JSON schema,
vendored in tests/data), every service must restart and report its health, and
everything it names must exist: services it depends on, volumes, files it mounts
(or the command that generates them, documented in docs/deploy.md), ``CAMPUS_*``
settings and ``campus`` commands. The systemd units must parse and start real
commands; the shell scripts must parse, and ``backup.sh`` is run for real on a
SQLite ticket store.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from campus.cli import main
from campus.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
SYSTEMD = DEPLOY / "systemd"
DOCS = ROOT / "docs" / "deploy.md"

# Host paths the compose file mounts that are made on the server, not committed,
# with the command that makes them (docs/deploy.md must show it).
GENERATED = {
    "./broker": "campus broker config",
    "./backups": "backup.sh --compose",
    "../dashboards/generated": "campus dashboards build",
}
# Optional files the administrator writes (never committed), each named in docs/deploy.md.
OPTIONAL = {"./notify.env"}
OUR_IMAGE = "campus-monitor:"
SETTINGS = {f"CAMPUS_{name.upper()}" for name in Settings.model_fields}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def our_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The services that run our image (the others are upstream images)."""
    return {k: v for k, v in services.items() if v["image"].startswith(OUR_IMAGE)}


def campus_help(args: list[str]) -> int:
    """Exit code of ``campus <args> --help``: 0 only for a real command."""
    return CliRunner().invoke(main, [*args, "--help"]).exit_code


def host_mounts(service: dict[str, Any]) -> list[str]:
    """The host paths a service bind-mounts (short syntax ``source:target[:mode]``)."""
    sources = [v.split(":")[0] for v in service.get("volumes", [])]
    return [s for s in sources if s.startswith((".", "/"))]


def generated_root(path: str) -> str | None:
    """The GENERATED entry a host path lies in, if any."""
    for root in GENERATED:
        if path == root or path.startswith(root + "/"):
            return root
    return None


# ------------------------------------------------------------------ compose file


def test_compose_is_valid_compose_spec(compose: dict[str, Any]) -> None:
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    errors = [
        f"{'/'.join(map(str, e.path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(compose)
    ]
    assert errors == []


def test_the_schema_refuses_what_compose_refuses(compose: dict[str, Any]) -> None:
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["depends_on"]["postgres"] = {"condition": "when_ready"}
    broken["services"]["api"]["restart_policy"] = "always"
    assert len(list(jsonschema.Draft7Validator(schema).iter_errors(broken))) == 2


def test_every_platform_part_is_a_service(services: dict[str, dict[str, Any]]) -> None:
    assert {"mosquitto", "influxdb", "grafana", "postgres", "rules", "tickets", "api"} <= set(
        services
    )
    assert [n for n in services if n.startswith("ingest-")] == ["ingest-1", "ingest-2"]
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2"
    assert services["influxdb"]["image"].startswith("influxdb:2.")
    assert services["grafana"]["image"].startswith("grafana/grafana-oss:12")
    assert services["postgres"]["image"] == "postgres:15"


def test_every_service_restarts_and_has_a_health_check(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        assert service.get("restart") == "unless-stopped", name
        check = service.get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name


def test_dependencies_exist_and_wait_for_health(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for dep, how in service.get("depends_on", {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert how == {"condition": "service_healthy"}, name
            assert dep != name
    for name in our_services(services):
        assert {"mosquitto", "influxdb"} <= set(services[name]["depends_on"]), name
    for name in ("tickets", "api"):
        assert "postgres" in services[name]["depends_on"]


def test_named_volumes_are_declared_and_used(compose: dict[str, Any]) -> None:
    declared = set(compose["volumes"])
    used = set()
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/")):
                used.add(source)
    assert used == declared


def test_each_ingester_has_its_own_account_client_id_and_spool(
    services: dict[str, dict[str, Any]],
) -> None:
    ingesters = {n: s for n, s in services.items() if n.startswith("ingest-")}
    for name, service in ingesters.items():
        assert service["command"] == ["ingest"]
        assert service["env_file"] == [f"./broker/credentials/{name}.env"]
        assert service["environment"]["CAMPUS_INGEST_CLIENT_ID"] == name
        assert f"{name}-var:/var/lib/campus" in service["volumes"]
        # the group comes with the broker credentials, whose ACL allows only that one
        assert "CAMPUS_INGEST_GROUP" not in service["environment"]


def test_mounted_files_exist_or_are_generated(services: dict[str, dict[str, Any]]) -> None:
    docs = DOCS.read_text()
    for name, service in services.items():
        env_files = [f if isinstance(f, dict) else {"path": f} for f in service.get("env_file", [])]
        for f in env_files:
            if f.get("required", True) is False:
                assert f["path"] in OPTIONAL, f"{name}: unexpected optional {f['path']}"
                assert f["path"].removeprefix("./") in docs, f"docs/deploy.md must name {f}"
        paths = host_mounts(service) + [f["path"] for f in env_files if f.get("required", True)]
        for path in paths:
            root = generated_root(path)
            if root is None:
                assert (DEPLOY / path).exists(), f"{name} mounts missing {path}"
            else:
                assert GENERATED[root] in docs, f"docs/deploy.md must say how to make {root}"


def test_grafana_is_provisioned_as_the_contract_says(services: dict[str, dict[str, Any]]) -> None:
    grafana = services["grafana"]
    assert "../dashboards/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert "../dashboards/generated:/var/lib/grafana/dashboards/campus:ro" in grafana["volumes"]
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith(
        "${GRAFANA_ADMIN_PASSWORD:?"
    )


def test_broker_gets_its_generated_files_read_only_and_tls(
    services: dict[str, dict[str, Any]],
) -> None:
    broker = services["mosquitto"]
    for f in ("mosquitto.conf", "passwd", "acl", "certs"):
        assert f"./broker/{f}:/mosquitto/config/{f}:ro" in broker["volumes"]
    # the devices' and services' passwords stay out of the broker's container
    assert not any("credentials" in v or "devices.csv" in v for v in broker["volumes"])
    assert broker["ports"] == ["8883:8883"]


def test_influxdb_runs_the_init_script_at_setup(services: dict[str, dict[str, Any]]) -> None:
    influx = services["influxdb"]
    env = influx["environment"]
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert env["DOCKER_INFLUXDB_INIT_ORG"] == "campus"
    assert env["DOCKER_INFLUXDB_INIT_BUCKET"] == "${CAMPUS_INFLUX_DB:-campus}"
    assert "./influxdb/init.sh:/docker-entrypoint-initdb.d/campus-init.sh:ro" in influx["volumes"]


def test_campus_variables_are_real_settings(services: dict[str, dict[str, Any]]) -> None:
    used = set(re.findall(r"\$\{(CAMPUS_[A-Z0-9_]+)", COMPOSE_FILE.read_text()))
    for service in our_services(services).values():
        used |= {k for k in service["environment"] if k.startswith("CAMPUS_")}
    for path in [DEPLOY / ".env.example", *SYSTEMD.iterdir()]:
        used |= set(re.findall(r"\bCAMPUS_[A-Z0-9_]+", path.read_text()))
    assert {"CAMPUS_INFLUX_URL", "CAMPUS_DB_URL", "CAMPUS_INGEST_CLIENT_ID"} <= used
    assert used - SETTINGS == set()


def test_grafana_gets_every_variable_its_provisioning_reads(
    services: dict[str, dict[str, Any]],
) -> None:
    provisioning = ROOT / "dashboards" / "provisioning"
    read = set()
    for path in provisioning.rglob("*.yaml"):
        body = "\n".join(line.split("#")[0] for line in path.read_text().splitlines())
        read |= set(re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", body))
    assert read, "the provisioning files read no variable"
    assert read - set(services["grafana"]["environment"]) == set()


def test_every_interpolated_variable_is_documented_in_env_example() -> None:
    interpolated = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE_FILE.read_text()))
    documented = set(re.findall(r"^([A-Z0-9_]+)=", (DEPLOY / ".env.example").read_text(), re.M))
    assert interpolated - documented == set()
    assert "change-me" in (DEPLOY / ".env.example").read_text()
    assert not (DEPLOY / ".env").exists() or ".env" in (DEPLOY / ".gitignore").read_text()


def test_commands_are_real_campus_commands(services: dict[str, dict[str, Any]]) -> None:
    ours = our_services(services)
    assert {s["command"][0] for s in ours.values()} == {"ingest", "rules", "tickets", "api"}
    health = (DEPLOY / "healthcheck.sh").read_text()
    for name, service in ours.items():
        assert campus_help(service["command"]) == 0, name
        assert f'*"campus {" ".join(service["command"])} "*)' in health, name


def test_a_wrong_command_is_caught() -> None:
    assert campus_help(["tickets", "serve"]) == 0
    assert campus_help(["tickets", "server"]) != 0


def test_published_ports_are_unique(services: dict[str, dict[str, Any]]) -> None:
    published = [str(p).split(":")[-2] for s in services.values() for p in s.get("ports", [])]
    assert len(published) == len(set(published))
    assert "8000" in published


# ------------------------------------------------------------------ image


def test_dockerfile_installs_every_package_and_drops_root() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and user[-1] not in ("root", "0")
    assert "HEALTHCHECK" in text and 'ENTRYPOINT ["campus"]' in text
    pyproject = (ROOT / "pyproject.toml").read_text()
    include = re.search(r"include = \[([^\]]*)\]", pyproject)
    assert include is not None
    for package in re.findall(r'"(\w+)\*"', include.group(1)):
        assert f"COPY {package} {package}" in text, package
        assert f"!{package}/" in (DEPLOY / "Dockerfile.dockerignore").read_text(), package


# ------------------------------------------------------------------ systemd


def units() -> list[Path]:
    return sorted(SYSTEMD.iterdir())


def read_unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


def test_systemd_units_cover_every_service() -> None:
    names = {p.name for p in units()}
    assert {
        "campus-ingest@.service",
        "campus-rules.service",
        "campus-tickets.service",
        "campus-api.service",
        "campus-model-train.service",
        "campus-model-train.timer",
        "campus-backup.service",
        "campus-backup.timer",
    } == names


def test_systemd_services_are_hardened_and_start_real_commands() -> None:
    for path in units():
        unit = read_unit(path)
        if path.suffix == ".timer":
            assert unit["Timer"]["Persistent"] == "true"
            assert (SYSTEMD / path.name.replace(".timer", ".service")).exists()
            continue
        service = unit["Service"]
        assert service["User"] == "campus", path.name
        for key, value in {
            "NoNewPrivileges": "yes",
            "ProtectSystem": "strict",
            "ReadWritePaths": "/var/lib/campus",
            "PrivateTmp": "yes",
        }.items():
            assert service.get(key) == value, f"{path.name}: {key}"
        assert service["EnvironmentFile"].startswith("/etc/campus/"), path.name
        argv = shlex.split(service["ExecStart"].replace("%i", "1"))
        if service["Type"] == "simple":
            assert service["Restart"] == "on-failure", path.name
        if argv[0] == "/opt/campus/venv/bin/campus":
            assert campus_help(argv[1:]) == 0, path.name
        else:
            assert argv[0] == "/opt/campus/deploy/backup.sh", path.name


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_finds_nothing_but_the_missing_install() -> None:
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *[str(p) for p in units()]],
        capture_output=True,
        text=True,
        timeout=30,
    )
    problems = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if line.strip() and not re.search(r"Command /opt/campus/\S+ is not executable", line)
    ]
    assert problems == []


# ------------------------------------------------------------------ scripts


@pytest.mark.parametrize(
    ("shell", "script"),
    [
        ("bash", "influxdb/init.sh"),
        ("bash", "backup.sh"),
        ("sh", "healthcheck.sh"),
    ],
)
def test_scripts_parse(shell: str, script: str) -> None:
    done = subprocess.run([shell, "-n", str(DEPLOY / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert os.access(DEPLOY / script, os.X_OK)


def test_init_script_maps_every_retention_policy() -> None:
    text = (DEPLOY / "influxdb" / "init.sh").read_text()
    for rp in ("autogen", "hourly", "daily", "meta"):
        assert re.search(rf"^dbrp {rp} ", text, re.M), rp
    for user in ("ingest", "tickets"):
        assert f"--username {user}" in text
    assert "for user in grafana api" in text


def run_backup(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(DEPLOY / "backup.sh")],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": os.environ["PATH"], "BACKUP_DIR": str(tmp_path / "backups"), **env},
    )


def test_backup_copies_the_ticket_store_and_keeps_n_days(tmp_path: Path) -> None:
    store = tmp_path / "campus.db"
    with sqlite3.connect(store) as db:
        db.execute("CREATE TABLE tickets (id INTEGER, title TEXT)")
        db.execute("INSERT INTO tickets VALUES (7, 'chiller trip')")
    old = tmp_path / "backups" / "20200101T000000Z"
    recent = tmp_path / "backups" / "20200102T000000Z"
    for folder, age_days in ((old, 20), (recent, 2)):
        folder.mkdir(parents=True)
        stamp = time.time() - age_days * 86400
        os.utime(folder, (stamp, stamp))

    done = run_backup(
        tmp_path, BACKUP_INFLUX="none", BACKUP_KEEP_DAYS="7", CAMPUS_DB_URL=f"sqlite:///{store}"
    )

    assert done.returncode == 0, done.stderr
    made = Path(done.stdout.strip().removeprefix("backup: "))
    with sqlite3.connect(made / "tickets.db") as copy:
        assert copy.execute("SELECT id, title FROM tickets").fetchall() == [(7, "chiller trip")]
    assert not old.exists()
    assert recent.exists()


def test_backup_refuses_a_bad_setting_in_one_line(tmp_path: Path) -> None:
    done = run_backup(tmp_path, BACKUP_INFLUX="none", BACKUP_KEEP_DAYS="two weeks")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "backup: BACKUP_KEEP_DAYS must be a whole number of days, got 'two weeks'"
    ]
