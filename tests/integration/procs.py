"""Helpers that run the real `campus` command line against test servers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from campus.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def campus_env(settings: Settings) -> dict[str, str]:
    """Environment for a `campus` subprocess using these settings."""
    env = dict(os.environ)
    for key, value in settings.model_dump().items():
        if value is not None:
            env[f"CAMPUS_{key.upper()}"] = str(value)
    return env


def run_campus(
    settings: Settings, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the real `campus` command line and return what it printed."""
    return subprocess.run(
        [sys.executable, "-m", "campus.cli", *args],
        env=campus_env(settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_campus(settings: Settings, *args: str, log: Path) -> subprocess.Popen[bytes]:
    """Start a long-running `campus` command (ingest) with its output in ``log``."""
    fh = log.open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "campus.cli", *args],
        env=campus_env(settings),
        cwd=ROOT,
        stdout=fh,
        stderr=subprocess.STDOUT,
    )


def wait_for(predicate, timeout: float, interval: float = 0.25):
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def quiet_port() -> int:
    """A free port below the kernel's ephemeral range: a port the kernel hands
    out (bind to 0) may be taken again as the local end of some client's
    connection before the service that was meant to listen on it starts."""
    import random
    import socket

    low = 20_000
    try:
        low_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low_ephemeral = 32_768
    for _ in range(200):
        port = random.randrange(low, max(low + 1000, low_ephemeral))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def fresh_stack_env(tmp_path: Path) -> tuple[dict[str, str], int, int]:
    """Environment pointing `campus` at free local ports where nothing answers yet."""
    mqtt_port, influx_port = quiet_port(), quiet_port()
    env = dict(os.environ)
    env.update(
        {
            "CAMPUS_API_PORT": str(quiet_port()),
            "CAMPUS_MQTT_URL": f"mqtt://127.0.0.1:{mqtt_port}",
            "CAMPUS_INFLUX_URL": f"http://127.0.0.1:{influx_port}",
            "CAMPUS_VAR_DIR": str(tmp_path / "var"),
            "CAMPUS_CONFIG_DIR": str(ROOT / "config"),
        }
    )
    return env, mqtt_port, influx_port
