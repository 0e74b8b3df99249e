"""Detectors against labelled simulated faults that rules cannot name: a slow
base-load creep, a changed weekday shape (nights that stay high) and an
efficiency loss (more power for the same cooling).

Each case simulates one device of the demo campus for five term weeks, twice
from the same seed: once with the fault from the start of the fifth week, and
once without. The detector learns the first three weeks, then scores the last
two of both runs. What is counted is what a technician would see through the
shipped anomaly rule (score above 0.8 for 30 minutes):

* ``false_alerts``: alerts without the fault, in the fourth and fifth weeks
  (two normal weeks);
* ``delay_h``: hours from the fault's start to the first alert the fault
  caused: one in the faulted fifth week with no alert of the run without the
  fault within two hours of it (None: not found within the week). A detector
  that alerts at every morning ramp does not get credit for the ramps that
  happen to fall in the fault week.

``campus model evaluate --simulated`` prints the table; the detector each
device kind uses (``models.choice.MODELLED``) is the one whose results cost
least (:func:`cost`: a missed fault 1, a false alert 0.25, a week's delay 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from campus.calendar import AcademicCalendar
from campus.registry import Campus
from models.detectors import make
from simulators.engine import CampusSimulator
from simulators.faults import Fault, FaultInjector

START = datetime(2026, 10, 12, tzinfo=UTC)  # a term Monday after the National Day week
TRAIN = timedelta(weeks=3)
NORMAL = timedelta(weeks=1)
FAULTED = timedelta(weeks=1)
THRESHOLD = 0.8  # the shipped anomaly rule's (config/rules.yaml)
FOR = timedelta(minutes=30)


@dataclass(frozen=True)
class Case:
    """One labelled fault on one device."""

    kind: str
    device: str
    metric: str
    fault: str
    params: dict[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.fault} on {self.device}"


# hvac: units that run in November (the chillers rest once the cooling season ends)
CASES: tuple[Case, ...] = (
    Case("power", "pm-teach-1-f1", "power_kw", "creep"),
    Case("power", "pm-dorm-1-f2", "power_kw", "weekday_shape"),
    Case("water", "wm-teach-1-f1", "flow_lpm", "creep"),
    Case("water", "wm-dorm-1-f1", "flow_lpm", "weekday_shape"),
    Case("hvac", "fau-dorm-1", "power_kw", "efficiency_loss"),
    Case("hvac", "ahu-teach-1-1", "power_kw", "efficiency_loss"),
)


def simulate(
    case: Case, campus: Campus, calendar: AcademicCalendar, seed: int = 1, fault: bool = True
) -> pd.DataFrame:
    """Five weeks of the case's metric (``value`` column), with the fault in the
    last unless ``fault`` is False."""
    start = int(START.timestamp())
    fault_at = start + int((TRAIN + NORMAL).total_seconds())
    end = fault_at + int(FAULTED.total_seconds())
    sim = CampusSimulator(campus, calendar, seed=seed, only={case.device})
    faults = [Fault(case.device, case.fault, fault_at, None, case.params)] if fault else []
    injector = FaultInjector(campus, faults)
    times: list[int] = []
    values: list[float] = []
    t = sim.first_tick(start)
    while t < end:
        due = [(d, m) for d, m in sim.readings_at(t) if d.id == case.device]
        for _dev, metrics in injector.apply(t, due).readings:
            if case.metric in metrics:
                times.append(t)
                values.append(float(metrics[case.metric]))
        t += sim.step
    index = pd.to_datetime(np.asarray(times, dtype=np.int64), unit="s", utc=True)
    return pd.DataFrame({"value": values}, index=index)


def alerts(
    scores: pd.Series, threshold: float = THRESHOLD, hold: timedelta = FOR
) -> list[pd.Timestamp]:
    """When an alert would fire: the score stayed above ``threshold`` for ``hold``
    (one alert per such run, at the moment ``hold`` was reached)."""
    out: list[pd.Timestamp] = []
    since: pd.Timestamp | None = None
    fired = False
    for ts, s in scores.items():
        if s > threshold:
            if since is None:
                since, fired = ts, False
            if not fired and ts - since >= hold:
                out.append(ts)
                fired = True
        else:
            since = None
    return out


def run_case(
    case: Case,
    detector: str,
    frame: pd.DataFrame,
    calendar: AcademicCalendar,
    normal: pd.DataFrame | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Fit on the first three weeks, score the last two of ``frame`` (faulted)
    and of ``normal`` (the same run without the fault; ``frame`` before the
    fault when not given): the figures and the faulted run's scores."""
    cut = START + TRAIN
    fault_at = cut + NORMAL
    model = make(detector, calendar=calendar).fit(frame[frame.index < cut])

    def scored_weeks(f: pd.DataFrame) -> pd.DataFrame:
        # scored from a week early so the lag features have their past
        out = model.score(f[f.index >= cut - timedelta(weeks=1)])
        return out[out.index >= cut]

    scored = scored_weeks(frame)
    clean = scored_weeks(normal) if normal is not None else scored[scored.index < fault_at]
    false = alerts(clean["score"])
    near = timedelta(hours=2)
    caused = [
        a
        for a in alerts(scored["score"])
        if a >= fault_at and not any(abs(a - b) <= near for b in false)
    ]
    delay = (caused[0] - fault_at).total_seconds() / 3600 if caused else None
    return {
        "case": case.name,
        "kind": case.kind,
        "detector": detector,
        "false_alerts": len(false),
        "delay_h": None if delay is None else round(delay, 1),
    }, scored


def evaluate_simulated(
    campus: Campus,
    calendar: AcademicCalendar,
    detectors: Sequence[str],
    cases: Sequence[Case] = CASES,
    plot_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every detector on every case; with ``plot_dir``, one PNG per case."""
    rows = []
    for case in cases:
        if progress is not None:
            progress(f"simulating {case.name}")
        frame = simulate(case, campus, calendar)
        normal = simulate(case, campus, calendar, fault=False)
        scored_by: dict[str, pd.DataFrame] = {}
        for name in detectors:
            if progress is not None:
                progress(f"{name} on {case.name}")
            row, scored = run_case(case, name, frame, calendar, normal)
            rows.append(row)
            scored_by[name] = scored
        if plot_dir is not None:
            _plot_case(case, frame, scored_by, plot_dir / f"anomaly-{case.fault}-{case.device}.png")
    best = best_per_kind(rows)
    costs = {
        kind: round(cost([r for r in rows if r["kind"] == kind and r["detector"] == name]), 2)
        for kind, name in best.items()
    }
    return {"cases": rows, "best": best, "cost": costs}


FALSE_ALERT_COST = 0.25  # a wasted call-out, against a missed fault's 1
WEEK_H = 168.0  # a fault found a week late costs as much as one missed


def cost(rows: Sequence[dict[str, Any]]) -> float:
    """What a detector's results cost a facilities office: 1 per missed fault,
    0.25 per false alert, and each fault's delay in weeks."""
    missed = sum(r["delay_h"] is None for r in rows)
    false = sum(r["false_alerts"] for r in rows)
    late = sum(r["delay_h"] for r in rows if r["delay_h"] is not None) / WEEK_H
    return missed + FALSE_ALERT_COST * false + late


# equal costs go to the detector that knows the calendar and is cheaper to run
PREFERENCE = ("seasonal", "forest", "regressor", "static", "zscore")


def best_per_kind(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Per device kind, the detector whose results cost least (ties: PREFERENCE)."""
    out = {}
    for kind in sorted({r["kind"] for r in rows}):
        mine = [r for r in rows if r["kind"] == kind]
        names = {r["detector"] for r in mine}

        def key(n: str, mine: list[dict[str, Any]] = mine) -> tuple[float, int, str]:
            rank = PREFERENCE.index(n) if n in PREFERENCE else len(PREFERENCE)
            return round(cost([r for r in mine if r["detector"] == n]), 9), rank, n

        out[kind] = min(names, key=key)
    return out


def _plot_case(
    case: Case, frame: pd.DataFrame, scored_by: dict[str, pd.DataFrame], path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fault_at = START + TRAIN + NORMAL
    shown = frame[frame.index >= START + TRAIN]
    fig, axes = plt.subplots(len(scored_by) + 1, 1, figsize=(11, 1.6 + 1.3 * len(scored_by)),
                             sharex=True, dpi=90)  # fmt: skip
    axes[0].plot(shown.index, shown["value"], lw=0.6, color="#222222")
    axes[0].axvline(fault_at, color="#d62728", ls="--", lw=1)
    axes[0].set_title(f"{case.name} ({case.metric}); fault from the dashed line", fontsize=9)
    for ax, (name, scored) in zip(axes[1:], scored_by.items(), strict=True):
        ax.plot(scored.index, scored["score"], lw=0.6, color="#3182bd")
        ax.axhline(THRESHOLD, color="#999999", lw=0.6)
        ax.axvline(fault_at, color="#d62728", ls="--", lw=1)
        for a in alerts(scored["score"]):
            ax.axvline(a, color="#ff7f0e", lw=0.8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(name, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
