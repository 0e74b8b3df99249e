"""Shared pieces of the fault tests: a stream of simulated readings through a
real broker, a real `campus ingest` and a real influxd, and the check that
InfluxDB holds every reading, counted per device."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from campus.influx import InfluxClient
from campus.registry import Campus
from campus.settings import Settings

from .procs import start_campus, wait_for

KINDS = ("power", "water", "hvac", "dorm")
START = datetime(2026, 10, 20, 0, 0, tzinfo=UTC)


@dataclass
class Stream:
    """A `campus simulate` run publishing ``hours`` of the campus at ``rate``/s."""

    proc: subprocess.Popen[bytes]
    log: Path
    hours: float

    def wait(self, timeout: float = 300) -> dict[str, int]:
        """Wait for the end; return what the simulator published, by kind."""
        assert self.proc.wait(timeout) == 0, self.log.read_text()[-3000:]
        lines = [ln for ln in self.log.read_text().splitlines() if ln.startswith("{")]
        summary = json.loads(lines[-1])
        assert summary["acknowledged"], summary
        return dict(summary["published"])


def stream(settings: Settings, tmp: Path, hours: float, rate: float, devices: str = "*") -> Stream:
    """Start publishing ``hours`` of simulated readings (from START) at ``rate`` per second."""
    end = START.timestamp() + hours * 3600
    log = tmp / f"sim-{datetime.now().timestamp():.0f}.log"
    proc = start_campus(
        settings,
        "simulate",
        "--start",
        START.isoformat(),
        "--end",
        datetime.fromtimestamp(end, UTC).isoformat(),
        "--rate",
        str(rate),
        "--no-status",
        "--json",
        "--devices",
        devices,
        log=log,
    )
    return Stream(proc, log, hours)


def expected_per_device(campus: Campus, hours: float, devices: str = "*") -> Counter[str]:
    """Readings each device publishes in ``hours`` from START."""
    import fnmatch

    return Counter(
        {
            d.id: int(hours * 3600 // d.interval_s)
            for d in campus
            if fnmatch.fnmatchcase(d.id, devices) or fnmatch.fnmatchcase(d.building, devices)
        }
    )


def stored_per_device(influx: InfluxClient) -> Counter[str]:
    """Points per device in InfluxDB (max over fields, so one per reading)."""
    out: Counter[str] = Counter()
    for kind in KINDS:
        try:
            series = influx.query(f'SELECT count(*) FROM "{kind}" GROUP BY "device"')
        except Exception:
            return Counter()
        for s in series:
            out[s["tags"]["device"]] = int(max(v or 0 for v in s["values"][0][1:]))
    return out


def wait_all_stored(influx: InfluxClient, want: Counter[str], timeout: float) -> Counter[str]:
    """Wait until InfluxDB holds every wanted reading; return what it holds."""
    wait_for(lambda: stored_per_device(influx) == want, timeout, interval=1.0)
    return stored_per_device(influx)


def lost(want: Counter[str], got: Counter[str]) -> int:
    """Readings published and not stored."""
    return sum((want - got).values())


def start_ingest(settings: Settings, tmp: Path, name: str = "ingest"):
    """`campus ingest` as a child; waits until it has subscribed."""
    log = tmp / f"{name}-{datetime.now().timestamp():.3f}.log"
    proc = start_campus(settings, "ingest", log=log)
    assert wait_for(lambda: "subscribing" in log.read_text(), 30), log.read_text()
    return proc, log


def stop_ingest(proc: subprocess.Popen[bytes]) -> None:
    """Stop `campus ingest` with Ctrl-C; it must exit cleanly."""
    import signal

    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 0


def assert_every_reading_stored(
    influx: InfluxClient, campus: Campus, hours: float, timeout: float = 120
) -> Counter[str]:
    """Wait for, then assert, InfluxDB holding each device's every reading, once."""
    want = expected_per_device(campus, hours)
    got = wait_all_stored(influx, want, timeout)
    assert lost(want, got) == 0 and got == want
    return want
