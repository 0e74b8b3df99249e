"""Ingest throughput and memory: drain a backlog of simulated readings.

Starts its own influxd and Mosquitto on free ports, registers the ingester's
persistent session, publishes N hours of the simulated demo campus while the
ingester is offline (the broker queues them), then starts `campus ingest` and
times how long it takes until InfluxDB holds every reading. Prints readings/s,
the ingester's peak RSS and the command that produced the figures.

    .venv/bin/python bench/ingest_throughput.py --hours 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from campus.influx import InfluxClient  # noqa: E402
from campus.stack import Influxd, Mosquitto, free_port  # noqa: E402


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hours", type=float, default=2.0, help="simulated hours to publish")
    ap.add_argument("--batch-size", type=int, default=5000)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    influxd = Influxd(tmp / "influxd", free_port())
    broker = Mosquitto(tmp / "mosquitto", free_port())
    influxd.start(timeout=60)
    broker.start()
    env = dict(os.environ)
    env.update(
        {
            "CAMPUS_MQTT_URL": broker.url,
            "CAMPUS_INFLUX_URL": influxd.url,
            "CAMPUS_INFLUX_DB": "bench",
            "CAMPUS_VAR_DIR": str(tmp / "var"),
            "CAMPUS_CONFIG_DIR": str(ROOT / "config"),
            "CAMPUS_INGEST_CLIENT_ID": "bench-ingest",
            "CAMPUS_INGEST_BATCH_SIZE": str(args.batch_size),
            "CAMPUS_LOG_LEVEL": "WARNING",
        }
    )
    cli = [sys.executable, "-m", "campus.cli"]
    client = InfluxClient(influxd.url, "bench")
    try:
        # 1. register the persistent session, then go offline
        ing = subprocess.Popen([*cli, "ingest"], env=env, cwd=ROOT)
        time.sleep(3)
        ing.send_signal(signal.SIGINT)
        ing.wait(30)
        # 2. publish the backlog
        end = time.time() - 600
        start = end - args.hours * 3600
        t0 = time.monotonic()
        out = subprocess.run(
            [
                *cli,
                "simulate",
                "--start",
                str(start_iso(start)),
                "--end",
                str(start_iso(end)),
                "--no-status",
                "--json",
            ],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        pub_s = time.monotonic() - t0
        total = json.loads(out.stdout.splitlines()[-1])["total"]
        # 3. drain it
        t0 = time.monotonic()
        ing = subprocess.Popen([*cli, "ingest"], env=env, cwd=ROOT)
        stored = 0
        while time.monotonic() - t0 < 600:
            try:
                stored = sum(client.count(k) for k in ("power", "water", "hvac", "dorm"))
            except Exception:
                stored = 0
            if stored >= total:
                break
            time.sleep(0.2)
        drain_s = time.monotonic() - t0
        rss = peak_rss_mib(ing.pid)
        ing.send_signal(signal.SIGINT)
        ing.wait(60)
    finally:
        client.close()
        broker.stop()
        influxd.stop()
    print(f"command: {' '.join(sys.argv)}")
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    print(f"readings published: {total} in {pub_s:.1f} s ({total / pub_s:.0f}/s, simulator)")
    print(
        f"readings stored:    {stored} in {drain_s:.1f} s ({stored / drain_s:.0f}/s, "
        f"ingest drain incl. start-up)"
    )
    print(f"ingester peak RSS:  {rss:.0f} MiB")


def start_iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


if __name__ == "__main__":
    main()
