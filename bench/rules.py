"""Rules engine benchmark: readings evaluated per second per core, in process.

The shipped rule set (config/rules.yaml) on the demo campus, fed simulated
readings that were generated beforehand, so only the engine is timed: no
MQTT, no JSON, no I/O. Time-driven checks advance once per simulated minute,
as the live engine's clock does.

With ``--live``, also the publish-to-alert latency of the real `campus rules
run` on a real Mosquitto: a probe room's smoke detector trips and clears
every few hundred milliseconds (in event time, six minutes apart, so the
shipped `dorm-smoke` rule fires and resolves each cycle) while worker
processes publish a background load of power-meter readings, and each firing
alert is timed from the publication of the reading that caused it to its
arrival on ops/alerts.

    .venv/bin/python bench/rules.py [--hours 6] [--live] [--load 2000]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from campus.calendar import load_calendar  # noqa: E402
from campus.registry import load_campus  # noqa: E402
from rules.engine import Engine  # noqa: E402
from rules.model import load_rules  # noqa: E402
from simulators.engine import CampusSimulator  # noqa: E402


def live(load: float, seconds: float) -> dict[str, float]:
    """Publish-to-alert latency of `campus rules run` under a background load."""
    from bench.ingest import _paced_worker
    from campus.stack import Mosquitto, free_port

    tmp = Path(tempfile.mkdtemp(prefix="bench-rules-"))
    broker = Mosquitto(tmp / "mosquitto", free_port())
    broker.start()
    env = dict(os.environ)
    env.update(
        {
            "CAMPUS_MQTT_URL": broker.url,
            "CAMPUS_VAR_DIR": str(tmp / "var"),
            "CAMPUS_CONFIG_DIR": str(ROOT / "config"),
            "CAMPUS_LOG_LEVEL": "WARNING",
        }
    )
    engine = subprocess.Popen(
        [sys.executable, "-m", "campus.cli", "rules", "run"], env=env, cwd=ROOT
    )
    arrived: dict[tuple[str, int], float] = {}
    lock = threading.Lock()

    def on_message(c, u, msg):  # type: ignore[no-untyped-def]
        doc = json.loads(msg.payload)
        if doc["device"] == PROBE:
            key = (doc["state"], int(datetime.fromisoformat(doc["ts"]).timestamp() * 1000))
            with lock:
                arrived.setdefault(key, time.perf_counter())

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-rules-sub")
    sub.on_message = on_message
    sub.connect(broker.host, broker.port)
    sub.subscribe("ops/alerts/#", qos=1)
    sub.loop_start()
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-rules-probe")
    pub.connect(broker.host, broker.port)
    pub.loop_start()
    # Steady state: a first smoke alarm must come back before anything is timed.
    # Event time runs 18 minutes a cycle, about three cycles a second: start far
    # enough back that the probe never reaches the future (the decoder refuses it).
    ts = int(time.time() * 1000) - int((seconds / 0.3 + 100) * 3 * 360_000)
    deadline = time.monotonic() + 60
    while not arrived and time.monotonic() < deadline:
        ts += 360_000
        body = {"ts": ts, "metrics": {"smoke": 1.0}}
        pub.publish(PROBE_TOPIC, json.dumps(body), qos=1)
        time.sleep(0.5)
    for _ in range(2):  # and clear it
        ts += 360_000
        pub.publish(PROBE_TOPIC, json.dumps({"ts": ts, "metrics": {"smoke": 0.0}}), qos=1)
    time.sleep(0.5)
    ts += 360_000
    pool = mp.Pool(2)
    load_job = pool.map_async(
        _paced_worker, [(broker.host, broker.port, load / 2, seconds, w) for w in range(2)]
    )
    sent: dict[tuple[str, int], float] = {}
    cycle = 0
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        # smoke, then clear twice 6 min apart (clear_for 5m): one firing, one resolved
        for k, smoke in enumerate((1.0, 0.0, 0.0)):
            t = ts + (cycle * 3 + k) * 360_000
            body = {"ts": t, "metrics": {"temp_c": 22.0, "humidity_pct": 50.0, "co2_ppm": 600.0,
                                          "occupancy": 1.0, "smoke": smoke}}  # fmt: skip
            at = time.perf_counter()
            pub.publish(PROBE_TOPIC, json.dumps(body), qos=1)
            if k == 0:  # resolutions are not timed: live, the clock may resolve them first
                sent[("firing", t)] = at
            time.sleep(0.1)
        cycle += 1
    published = sum(load_job.get(120))
    pool.close()
    time.sleep(2)
    engine.send_signal(signal.SIGINT)
    engine.wait(30)
    for c in (pub, sub):
        c.loop_stop()
        c.disconnect()
    broker.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    lat = sorted((arrived[k] - v) * 1000 for k, v in sent.items() if k in arrived)
    return {
        "load_per_s": published / seconds,
        "alerts_expected": len(sent),
        "alerts_received": len(lat),
        "p50_ms": statistics.median(lat) if lat else float("nan"),
        "p99_ms": lat[max(0, int(len(lat) * 0.99) - 1)] if lat else float("nan"),
        "max_ms": lat[-1] if lat else float("nan"),
    }


PROBE = "dorm-1-r102"
PROBE_TOPIC = "campus/dorm-1/dorm/dorm-1-r102"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--hours", type=float, default=6.0, help="simulated hours to evaluate")
    ap.add_argument("--start", default="2026-10-13T00:00:00+08:00")
    ap.add_argument("--live", action="store_true", help="also measure publish-to-alert latency")
    ap.add_argument("--load", type=float, default=2000, help="background readings/s (--live)")
    ap.add_argument("--seconds", type=float, default=60, help="how long the live phase runs")
    args = ap.parse_args()
    campus = load_campus(ROOT / "config" / "campus.yaml")
    calendar = load_calendar(ROOT / "config" / "calendar.yaml")
    rules = load_rules(ROOT / "config" / "rules.yaml", campus)
    sim = CampusSimulator(campus, calendar)
    start = int(datetime.fromisoformat(args.start).timestamp())
    ticks = []
    t = sim.first_tick(start)
    while t < start + args.hours * 3600:
        ticks.append((t * 1000, [(d.id, m) for d, m in sim.readings_at(t)]))
        t += sim.step
    n = sum(len(r) for _, r in ticks)
    engine = Engine(rules, campus, calendar)
    events = 0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for ts, readings in ticks:
        for device, metrics in readings:
            events += len(engine.feed(device, ts, metrics))
        events += len(engine.advance(ts))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}"
    )
    print(
        f"rules={len(rules)}  pairs={len(engine.slots):,}  readings={n:,}  "
        f"evaluations={engine.stats.evaluations:,}  events={events}"
    )
    print(
        f"readings_per_s_per_core={n / cpu:,.0f}  wall_s={wall:.2f}  "
        f"cpu_us_per_reading={cpu / n * 1e6:.2f}"
    )
    if args.live:
        r = live(args.load, args.seconds)
        print("live     " + "  ".join(f"{k}={v:,.1f}" for k, v in r.items()))


if __name__ == "__main__":
    main()
