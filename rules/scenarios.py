"""Scenario tests of rules: the simulator, injected faults, the real engine.

A scenario (``config/scenarios/*.yaml``) names a part of the campus, a time
range, the faults to inject and the alerts expected, each with a deadline
for detection, and whether anything else may fire. :func:`run_scenario` plays
it in event time through the same path as live data: every simulated reading
becomes its contract payload and goes through the ingester's decoder before
the engine sees it, and time-driven checks move with the watermark.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from campus.calendar import AcademicCalendar
from campus.errors import ConfigError, ConfigIssue
from campus.registry import Campus
from campus.yamlconf import Strict, load_located, validate
from ingest.decode import Decoder
from rules.engine import AlertEvent, Engine
from rules.model import Rule, duration
from simulators.engine import CampusSimulator
from simulators.faults import Fault, FaultInjector
from simulators.run import payload, select_devices


class FaultSpec(Strict):
    """A fault, timed from the scenario's start."""

    device: str
    kind: str
    at: timedelta
    until: timedelta | None = None
    params: dict[str, float] = Field(default_factory=dict)

    _times = field_validator("at", "until", mode="before")(
        lambda cls, v: v if v is None else duration(v)
    )


class Expect(Strict):
    """An alert that must fire: rule, device, and how soon after ``after``
    (default: the first fault's start)."""

    rule: str
    device: str
    within: timedelta
    after: timedelta | None = None
    inhibited: bool | None = None  # when set, the alert must (not) be inhibited

    _times = field_validator("within", "after", mode="before")(
        lambda cls, v: v if v is None else duration(v)
    )


class Allow(Strict):
    """Alerts that may fire without being expected (globs)."""

    rule: str = "*"
    device: str = "*"


class Scenario(Strict):
    """One scenario file."""

    name: str
    description: str = ""
    start: datetime
    duration: timedelta
    devices: list[str] = Field(default_factory=lambda: ["*"])
    seed: int = 42
    faults: list[FaultSpec] = Field(default_factory=list)
    expect: list[Expect] = Field(default_factory=list)
    allow: list[Allow] = Field(default_factory=list)
    nothing_else: bool = True
    plot: list[str] = Field(default_factory=list)  # extra series to plot: "device:metric"

    _duration = field_validator("duration", mode="before")(lambda cls, v: duration(v))

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        if self.start.tzinfo is None:
            raise ValueError("start needs a time zone offset, e.g. 2026-10-13T00:00:00+08:00")
        for f in self.faults:
            if f.at >= self.duration:
                raise ValueError(f"fault on {f.device} starts after the scenario ends")
        return self


def load_scenario(path: Path, campus: Campus, rules: Iterable[Rule]) -> Scenario:
    """Load and check one scenario; errors name file, line and field."""
    located = load_located(path)
    sc = validate(Scenario, located)
    issues = []
    ids = {r.id for r in rules}
    for i, e in enumerate(sc.expect):
        if e.rule not in ids:
            issues.append(located.issue(("expect", i, "rule"), f"no rule with id {e.rule!r}"))
        if campus.get(e.device) is None:
            issues.append(located.issue(("expect", i, "device"), f"no device {e.device!r}"))
    for i, f in enumerate(sc.faults):
        if campus.get(f.device) is None:
            issues.append(located.issue(("faults", i, "device"), f"no device {f.device!r}"))
    if issues:
        raise ConfigError(issues)
    return sc


@dataclass
class Outcome:
    """How one expected alert went."""

    expect: Expect
    fired: AlertEvent | None
    delay_s: float | None
    ok: bool
    why: str = ""


@dataclass
class ScenarioResult:
    """Everything a scenario run found."""

    scenario: Scenario
    outcomes: list[Outcome]
    unexpected: list[AlertEvent]
    events: list[AlertEvent]
    readings: int
    series: dict[tuple[str, str], list[tuple[int, float]]] = field(default_factory=dict)
    disabled: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Every expectation met, nothing unexpected, no rule disabled."""
        return (
            all(o.ok for o in self.outcomes)
            and not (self.scenario.nothing_else and self.unexpected)
            and not self.disabled
        )


def run_scenario(
    sc: Scenario,
    campus: Campus,
    calendar: AcademicCalendar,
    rules: list[Rule],
    progress: Callable[[int, int], None] | None = None,
) -> ScenarioResult:
    """Play ``sc`` through a fresh engine; ``progress(done, total)`` per simulated hour."""
    t0 = int(sc.start.timestamp())
    faults = [
        Fault(
            device=f.device,
            kind=f.kind,
            start=t0 + int(f.at.total_seconds()),
            end=None if f.until is None else t0 + int(f.until.total_seconds()),
            params=f.params,
        )
        for f in sc.faults
    ]
    try:
        injector = FaultInjector(campus, faults)
    except ValueError as exc:
        raise ConfigError([ConfigIssue(sc.name, None, "faults", str(exc))]) from None
    selected = {d.id for d in select_devices(list(campus), sc.devices)}
    watch = {(f.device, m) for f in sc.faults for m in _metrics_of(campus, f.device)}
    watch |= {tuple(x.split(":", 1)) for x in sc.plot}  # type: ignore[misc]
    sim = CampusSimulator(campus, calendar, seed=sc.seed, only=selected)
    engine = Engine(rules, campus, calendar)
    decoder = Decoder(campus)
    end = t0 + int(sc.duration.total_seconds())
    seq: dict[str, int] = {}
    events: list[AlertEvent] = []
    series: dict[tuple[str, str], list[tuple[int, float]]] = {k: [] for k in watch}
    readings = 0
    t = sim.first_tick(t0)
    hours = max(1, (end - t0) // 3600)
    last_hour = -1
    while t < end:
        due = [(d, m) for d, m in sim.readings_at(t) if d.id in selected]
        injected = injector.apply(t, due)
        for dev, online in injected.status:
            events += engine.status(dev.id, online, t * 1000)
        for dev, metrics in injected.readings:
            n = seq.get(dev.id, 0)
            seq[dev.id] = n + 1
            decoded = decoder.decode(dev.topic, payload(t, n, metrics), t * 1000)
            for r in decoded.readings:
                events += engine.feed(r.device, r.ts_ms, r.metrics)
                readings += 1
            for name, value in metrics.items():
                s = series.get((dev.id, name))
                if s is not None:
                    s.append((t, value))
        events += engine.advance(t * 1000)
        hour = (t - t0) // 3600
        if progress is not None and hour != last_hour:
            progress(int(hour), int(hours))
            last_hour = hour
        t += sim.step
    first_fault = min((f.start for f in faults), default=t0)
    outcomes = [_judge(e, events, t0, first_fault) for e in sc.expect]
    matched = {id(o.fired) for o in outcomes if o.fired is not None}
    unexpected = [
        ev
        for ev in events
        if ev.state == "firing"
        and id(ev) not in matched
        and not any(_covers(e, ev) for e in sc.expect)
        and not any(
            fnmatch.fnmatchcase(ev.rule, a.rule) and fnmatch.fnmatchcase(ev.device, a.device)
            for a in sc.allow
        )
    ]
    return ScenarioResult(
        sc, outcomes, unexpected, events, readings, series, dict(engine.stats.disabled)
    )


def _metrics_of(campus: Campus, device: str) -> list[str]:
    d = campus.get(device)
    return [] if d is None else [m for m, spec in d.metrics.items() if not spec.counter]


def _covers(e: Expect, ev: AlertEvent) -> bool:
    """Further firing events of an expected alert (escalation, inhibition updates)."""
    return ev.rule == e.rule and ev.device == e.device


def _judge(e: Expect, events: list[AlertEvent], t0: int, first_fault: int) -> Outcome:
    after = first_fault if e.after is None else t0 + int(e.after.total_seconds())
    fired = next(
        (
            ev
            for ev in events
            if ev.state == "firing"
            and ev.rule == e.rule
            and ev.device == e.device
            and ev.ts_ms >= after * 1000
        ),
        None,
    )
    if fired is None:
        return Outcome(e, None, None, False, "never fired")
    delay = fired.ts_ms / 1000 - after
    if delay > e.within.total_seconds():
        return Outcome(e, fired, delay, False, f"late: {_fmt(delay)} > {_fmt(e.within)}")
    if e.inhibited is not None:
        later = [
            ev
            for ev in events
            if ev.rule == e.rule and ev.device == e.device and ev.state == "firing"
        ]
        inhibited = any(ev.inhibited_by is not None for ev in later)
        if inhibited != e.inhibited:
            return Outcome(e, fired, delay, False, "not inhibited" if e.inhibited else "inhibited")
    return Outcome(e, fired, delay, True)


def _fmt(x: Any) -> str:
    s = x.total_seconds() if isinstance(x, timedelta) else float(x)
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.0f} min"
    return f"{s:.0f} s"


def fmt_delay(seconds: float | None) -> str:
    """A detection delay for the results table."""
    return "-" if seconds is None else _fmt(seconds)


def scenario_files(folder: Path) -> list[Path]:
    """The scenario files of a folder, by name."""
    return sorted(folder.glob("*.yaml"))


def plot_result(result: ScenarioResult, out: Path) -> Path:
    """A PNG of each faulted series with the fault span and the alert marks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    keys = sorted(k for k, v in result.series.items() if v)
    n = max(1, len(keys))
    fig, axes = plt.subplots(n, 1, figsize=(10, 1.8 * n + 1), sharex=True, squeeze=False)
    sc = result.scenario
    t0 = int(sc.start.timestamp())
    for ax, key in zip(axes[:, 0], keys, strict=False):
        pts = result.series[key]
        xs = [datetime.fromtimestamp(t, sc.start.tzinfo) for t, _ in pts]
        ax.plot(xs, [v for _, v in pts], lw=1, color="#1f5f8b")
        ax.set_ylabel(f"{key[0]}\n{key[1]}", fontsize=7)
        for f in sc.faults:
            if f.device != key[0]:
                continue
            a = datetime.fromtimestamp(t0 + f.at.total_seconds(), sc.start.tzinfo)
            b = datetime.fromtimestamp(
                t0 + (f.until or sc.duration).total_seconds(), sc.start.tzinfo
            )
            ax.axvspan(a, b, color="#f4a261", alpha=0.25, label=f"fault: {f.kind}")
        for ev in result.events:
            if ev.device != key[0]:
                continue
            x = datetime.fromtimestamp(ev.ts_ms / 1000, sc.start.tzinfo)
            color = "#c1121f" if ev.state == "firing" else "#2a9d8f"
            ax.axvline(x, color=color, lw=1.2, ls="--")
            ax.annotate(
                f"{ev.rule} {ev.state}",
                (x, 1.0),
                xycoords=("data", "axes fraction"),
                fontsize=6,
                color=color,
                rotation=90,
                va="top",
            )
    axes[-1, 0].xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M", tz=sc.start.tzinfo))
    fig.suptitle(f"{sc.name}: {'passed' if result.passed else 'FAILED'}", fontsize=10)
    fig.autofmt_xdate()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
