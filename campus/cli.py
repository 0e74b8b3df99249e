"""The ``campus`` command line (``campus --help`` lists everything)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import click

from campus.errors import CampusError
from campus.settings import Settings, get_settings

log = logging.getLogger("campus")


class _JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any extras."""

    _SKIP = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in self._SKIP})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler()
    if os.environ.get("CAMPUS_LOG_FORMAT", "text") == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S"
            )
        )
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler])
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise
    logging.getLogger("alembic").setLevel(logging.WARNING)  # a migration check per command


def _redacted(url: str) -> str:
    """``url`` without its password, for logs and the console."""
    from urllib.parse import urlsplit

    p = urlsplit(url)
    if p.password is None:
        return url
    host = p.netloc.rsplit("@", 1)[1]
    return p._replace(netloc=f"{p.username}:***@{host}").geturl()


def _settings() -> Settings:
    try:
        return get_settings()
    except CampusError as exc:
        raise click.ClickException(str(exc)) from None


def _install_signals(stop: Callable[[], None]) -> Callable[[], None]:
    """Call ``stop`` on SIGINT/SIGTERM; return a function that restores the old handlers."""

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("%s received, stopping", signal.Signals(signum).name)
        stop()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for s, h in old.items():
            signal.signal(s, h)

    return restore


@contextmanager
def _on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """Call ``stop`` on SIGINT/SIGTERM while the block runs."""
    restore = _install_signals(stop)
    try:
        yield
    finally:
        restore()


class _Group(click.Group):
    """Turns CampusError into a clean one-line error instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CampusError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group)
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING (default: settings).")
@click.version_option(package_name="campus-monitor")
def main(log_level: str | None) -> None:
    """Smart-campus facility monitoring: meters and sensors over MQTT into InfluxDB.

    Settings come from CAMPUS_* environment variables, a .env file and
    config/settings.yaml (see README.md).
    """
    _setup_logging(log_level or os.environ.get("CAMPUS_LOG_LEVEL", "INFO"))


# ---------------------------------------------------------------- config / devices


def _campus():  # type: ignore[no-untyped-def]
    from campus.registry import load_campus

    return load_campus(_settings().campus_file)


@main.group()
def config() -> None:
    """Check the configuration files."""


@config.command("check")
def config_check() -> None:
    """Validate campus.yaml and calendar.yaml; print what they hold."""
    from campus.calendar import load_calendar

    s = _settings()
    campus = _campus()
    load_calendar(s.calendar_file)
    kinds: dict[str, int] = {}
    for d in campus:
        kinds[d.kind] = kinds.get(d.kind, 0) + 1
    click.echo(
        f"{s.campus_file}: {len(campus.buildings)} buildings, {len(campus)} devices "
        f"({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})"
    )
    click.echo(f"{s.calendar_file}: ok")


@main.group()
def devices() -> None:
    """List registered devices and the unknown ones seen on the wire."""


@devices.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every field).")
@click.option("--building", help="Only this building.")
@click.option("--kind", help="Only this kind (power, water, hvac, dorm).")
def devices_list(as_json: bool, building: str | None, kind: str | None) -> None:
    """Every registered device: id, building, kind and metrics."""
    campus = _campus()
    devs = [
        d
        for d in campus
        if (building is None or d.building == building) and (kind is None or d.kind == kind)
    ]
    if as_json:
        click.echo(json.dumps([d.as_json() for d in devs], indent=1))
        return
    for d in devs:
        where = " ".join(
            x
            for x in (
                f"floor {d.floor}" if d.floor is not None else "",
                f"room {d.room}" if d.room else "",
            )
            if x
        )
        click.echo(f"{d.id:24} {d.building:10} {d.kind:6} {where:18} {','.join(d.metrics)}")
    click.echo(f"{len(devs)} devices", err=True)


@devices.command("unknown")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def devices_unknown(as_json: bool) -> None:
    """Devices that sent readings but are not in campus.yaml (to commission them)."""
    from campus.influx import InfluxClient
    from ingest.unknown import unknown_devices

    s = _settings()
    campus = _campus()
    with InfluxClient.from_settings(s) as client:
        found = unknown_devices(client, campus.kinds)
    if as_json:
        click.echo(json.dumps(found, indent=1))
        return
    if not found:
        click.echo("no unknown devices")
        return
    click.echo(f"{'device':24} {'building':12} {'kind':6} {'readings':>9}  first seen → last seen")
    for u in found:
        click.echo(
            f"{u['device']:24} {u['building']:12} {u['kind']:6} {u['readings']:>9}  "
            f"{u['first_seen']} → {u['last_seen']}"
        )


# ------------------------------------------------------------------------ simulate


class _Speed(click.ParamType):
    name = "speed"

    def convert(self, value: Any, param: Any, ctx: Any) -> float | None:
        if value is None or isinstance(value, float):
            return value
        if str(value) == "max":
            return None
        try:
            f = float(value)
        except ValueError:
            self.fail(f"{value!r} is not a number or 'max'", param, ctx)
        if f <= 0:
            self.fail("speed must be above 0", param, ctx)
        return f


@main.command()
@click.option(
    "--start",
    default=None,
    help="Event time to start at: ISO time, 'now' or relative (-1d, -2h). Default: now.",
)
@click.option("--end", default=None, help="Event time to stop at (same forms). Default: never.")
@click.option(
    "--speed",
    type=_Speed(),
    default=None,
    help="Event seconds per wall second, or 'max' (default: max with --end, else 1).",
)
@click.option("--seed", type=int, default=42, show_default=True, help="Random seed.")
@click.option(
    "--devices",
    "patterns",
    multiple=True,
    help="Only devices or buildings matching this glob (repeatable).",
)
@click.option(
    "--status/--no-status",
    default=True,
    show_default=True,
    help="Hold one connection per device with a retained online status and an 'offline' last will.",
)
@click.option(
    "--rate",
    type=float,
    default=None,
    help="At most this many readings per second on average (default: no limit).",
)
@click.option("--client-id", default="campus-sim", show_default=True)
@click.option(
    "--device-credentials",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="devices.csv of `campus broker config`: each status connection logs in as its "
    "device (a secured broker makes the user name the client id).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the published counts as JSON.")
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="DEVICE:KIND[:at=5m][:for=1h][:param=value]",
    help="Inject a fault (repeatable), timed from now; kinds as in config/scenarios "
    "(burst_pipe, slow_leak, feeder_outage, offline, ...).",
)
def simulate(
    start: str | None,
    end: str | None,
    speed: float | None,
    seed: int,
    patterns: tuple[str, ...],
    status: bool,
    rate: float | None,
    client_id: str,
    device_credentials: Path | None,
    as_json: bool,
    faults: tuple[str, ...],
) -> None:
    """Publish the simulated campus's readings to the broker.

    Real time by default; --speed 60 plays an hour a minute; --start/--end
    plays a range as fast as possible. Never publishes the future: once event
    time reaches now it carries on in real time.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from campus.calendar import load_calendar
    from campus.timeparse import parse_time
    from simulators.engine import CampusSimulator
    from simulators.mqtt import ReadingPublisher, StatusFleet, read_logins
    from simulators.run import SimulationRun, select_devices

    s = _settings()
    campus = _campus()
    now = datetime.now(UTC)
    try:
        t0 = parse_time(start, now) if start else now
        t1 = parse_time(end, now) if end else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if t1 is not None and t1 <= t0:
        raise click.BadParameter(
            f"--end ({t1.isoformat()}) must be after --start ({t0.isoformat()})"
        )
    if speed is None and t1 is None and start is None:
        speed = 1.0
    if speed is None and t1 is None:
        speed = None  # catch up as fast as possible, then real time
    chosen = select_devices(list(campus), list(patterns))
    if not chosen:
        raise click.BadParameter(f"no device matches {', '.join(patterns)}")
    sim = CampusSimulator(campus, load_calendar(s.calendar_file), seed=seed)
    injector = None
    if faults:
        from simulators.faults import FaultInjector, parse_fault_spec

        try:
            injector = FaultInjector(
                campus, [parse_fault_spec(f, int(now.timestamp())) for f in faults]
            )
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--fault") from None
    # Ctrl-C from here on stops cleanly (devices say offline), even while connecting.
    stop = threading.Event()
    restore = _install_signals(stop.set)
    pub = ReadingPublisher(s.mqtt, client_id)
    pub.connect()
    logins = read_logins(device_credentials) if device_credentials else None
    fleet = StatusFleet(s.mqtt, chosen, prefix=client_id, logins=logins) if status else None
    if fleet is not None:
        fleet.start()
        if not fleet.wait_online(60):
            log.warning("not every device status connection came up")
    run = SimulationRun(
        sim,
        pub.publish,
        t0.timestamp(),
        t1.timestamp() if t1 else None,
        speed=speed,
        devices={d.id for d in chosen},
        max_rate=rate,
        stop_event=stop,
        injector=injector,
        publish_status=pub.publish_retained,
    )
    mode = "as fast as possible" if speed is None else f"x{speed:g}"
    log.info(
        "simulating %d devices from %s to %s, %s, seed %d",
        len(chosen),
        t0.isoformat(timespec="seconds"),
        t1.isoformat(timespec="seconds") if t1 else "∞",
        mode,
        seed,
    )
    total = run.ticks_total()
    with _on_signals(stop.set):
        if total is not None and sys.stderr.isatty():
            with Progress(
                TextColumn("[bold]simulate"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} ticks {task.fields[ev]}"),
                TimeRemainingColumn(),
                transient=False,
            ) as bar:
                task = bar.add_task("sim", total=total, ev="")
                run.on_tick = lambda t, n: bar.update(
                    task, completed=n, ev=datetime.fromtimestamp(t, UTC).strftime("%m-%d %H:%M")
                )
                counts = run.run()
        else:
            last = [time.monotonic()]

            def report(t: int, n: int) -> None:
                if time.monotonic() - last[0] >= 10:
                    last[0] = time.monotonic()
                    log.info(
                        "event time %s, %d ticks, %d readings published",
                        datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds"),
                        n,
                        sum(run.published.values()),
                    )

            run.on_tick = report
            counts = run.run()
    acked = pub.flush()
    if fleet is not None:
        fleet.stop(clean=True)
    pub.close()
    restore()
    summary = {"published": dict(counts), "total": sum(counts.values()), "acknowledged": acked}
    if as_json:
        click.echo(json.dumps(summary))
    else:
        log.info(
            "published %d readings (%s); all acknowledged: %s",
            summary["total"],
            ", ".join(f"{k} {v}" for k, v in sorted(counts.items())),
            acked,
        )
    if not acked:
        raise click.ClickException("the broker did not acknowledge every reading")


# -------------------------------------------------------------------------- ingest


@main.command()
@click.option("--client-id", default=None, help="MQTT client id (default: settings).")
@click.option(
    "--status",
    "show_status",
    is_flag=True,
    help="Print a running ingester's figures (from its /metrics) and exit.",
)
def ingest(client_id: str | None, show_status: bool) -> None:
    """Store every reading from the broker in InfluxDB (runs until stopped).

    A reading is acknowledged to the broker only once it is in InfluxDB or in
    the on-disk spool. Metrics for Prometheus are served on
    127.0.0.1:CAMPUS_INGEST_METRICS_PORT/metrics.
    """
    from ingest.service import Ingester

    s = _settings()
    if show_status:
        _ingest_status(s)
        return
    if client_id:
        s = s.model_copy(update={"ingest_client_id": client_id})
    ingester = Ingester(s, _campus())
    log.info(
        "ingest: %s -> %s/%s, dead letters in %s",
        _redacted(s.mqtt_url),
        s.influx_url,
        s.influx_db,
        s.dead_letter_file,
    )
    with _on_signals(ingester.stop):
        ingester.run()


def _ingest_status(s: Settings) -> None:
    import httpx

    from ingest.service import status_summary

    url = f"http://127.0.0.1:{s.ingest_metrics_port}/metrics"
    try:
        text = httpx.get(url, timeout=3).text
    except httpx.HTTPError as exc:
        raise click.ClickException(f"no ingester answers at {url}: {exc}") from None
    figures = status_summary(text)
    rows = [
        ("messages received", "campus_ingest_messages_received_total"),
        ("readings decoded", "campus_ingest_readings_total"),
        ("rejected", "campus_ingest_rejected_total"),
        ("stored directly", "campus_ingest_points_stored_total{path=direct}"),
        ("spooled", "campus_ingest_points_stored_total{path=spool}"),
        ("replayed from spool", "campus_ingest_points_stored_total{path=replay}"),
        ("spool backlog (bytes)", "campus_ingest_spool_backlog_bytes"),
        ("spool full events", "campus_ingest_spool_full_total"),
        ("queued messages", "campus_ingest_queue_messages"),
        ("InfluxDB healthy", "campus_ingest_influx_healthy"),
        ("broker reconnects", "campus_ingest_broker_reconnects_total"),
        ("readings missing by seq", "campus_ingest_seq_missing_total"),
        ("  of which arrived late", "campus_ingest_seq_filled_total"),
        ("InfluxDB writes", "campus_ingest_write_seconds_count"),
    ]
    click.echo(f"ingester at {url}")
    for label, key in rows:
        click.echo(f"  {label:26} {figures.get(key, 0):>14,.0f}")
    n = figures.get("campus_ingest_write_seconds_count", 0)
    if n:
        mean = figures.get("campus_ingest_write_seconds_sum", 0) / n * 1000
        click.echo(f"  {'mean write latency (ms)':26} {mean:>14.1f}")


# --------------------------------------------------------------------- stack / up


@main.group()
def stack() -> None:
    """Manage the local Mosquitto and InfluxDB (data under var/)."""


def _services():  # type: ignore[no-untyped-def]
    from campus.stack import stack_services

    s = _settings()
    return s, stack_services(s.mqtt_url, s.influx_url, s.var_dir)


@stack.command("start")
def stack_start() -> None:
    """Start whichever of Mosquitto and InfluxDB does not answer yet (in the background)."""
    _, services = _services()
    for svc in services:
        if svc.ready():
            click.echo(f"{svc.name:10} already answering on {svc.host}:{svc.port}")
            continue
        svc.start(detach=True)
        click.echo(
            f"{svc.name:10} started on {svc.host}:{svc.port} (pid {svc.proc.pid}, "
            f"data {svc.root}, log {svc.log_file})"
        )


@stack.command("stop")
def stack_stop() -> None:
    """Stop the services that `campus stack start` started."""
    _, services = _services()
    for svc in services:
        stopped = svc.stop_detached()
        click.echo(f"{svc.name:10} {'stopped' if stopped else 'was not started by campus'}")


@stack.command("status")
def stack_status() -> None:
    """Show whether each service answers, and who started it."""
    s, services = _services()
    for svc in services:
        pid = svc.detached_pid()
        owner = f"started by campus (pid {pid})" if pid else "not started by campus"
        state = "up" if svc.ready() else "DOWN"
        click.echo(f"{svc.name:10} {state:5} {svc.host}:{svc.port}  {owner}")
    click.echo(
        f"broker URL {_redacted(s.mqtt_url)}; InfluxDB {s.influx_url} database {s.influx_db}"
    )


@main.command()
@click.option(
    "--backfill",
    default="1h",
    show_default=True,
    help="Simulate this much past first, at up to 1,500 readings/s ('0s' for none).",
)
@click.option(
    "--simulate/--no-simulate",
    "with_sim",
    default=True,
    show_default=True,
    help="Run the simulated campus.",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="DEVICE:KIND[:at=5m][:for=1h][:param=value]",
    help="Inject a fault into the simulated campus (repeatable; see campus simulate --help).",
)
def up(backfill: str, with_sim: bool, faults: tuple[str, ...]) -> None:
    """Run the whole platform locally: broker, InfluxDB, ingest, the rules engine,
    the ticket service, the API and the simulated campus.

    The simulated campus starts once the ingester and the rules engine listen.
    It first plays the last --backfill of event time at up to 1,500
    readings/s (so a broker with Debian's default queue limit keeps up), then
    carries on in real time.

    Starts Mosquitto and influxd (data under var/) only where none answers at
    the configured URLs. Ctrl-C stops everything it started.
    """
    from campus.influx import InfluxClient
    from campus.stack import stack_services
    from campus.timeparse import parse_duration

    s = _settings()
    _campus()  # fail early on a bad campus.yaml
    try:
        back = parse_duration(backfill)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    started = []
    children: list[subprocess.Popen[bytes]] = []
    stop = threading.Event()
    try:
        for svc in stack_services(s.mqtt_url, s.influx_url, s.var_dir):
            if svc.ready():
                click.echo(f"{svc.name}: using the one already on {svc.host}:{svc.port}")
                continue
            click.echo(f"{svc.name}: starting on {svc.host}:{svc.port} (data {svc.root})")
            svc.start()
            started.append(svc)
        from campus.dbcli import init_command

        # retention, rollups and the boards' reference points (idempotent)
        click.get_current_context().invoke(init_command)
        exe = [sys.executable, "-m", "campus.cli"]
        listeners = ("ingest", "rules")
        for name in listeners:
            s.ready_file(name).unlink(missing_ok=True)
        names = ["ingest", "rules", "tickets", "api"]
        children.append(subprocess.Popen([*exe, "ingest"]))
        children.append(subprocess.Popen([*exe, "rules", "run"]))
        children.append(subprocess.Popen([*exe, "tickets", "serve"]))
        children.append(subprocess.Popen([*exe, "api"]))
        if with_sim:
            # The simulated campus starts once the ingester and the rules engine
            # listen: what it publishes before the rules engine's first
            # subscription would never reach the rules.
            _wait_ready(s, listeners, children, timeout=60)
            # Paced so that a broker with Debian's default queue limit (1000
            # messages per subscriber) is not overrun while the backfill plays.
            sim_args = ["simulate", "--rate", "1500", *(f"--fault={f}" for f in faults)]
            if back.total_seconds() > 0:  # catch up (paced), then real time
                sim_args += ["--start", f"-{int(back.total_seconds())}s"]
            children.append(subprocess.Popen([*exe, *sim_args]))
            names.append("simulate")
        click.echo(
            "\nThe campus platform runs:\n"
            f"  MQTT broker   {_redacted(s.mqtt_url)}"
            "  (readings on campus/<building>/<kind>/<device>)\n"
            f"  InfluxDB      {s.influx_url}  database '{s.influx_db}'\n"
            f"  dead letters  {s.dead_letter_file}\n"
            f"  alerts        ops/alerts/<severity>/<building> and {s.alerts_log}\n"
            f"  tickets       campus tickets list  (store {s.db_url})\n"
            f"  status board  {s.public_url}/  (public; feedback form at {s.public_url}/feedback)\n"
            f"  API           {s.public_url}/docs  "
            "(token: campus users add ... && campus tokens create ...)\n"
            f"  try           curl -G {s.influx_url}/query --data-urlencode db={s.influx_db} "
            '--data-urlencode "q=SELECT count(power_kw) FROM power WHERE time > now() - 5m"\n'
            "Ctrl-C stops everything campus started.\n"
        )
        with _on_signals(stop.set), InfluxClient.from_settings(s) as influx:
            while not stop.wait(15):
                for name, c in zip(names, children, strict=True):
                    if c.poll() is not None and c.returncode != 0:
                        raise click.ClickException(f"campus {name} exited with {c.returncode}")
                _report_counts(influx, ("power", "water", "hvac", "dorm"))
    finally:
        # A second Ctrl-C (a terminal or make sends one to the whole group) must
        # not cut the orderly shutdown short; each step below has its own timeout.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for c in reversed(children):  # simulator first, then ingest (which flushes)
            if c.poll() is None:
                c.send_signal(signal.SIGINT)
                try:
                    c.wait(30)
                except subprocess.TimeoutExpired:
                    c.kill()
        for svc in reversed(started):
            click.echo(f"{svc.name}: stopping")
            svc.stop()


def _wait_ready(
    s: Settings, services: Sequence[str], children: list[subprocess.Popen[bytes]], timeout: float
) -> None:
    """Wait until each of ``services`` said it listens (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    waiting = [name for name in services if not s.ready_file(name).exists()]
    while waiting and time.monotonic() < deadline:
        if any(c.poll() is not None for c in children):
            return  # a child died: the loop below reports it
        time.sleep(0.1)
        waiting = [name for name in services if not s.ready_file(name).exists()]
    if waiting:
        click.echo(f"still waiting for {', '.join(waiting)} to subscribe; starting anyway")


def _register_subcommands() -> None:
    from api.cli import api, tokens, users
    from api.qr import qr
    from campus.broker import broker
    from campus.dbcli import db
    from dashboards.cli import dashboards
    from models.cli import model
    from rules.cli import rules
    from tickets.cli import report, tickets

    main.add_command(rules)
    main.add_command(tickets)
    main.add_command(report)
    main.add_command(api)
    main.add_command(users)
    main.add_command(tokens)
    main.add_command(qr)
    main.add_command(model)
    main.add_command(db)
    main.add_command(broker)
    main.add_command(dashboards)


_register_subcommands()


def _report_counts(influx: Any, kinds: tuple[str, ...]) -> None:
    from campus.errors import SinkError

    try:
        parts = [f"{kind} {influx.count(kind, 'time > now() - 1h')}" for kind in kinds]
        click.echo(f"InfluxDB holds, for the last hour: {', '.join(parts)} readings")
    except SinkError as exc:
        click.echo(f"InfluxDB not answering yet: {exc}")


if __name__ == "__main__":
    main()
