"""API benchmark: latency and throughput of the campus state, the ticket list
and a one-day readings query under open-loop load.

Sets up the real thing first: an influxd of its own holding one simulated day
of the demo campus (every device, as the ingester tags it, ending now, so the
campus state sees live devices), a ticket store (SQLite by default, or the
empty PostgreSQL database of ``--db-url``) holding ``--tickets`` tickets
raised by the ticket service over the last 30 days and worked through their
states (four in five closed), and an admin token. Then it starts the API as
``campus api`` (one uvicorn process, one worker) and loads it from this
process.

Phases (``--phases``, each warmed up for two seconds first):

* ``campus``: ``GET /api/campus`` at ``--campus-rate`` (300/s);
* ``tickets``: ``GET /api/tickets`` (the default page: 50 not-closed tickets
  and their count) at ``--tickets-rate`` (50/s);
* ``readings``: ``GET /api/readings`` of one meter's ``power_kw`` over the last
  24 hours (1,440 one-minute means) at ``--readings-rate`` (10/s);
* ``building``: the same for every dorm-room sensor of a building (``temp_c``,
  87 devices, about 7,000 points) at a fifth of that rate;
* ``sequential``: both readings queries again, 30 times each, one at a time;
* ``healthz``: ``GET /healthz`` at the campus rate (the floor of the stack).

Load is open loop: request ``i`` of a phase is due at ``start + i / rate``
whatever happened to the others, and its latency runs from the moment it was
due to the moment its answer was read, so a server that falls behind shows it
in the tail instead of slowing the load down (no coordinated omission).
``throughput`` is answers per second over the phase; ``errors`` counts
answers other than 200 and failed requests; ``rss_mib`` is the server's
resident memory after the phase and ``peak_rss_mib`` its high-water mark.

    .venv/bin/python bench/api.py [--seconds 20] [--tickets 2000] [--phases ...]
        [--db-url postgresql+psycopg://postgres@127.0.0.1:5432/bench_api] [--profile DIR]

``--profile DIR`` samples the server with py-spy (``pip install py-spy``)
during each phase and writes its collapsed stacks, one file per phase, into
DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from api.accounts import add_user, create_token  # noqa: E402
from campus.calendar import load_calendar  # noqa: E402
from campus.influx import InfluxClient  # noqa: E402
from campus.lineprotocol import float_template, float_texts, series  # noqa: E402
from campus.registry import load_campus  # noqa: E402
from campus.settings import Settings  # noqa: E402
from campus.stack import Influxd, free_port  # noqa: E402
from simulators.engine import CampusSimulator  # noqa: E402
from tickets.models import Role, Source, Technician, Ticket  # noqa: E402
from tickets.service import Alert, InvalidTransition, Tickets  # noqa: E402

CONFIG = ROOT / "config"
READINGS_DEVICE = "pm-teach-1"  # a building main meter, one reading a minute
READINGS_BUILDING = "dorm-3"  # 87 devices, dorm rooms every five minutes
TRADES = {"power": "electrical", "water": "plumbing", "hvac": "hvac", "dorm": "hvac"}
TITLES = {
    "electrical": ["Power loss", "Breaker tripped", "Meter silent", "Voltage out of range"],
    "plumbing": ["Water leak", "No hot water", "Low pressure", "Night flow too high"],
    "hvac": ["Room too hot", "Chiller stopped", "Fan not running", "CO2 too high"],
    "general": ["Door lock broken", "Lights out in corridor"],
}


def fill_influx(settings: Settings, days: float = 1.0) -> tuple[int, float]:
    """``days`` of the simulated campus up to now, written as the ingester
    writes it (measurement = kind, registry tags); points and seconds taken."""
    t0 = time.perf_counter()
    campus = load_campus(settings.campus_file)
    sim = CampusSimulator(campus, load_calendar(settings.calendar_file), seed=42)
    end = int(time.time()) // 60 * 60
    templates: dict[tuple[str, tuple[str, ...]], str] = {}
    lines: list[str] = []
    n = 0
    with InfluxClient.from_settings(settings, timeout=60) as client:
        client.create_database()
        for t in range(sim.first_tick(end - days * 86_400), end + 1, sim.step):
            for device, metrics in sim.readings_at(t):
                key = (device.id, tuple(metrics))
                tpl = templates.get(key)
                if tpl is None:
                    head = series(device.kind, device.influx_tags())
                    tpl = templates[key] = float_template(head, metrics)
                lines.append(tpl % (*float_texts(list(metrics.values())), t * 1000))
            if len(lines) >= 20_000:
                client.write(lines)
                n += len(lines)
                lines = []
        if lines:
            client.write(lines)
            n += len(lines)
    return n, time.perf_counter() - t0


def fill_tickets(tickets: Tickets, count: int, seed: int = 7) -> tuple[dict[str, int], float]:
    """``count`` tickets raised over the last 30 days on random devices, by rule
    or by hand, most of them worked to closed (as a month of a campus looks):
    states by how many."""
    t0 = time.perf_counter()
    rng = random.Random(seed)
    devices = list(load_campus(CONFIG / "campus.yaml"))
    with tickets.store.session() as s:
        techs = sorted(s.scalars(select(Technician.id)))
    now = datetime.now(UTC)
    states: dict[str, int] = {}
    for i in range(count):
        d = rng.choice(devices)
        trade = TRADES.get(d.kind, "general") if rng.random() < 0.9 else "general"
        by_rule = rng.random() < 0.7
        at = now - timedelta(seconds=rng.uniform(0, 30 * 86_400))
        raised = tickets.raise_alert(
            Alert(
                dedup_key=f"bench:{i}",
                source=Source.rule if by_rule else Source.manual,
                severity=rng.choices(["P1", "P2", "P3", "P4"], [1, 3, 8, 4])[0],
                building=d.building,
                trade=trade,
                title=f"{rng.choice(TITLES[trade])} ({d.building})",
                description="Raised for the API benchmark.",
                device=d.id if by_rule else None,
                rule=f"bench-{d.kind}" if by_rule else None,
                at=at,
            ),
            actor="rules" if by_rule else "office",
        )
        tid = raised.ticket_id
        who = rng.choice(techs)
        stop = rng.choices(
            ["open", "acknowledged", "assigned", "in_progress", "resolved", "closed"],
            [5, 3, 3, 4, 5, 80],
        )[0]
        try:
            for step in ("acknowledged", "assigned", "in_progress", "resolved", "closed"):
                if stop == "open":
                    break
                if step == "acknowledged":
                    tickets.acknowledge(tid, who)
                elif step == "assigned":
                    tickets.assign(tid, "office", technician=who)
                elif step == "in_progress":
                    tickets.start(tid, who)
                elif step == "resolved":
                    tickets.resolve(tid, who, "repaired")
                else:
                    tickets.close(tid, "office", force=True)
                if step == stop:
                    break
            if rng.random() < 0.3:
                tickets.comment(tid, who, "Checked on site; parts ordered.")
        except InvalidTransition:
            pass  # the key's open ticket was updated instead of raised: its state stays
        state = tickets.get(tid).state
        states[state] = states.get(state, 0) + 1
    return states, time.perf_counter() - t0


class Server:
    """``campus api`` in a child process."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "campus.cli", "api", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"the API exited with {self.proc.returncode}; see {log}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"the API did not answer in 60 s; see {log}")
            time.sleep(0.1)

    def memory_mib(self) -> tuple[float, float]:
        """Resident memory now and its high-water mark."""
        fields = {}
        for row in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = row.partition(":")
            fields[key] = value.strip()
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


async def _load(
    url: str,
    token: str,
    path: str,
    params: dict[str, str],
    rate: float,
    seconds: float,
    connections: int = 64,
) -> dict[str, Any]:
    """Open-loop load at ``rate`` requests/s for ``seconds`` over ``connections``
    keep-alive connections: latencies from when each request was due.

    The client is a minimal HTTP/1.1 one on asyncio streams (a request is a
    few bytes written, an answer its head and Content-Length bytes read): httpx
    costs about 2 ms of CPU a request, which on two cores shared with the server
    would measure the client."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = path + ("?" + urlencode(params) if params else "")
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nAccept: application/json\r\n\r\n"
    ).encode()
    loop = asyncio.get_running_loop()
    n = int(rate * seconds)
    due_times: asyncio.Queue[float | None] = asyncio.Queue()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    failures = 0
    start = loop.time() + 0.1

    async def produce() -> None:
        for i in range(n):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            due_times.put_nowait(due)
        for _ in range(connections):
            due_times.put_nowait(None)

    async def connection() -> None:
        nonlocal failures
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while (due := await due_times.get()) is not None:
                status = None
                for _attempt in range(2):  # once more on a new connection if the
                    try:  # server had closed an idle one (keep-alive timeout)
                        writer.write(request)
                        status = await _answer(reader)
                        break
                    except (OSError, asyncio.IncompleteReadError, ValueError):
                        writer.close()
                        reader, writer = await asyncio.open_connection(host, port)
                if status is None:
                    failures += 1
                    continue
                latencies.append(loop.time() - due)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(produce(), *(connection() for _ in range(connections)))
    elapsed = loop.time() - start
    latencies.sort()
    return {
        "requests": n,
        "rate": rate,
        "throughput": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": _pct(latencies, 50) * 1000,
        "p90_ms": _pct(latencies, 90) * 1000,
        "p99_ms": _pct(latencies, 99) * 1000,
        "max_ms": (latencies[-1] if latencies else 0.0) * 1000,
        "errors": failures + sum(v for k, v in statuses.items() if k != 200),
        "statuses": statuses,
    }


async def _answer(reader: asyncio.StreamReader) -> int:
    """Read one HTTP/1.1 answer (Content-Length or chunked); its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = None
    chunked = False
    for row in head.split(b"\r\n")[1:]:
        name, _, value = row.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


def _pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


async def _sequential(
    url: str, token: str, path: str, params: dict[str, str], count: int
) -> dict[str, Any]:
    """One request at a time (the latency of a query alone)."""
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as client:
        times = []
        points = 0
        for _ in range(count):
            t = time.perf_counter()
            r = await client.get(path, params=params)
            times.append(time.perf_counter() - t)
            r.raise_for_status()
            body = r.json()
            points = sum(len(s.get("points", [])) for s in body.get("series", []))
    times.sort()
    return {
        "requests": count,
        "p50_ms": statistics.median(times) * 1000,
        "p99_ms": _pct(times, 99) * 1000,
        "max_ms": times[-1] * 1000,
        "points": points,
    }


def _profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy sampling the server (every thread) for ``seconds``: collapsed
    stacks in ``out``.txt (flamegraph.pl or speedscope read them)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("py-spy is not installed (pip install py-spy): no profile", file=sys.stderr)
        return None
    duration = str(int(seconds) + 1)
    return subprocess.Popen(
        [spy, "record", "-p", str(pid), "-d", duration, "-f", "raw", "-t", "-o", f"{out}.txt"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=20, help="length of each loaded phase")
    ap.add_argument("--tickets", type=int, default=2000)
    ap.add_argument("--days", type=float, default=1.0, help="simulated days in InfluxDB")
    ap.add_argument("--campus-rate", type=float, default=300)
    ap.add_argument("--tickets-rate", type=float, default=50)
    ap.add_argument("--readings-rate", type=float, default=10)
    ap.add_argument(
        "--db-url", default="", help="an empty ticket store (default: SQLite in a temp dir)"
    )
    ap.add_argument(
        "--phases",
        default="campus,tickets,readings,building,sequential",
        help="which to run (also: healthz)",
    )
    ap.add_argument("--profile", type=Path, help="py-spy flame graphs of the server per phase")
    args = ap.parse_args()
    phases = args.phases.split(",")

    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    influxd = Influxd(tmp / "influxd", free_port())
    influxd.start(timeout=60)
    server: Server | None = None
    setup: dict[str, Any] = {}
    results: dict[str, dict[str, Any]] = {}
    try:
        port = free_port()
        env = dict(os.environ)
        env.update(
            {
                "CAMPUS_INFLUX_URL": influxd.url,
                "CAMPUS_INFLUX_DB": "campus",
                "CAMPUS_VAR_DIR": str(tmp / "var"),
                "CAMPUS_CONFIG_DIR": str(CONFIG),
                "CAMPUS_LOG_LEVEL": "WARNING",
                "CAMPUS_API_PORT": str(port),
            }
        )
        if args.db_url:
            env["CAMPUS_DB_URL"] = args.db_url
        settings = Settings(
            influx_url=influxd.url,
            influx_db="campus",
            var_dir=tmp / "var",
            config_dir=CONFIG,
            db_url=args.db_url,
        )
        print("... filling InfluxDB", file=sys.stderr, flush=True)
        setup["points"], setup["influx_fill_s"] = fill_influx(settings, args.days)
        print("... filling the ticket store", file=sys.stderr, flush=True)
        from tickets.cli import open_tickets

        tickets = open_tickets(settings)
        with tickets.store.session() as s:
            if s.scalar(select(func.count()).select_from(Ticket)):
                raise SystemExit(f"the store of {args.db_url} holds tickets: give an empty one")
        states, setup["tickets_fill_s"] = fill_tickets(tickets, args.tickets)
        setup["tickets"] = sum(states.values())
        setup["open"] = setup["tickets"] - states.get("closed", 0)
        add_user(tickets.store, "bench-admin", "Bench", Role.admin)
        token = create_token(tickets.store, "bench-admin")
        tickets.store.close()
        print("... starting campus api", file=sys.stderr, flush=True)
        server = Server(env, port, tmp / "api.log")
        setup["start_rss_mib"], _ = server.memory_mib()
        plan = {
            "healthz": ("/healthz", {}, args.campus_rate),
            "campus": ("/api/campus", {}, args.campus_rate),
            "tickets": ("/api/tickets", {}, args.tickets_rate),
            "readings": (
                "/api/readings",
                {"device": READINGS_DEVICE, "metric": "power_kw", "start": "-24h"},
                args.readings_rate,
            ),
            "building": (
                "/api/readings",
                {"building": READINGS_BUILDING, "metric": "temp_c", "start": "-24h"},
                max(1.0, args.readings_rate / 5),
            ),
        }
        for name in phases:
            if name == "sequential":
                continue
            path, params, rate = plan[name]
            print(f"... {name}", file=sys.stderr, flush=True)
            asyncio.run(_load(server.url, token, path, params, min(rate, 20), 2))  # warm up
            spy = None
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
                spy = _profile(server.proc.pid, args.seconds, args.profile / name)
            r = asyncio.run(_load(server.url, token, path, params, rate, args.seconds))
            if spy is not None:
                spy.wait(60)
            r["rss_mib"], r["peak_rss_mib"] = server.memory_mib()
            results[name] = r
        if "sequential" in phases:
            for name in ("readings", "building"):
                path, params, _ = plan[name]
                results[f"{name}1"] = asyncio.run(_sequential(server.url, token, path, params, 30))
    finally:
        if server is not None:
            server.stop()
        influxd.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}"
    )
    print(
        f"setup    points={setup['points']:,}  influx_fill_s={setup['influx_fill_s']:.1f}  "
        f"tickets={setup['tickets']:,}  open={setup['open']:,}  "
        f"tickets_fill_s={setup['tickets_fill_s']:.1f}  "
        f"store={'postgresql' if args.db_url else 'sqlite'}  "
        f"server=campus api (1 process, http={_have('httptools', 'h11')}, "
        f"loop={_have('uvloop', 'asyncio')})  start_rss_mib={setup['start_rss_mib']:.1f}"
    )
    for name, figures in results.items():
        shown = {k: v for k, v in figures.items() if k != "statuses"}
        print(
            f"{name:10} "
            + "  ".join(
                f"{k}={v:,.1f}" if isinstance(v, float) else f"{k}={v:,}" for k, v in shown.items()
            )
            + (
                f"  statuses={figures['statuses']}"
                if set(figures.get("statuses", {})) - {200}
                else ""
            )
        )
    targets = [("campus", 100.0)] + [
        (name, 300.0) for name in ("readings", "building", "readings1", "building1")
    ]
    for name, target in targets:
        if name in results:
            p99 = results[name]["p99_ms"]
            verdict = "met" if p99 < target and not results[name].get("errors") else "NOT MET"
            print(f"target {name}: p99 {p99:,.1f} ms < {target:.0f} ms: {verdict}")


def _have(fast: str, default: str) -> str:
    """What uvicorn uses: ``fast`` when it is installed (uvicorn[standard]), else ``default``."""
    return fast if importlib.util.find_spec(fast) is not None else default


if __name__ == "__main__":
    main()
