"""``campus db``: InfluxDB database, retention, rollups and users.

``campus db init`` makes a database ready for years of readings (retention
policies, continuous queries, reference points; :mod:`campus.rollups`),
``campus db rollup`` computes the rollups of past data, ``campus db status``
shows what is there, and ``campus db users`` creates least-privilege accounts
on a server that runs with authentication (docs/retention.md).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from campus.errors import CampusError

if TYPE_CHECKING:
    from campus.influx import InfluxClient
    from campus.registry import Campus
    from campus.rollups import Retention
    from campus.settings import Settings

#: Each service's InfluxDB account and what it may do on the campus database:
#: ingest and the ticket service write readings and ticket events; the rest read.
SERVICE_PRIVILEGES = {
    "ingest": "WRITE",
    "tickets": "WRITE",
    "grafana": "READ",
    "api": "READ",
    "rules": "READ",
    "models": "READ",
}

#: Rollup queries may read a week of raw readings each.
QUERY_TIMEOUT_S = 300.0


@click.group()
def db() -> None:
    """InfluxDB: database, retention policies, rollups and users."""


def admin_options(f: click.decorators.FC) -> click.decorators.FC:
    """``--admin-user``/``--admin-password`` (default: the settings)."""
    f = click.option(
        "--admin-password",
        default=None,
        help="Its password (default: CAMPUS_INFLUX_ADMIN_PASSWORD).",
    )(f)
    return click.option(
        "--admin-user",
        default=None,
        help="An InfluxDB admin, needed when the server runs with authentication "
        "(default: CAMPUS_INFLUX_ADMIN_USER, else CAMPUS_INFLUX_USER).",
    )(f)


def _settings() -> Settings:
    from campus.settings import get_settings

    try:
        return get_settings()
    except CampusError as exc:
        raise click.ClickException(str(exc)) from None


def _campus(s: Settings) -> Campus:
    from campus.registry import load_campus

    try:
        return load_campus(s.campus_file)
    except CampusError as exc:
        raise click.ClickException(f"{s.campus_file}: {exc}") from None


@contextmanager
def _client(s: Settings, user: str | None, password: str | None) -> Iterator[InfluxClient]:
    """A client as the admin (or the configured user); a clear error when the
    server does not answer, and any :class:`CampusError` turned into one line."""
    from campus.influx import InfluxClient

    user = user or s.influx_admin_user or s.influx_user
    if user:
        password = password or s.influx_admin_password or s.influx_password
    client = InfluxClient(
        s.influx_url,
        s.influx_db,
        token=None if user else s.influx_token,
        username=user,
        password=password,
        timeout=QUERY_TIMEOUT_S,
    )
    try:
        if not client.ping():
            raise click.ClickException(
                f"cannot reach InfluxDB at {s.influx_url} (is it running? CAMPUS_INFLUX_URL)"
            )
        yield client
    except CampusError as exc:
        hint = ""
        if getattr(exc, "status", None) in (401, 403):
            hint = " (give an InfluxDB admin: --admin-user/--admin-password)"
        raise click.ClickException(f"{exc}{hint}") from None
    finally:
        client.close()


def _retention(text: str, option: str) -> Retention:
    from campus.rollups import parse_retention

    try:
        return parse_retention(text)
    except CampusError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def _chunk_days(text: str) -> int:
    from campus.timeparse import parse_duration

    try:
        days = parse_duration(text).total_seconds() / 86400
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--chunk") from None
    if days < 1 or days != int(days):
        raise click.BadParameter("must be whole days (1d, 7d, 2w)", param_hint="--chunk")
    return int(days)


@db.command("init")
@click.option("--raw-retention", default=None, help="How long raw readings are kept [90d].")
@click.option(
    "--rollup-retention", default=None, help="How long hourly and daily rollups are kept [INF]."
)
@click.option(
    "--backfill/--no-backfill",
    default=False,
    help="Also compute the rollups of every raw reading already stored.",
)
@click.option("--chunk", default="7d", show_default=True, help="Time range per backfill query.")
@admin_options
def init_command(
    raw_retention: str | None,
    rollup_retention: str | None,
    backfill: bool,
    chunk: str,
    admin_user: str | None,
    admin_password: str | None,
) -> None:
    """Create or update the database: retention policies autogen (raw),
    hourly, daily and meta, one continuous query per kind and resolution, and
    the building positions. Safe to run again: it changes only what differs
    (a new metric in campus.yaml replaces that kind's continuous queries).
    On InfluxDB 2.x and 3.x, whose buckets and tasks do the rest, it writes
    the building positions and the boards' rollup choice only.

    Retentions come from CAMPUS_INFLUX_RAW_RETENTION and
    CAMPUS_INFLUX_ROLLUP_RETENTION unless given: INF or a whole number of
    hours, days or weeks (48h, 90d, 520w).
    """
    from campus import rollups

    s = _settings()
    raw = _retention(raw_retention or s.influx_raw_retention, "--raw-retention")
    rollup = _retention(rollup_retention or s.influx_rollup_retention, "--rollup-retention")
    days = _chunk_days(chunk)
    campus = _campus(s)
    with _client(s, admin_user, admin_password) as client:
        version = rollups.server_version(client)
        if not rollups.has_continuous_queries(version):
            if backfill:
                raise click.UsageError(f"--backfill needs InfluxDB 1.x (this is {version})")
            rollups.ensure_reference(client, campus, raw, can_drop=False)
            click.echo(
                f"InfluxDB {version}: buckets and tasks keep and roll up the readings "
                "(docs/retention.md); wrote the building positions and the rollup choice"
            )
            return
        if backfill:
            # a shorter raw retention deletes old readings: roll them up first
            keep = rollups.longest(raw, rollups.current_retention(client, rollups.RP_RAW))
            for change in rollups.apply(client, campus, keep, rollup):
                click.echo(change)
            span = rollups.raw_span(client, rollups.kind_rollups(campus))
            if span is None:
                click.echo("no raw readings to roll up")
            else:
                _run_rollup(client, campus, span, days)
        changes = rollups.apply(client, campus, raw, rollup)
        for change in changes:
            click.echo(change)
        click.echo(
            f"database {s.influx_db}: raw readings kept {raw.text}, rollups {rollup.text}; "
            + ("updated" if changes else "nothing to change")
        )


@db.command("rollup")
@click.option(
    "--start", required=True, help="From (ISO time, or relative: -30d); rounded to a local day."
)
@click.option("--end", default="now", show_default=True, help="Until (ISO time or relative).")
@click.option("--chunk", default="7d", show_default=True, help="Time range per query.")
@admin_options
def rollup_command(
    start: str, end: str, chunk: str, admin_user: str | None, admin_password: str | None
) -> None:
    """Compute the hourly and daily rollups of past raw readings (continuous
    queries only cover the last hours). Running it again over the same range
    rewrites the same points."""
    from campus.timeparse import parse_time

    s = _settings()
    now = datetime.now(UTC)
    try:
        t0, t1 = parse_time(start, now), parse_time(end, now)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if t1 <= t0:
        raise click.BadParameter(f"--end ({end}) must come after --start ({start})")
    days = _chunk_days(chunk)
    campus = _campus(s)
    span = (int(t0.timestamp() * 1000), int(t1.timestamp() * 1000))
    with _client(s, admin_user, admin_password) as client:
        _run_rollup(client, campus, span, days)


def _run_rollup(client: InfluxClient, campus: Campus, span: tuple[int, int], days: int) -> None:
    """Run every backfill query over ``span`` with a progress bar."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from campus import rollups

    steps = rollups.rollup_statements(
        client.database,
        rollups.kind_rollups(campus),
        *span,
        rollups.day_offset_ms(campus.timezone),
        chunk_days=days,
    )
    if not steps:
        click.echo("no kinds of device to roll up")
        return
    written = 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("rolling up", total=len(steps))
        for step in steps:
            day = datetime.fromtimestamp(step.start_ms / 1000, UTC).date()
            bar.update(task, description=f"{step.rp} {step.kind} from {day}")
            written += rollups.run_step(client, step)
            bar.advance(task)
    first = datetime.fromtimestamp(steps[0].start_ms / 1000, UTC)
    last = datetime.fromtimestamp(max(st.end_ms for st in steps) / 1000, UTC)
    click.echo(f"rolled up {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC: {written} points")


@db.command("status")
@admin_options
def status_command(admin_user: str | None, admin_password: str | None) -> None:
    """Retention policies, continuous queries and points per policy."""
    from campus import rollups

    s = _settings()
    with _client(s, admin_user, admin_password) as client:
        rps = rollups.query_rows(client, "SHOW RETENTION POLICIES")
        counts = rollups.point_counts(client)
        click.echo(f"database {s.influx_db} at {s.influx_url}")
        click.echo("retention policies:")
        for r in rps:
            ms = rollups.go_duration_ms(r["duration"])
            kept = "forever" if ms is None else rollups.influx_duration(ms)
            points = counts.get(r["name"], {})
            per = ", ".join(f"{m} {n}" for m, n in sorted(points.items())) or "no points"
            default = "default" if r["default"] else ""
            click.echo(f"  {r['name']:<8} {'kept ' + kept:<13} {default:<7}  {per}")
        queries = rollups.installed_queries(client)
        click.echo(f"continuous queries: {len(queries)}")
        for name in sorted(queries):
            click.echo(f"  {name}")


# ----------------------------------------------------------------------- users


def _password_file(s: Settings, path: Path | None) -> Path:
    return path or s.var_dir / "influx-users.json"


def _read_passwords(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise click.ClickException(f"{path}: expected a JSON object of user: password")
    return data


def _write_passwords(path: Path, passwords: dict[str, str]) -> None:
    """Write the passwords readable by their owner only (0600 from the start)."""
    from campus.files import write_file

    path.parent.mkdir(parents=True, exist_ok=True)
    write_file(path, json.dumps(passwords, indent=2, sort_keys=True) + "\n", 0o600)


def _given_passwords(pairs: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        user, sep, password = pair.partition("=")
        if not sep or user not in SERVICE_PRIVILEGES or not password:
            raise click.BadParameter(
                f"{pair!r}: use USER=PASSWORD with USER one of {', '.join(SERVICE_PRIVILEGES)}",
                param_hint="--password",
            )
        out[user] = password
    return out


def _server_users(client: InfluxClient) -> dict[str, bool]:
    """Existing users and whether each is an admin; {} when auth has no admin yet."""
    from campus.influx import rows

    try:
        series = client.query("SHOW USERS", database=False)
    except CampusError as exc:
        if "create admin user first" in str(exc):
            return {}
        raise
    return {r["user"]: bool(r["admin"]) for r in rows(series)}


def _ensure_user(
    client: InfluxClient, user: str, password: str, exists: bool, privilege: str
) -> None:
    """Create ``user`` (or set its password) with exactly ``privilege`` on the
    database; grants already right are left alone, so a running service never
    loses its access."""
    from campus.influxql import quote_ident, quote_literal
    from campus.rollups import query_rows

    name, db = quote_ident(user), quote_ident(client.database)
    secret = quote_literal(password)
    if not exists:
        client.query(f"CREATE USER {name} WITH PASSWORD {secret}", database=False)
    else:
        client.query(f"SET PASSWORD FOR {name} = {secret}", database=False)
    grants = {
        (r["database"], r["privilege"])
        for r in query_rows(client, f"SHOW GRANTS FOR {name}", False)
    }
    if grants == {(client.database, privilege)}:
        return
    for database, _privilege in grants:
        client.query(
            f"REVOKE ALL PRIVILEGES ON {quote_ident(database)} FROM {name}", database=False
        )
    client.query(f"GRANT {privilege} ON {db} TO {name}", database=False)


def _warn_if_open(s: Settings) -> None:
    """Say so when the server answers queries without credentials."""
    from campus.influx import InfluxClient

    with InfluxClient(s.influx_url, s.influx_db, timeout=10.0) as anonymous:
        try:
            anonymous.query("SHOW DATABASES", database=False)
        except CampusError:
            return
    click.echo(
        "warning: this InfluxDB answers without credentials; the accounts only "
        "protect it once it runs with auth-enabled = true ([http] section)",
        err=True,
    )


@db.command("users")
@admin_options
@click.option(
    "--password",
    "passwords",
    multiple=True,
    metavar="USER=PASSWORD",
    help="Use this password for a service account instead of a random one (repeatable).",
)
@click.option(
    "--file",
    "path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where the services' passwords are kept [var/influx-users.json].",
)
def users_command(
    admin_user: str | None,
    admin_password: str | None,
    passwords: tuple[str, ...],
    path: Path | None,
) -> None:
    """Create the services' InfluxDB accounts with least privilege: ingest and
    tickets write, grafana, api, rules and models read (the database only).

    For a server with auth-enabled = true: the admin is created first if the
    server has none yet. Passwords are random and kept in a file readable by
    its owner only, so running again changes nothing; new ones are printed
    once as CAMPUS_INFLUX_USER / CAMPUS_INFLUX_PASSWORD lines per service.
    """
    s = _settings()
    admin_user = admin_user or s.influx_admin_user or s.influx_user
    admin_password = admin_password or s.influx_admin_password or s.influx_password
    if not admin_user or not admin_password:
        raise click.UsageError(
            "give the admin: --admin-user and --admin-password "
            "(or CAMPUS_INFLUX_ADMIN_USER / CAMPUS_INFLUX_ADMIN_PASSWORD)"
        )
    if admin_user in SERVICE_PRIVILEGES:
        raise click.BadParameter(f"{admin_user!r} is a service account", param_hint="--admin-user")
    given = _given_passwords(passwords)
    file = _password_file(s, path)
    stored = _read_passwords(file)
    with _client(s, admin_user, admin_password) as client:
        users = _server_users(client)
        if not users:
            from campus.influxql import quote_ident, quote_literal

            client.query(
                f"CREATE USER {quote_ident(admin_user)} WITH PASSWORD "
                f"{quote_literal(admin_password)} WITH ALL PRIVILEGES",
                database=False,
            )
            click.echo(f"created admin {admin_user}")
        client.create_database()
        fresh = {}
        for user, privilege in SERVICE_PRIVILEGES.items():
            password = given.get(user) or stored.get(user) or secrets.token_urlsafe(24)
            if password != stored.get(user) or user not in users:
                fresh[user] = password
            _ensure_user(client, user, password, user in users, privilege)
            stored[user] = password
    _write_passwords(file, stored)
    _warn_if_open(s)
    for user in fresh:
        click.echo(f"# {user} ({SERVICE_PRIVILEGES[user]} on {s.influx_db})")
        click.echo(f"CAMPUS_INFLUX_USER={user}")
        click.echo(f"CAMPUS_INFLUX_PASSWORD={fresh[user]}")
    unchanged = [u for u in SERVICE_PRIVILEGES if u not in fresh]
    if unchanged:
        click.echo(f"unchanged: {', '.join(unchanged)} (passwords in {file})")
