"""Rules engine benchmark: readings evaluated per second per core, in process.

The shipped rule set (config/rules.yaml) on the demo campus, fed simulated
readings that were generated beforehand, so only the engine is timed: no
MQTT, no JSON, no I/O. Time-driven checks advance once per simulated minute,
as the live engine's clock does.

    .venv/bin/python bench/rules.py [--hours 6]
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

from campus.calendar import load_calendar  # noqa: E402
from campus.registry import load_campus  # noqa: E402
from rules.engine import Engine  # noqa: E402
from rules.model import load_rules  # noqa: E402
from simulators.engine import CampusSimulator  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--hours", type=float, default=6.0, help="simulated hours to evaluate")
    ap.add_argument("--start", default="2026-10-13T00:00:00+08:00")
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


if __name__ == "__main__":
    main()
