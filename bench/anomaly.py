"""Anomaly model benchmark: training time and online scoring cost per detector.

For each detector: fit on three weeks of a simulated teaching-floor power
meter (one reading a minute, 30,240 readings), then score readings one at a
time through the rules engine's scorer (``models.scorer.ModelScorer``, the
path `campus rules run` takes for one-reading messages), then again as
batch payloads of 60 readings (one vectorised call per message, as
``Engine.feed_many`` scores them), and print fit seconds, microseconds per
scored reading and readings/s both ways, and peak RSS.

    .venv/bin/python bench/anomaly.py [--readings 2000] [--detectors seasonal,regressor]
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from campus.calendar import load_calendar  # noqa: E402
from campus.registry import load_campus  # noqa: E402
from models.detectors import make  # noqa: E402
from models.registry import Registry  # noqa: E402
from models.scorer import ModelScorer  # noqa: E402
from models.simeval import CASES, START, TRAIN, simulate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readings", type=int, default=2000, help="Readings scored online.")
    ap.add_argument("--detectors", default="seasonal,regressor,forest,drift,zscore,static")
    args = ap.parse_args()
    print(f"command: python bench/anomaly.py {' '.join(sys.argv[1:])}".rstrip())
    print(
        f"machine: {platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores, "
        f"Python {platform.python_version()}, {platform.platform()}"
    )
    campus = load_campus(ROOT / "config" / "campus.yaml")
    calendar = load_calendar(ROOT / "config" / "calendar.yaml")
    case = CASES[0]
    frame = simulate(case, campus, calendar)
    train = frame[frame.index < START + TRAIN]
    live = frame[frame.index >= START + TRAIN].iloc[: args.readings]
    device = campus.get(case.device)
    assert device is not None
    for name in args.detectors.split(","):
        t0 = time.perf_counter()
        model = make(name, calendar=calendar).fit(train)
        fit_s = time.perf_counter() - t0
        with tempfile.TemporaryDirectory() as tmp:
            registry = Registry(Path(tmp))
            registry.save(device.id, case.metric, model, {"rows": len(train)})
            scorer = ModelScorer(registry)
            # the week before the live readings, as a running engine would have seen it
            week = train.iloc[-7 * 1440 :]["value"]
            past = [(int(ts.value // 1_000_000), float(v)) for ts, v in week.items()]
            scorer.prime(device, past)
            run = [
                (int(ts.value // 1_000_000), {case.metric: float(v)})
                for ts, v in live["value"].items()
            ]
            t0 = time.perf_counter()
            for ts_ms, metrics in run:
                scorer.score(device, ts_ms, metrics)
            per = (time.perf_counter() - t0) / len(live)
            # the same readings as batch payloads of 60: one vectorised call per message
            batched = ModelScorer(registry)
            batched.prime(device, past)
            t0 = time.perf_counter()
            for i in range(0, len(run), 60):
                batched.prepare(device, run[i : i + 60])
            per60 = (time.perf_counter() - t0) / len(live)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{name:<10} train_readings={len(train):,}  fit_s={fit_s:.2f}  "
            f"online_us_per_reading={per * 1e6:,.0f}  online_per_s={1 / per:,.0f}  "
            f"batch60_us_per_reading={per60 * 1e6:,.0f}  batch60_per_s={1 / per60:,.0f}  "
            f"peak_rss_mib={rss:.0f}"
        )


if __name__ == "__main__":
    main()
