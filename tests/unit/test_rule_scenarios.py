"""Every shipped scenario passes through the real engine (`campus rules test`
runs the same function): each injected fault raises its alert in time, and
nothing else fires, the ordinary term week included."""

from __future__ import annotations

from pathlib import Path

import pytest

from campus.calendar import load_calendar
from campus.registry import load_campus
from rules.model import load_rules
from rules.scenarios import load_scenario, run_scenario, scenario_files
from simulators.faults import parse_fault_spec

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = scenario_files(ROOT / "config" / "scenarios")


@pytest.fixture(scope="module")
def world():  # type: ignore[no-untyped-def]
    campus = load_campus(ROOT / "config" / "campus.yaml")
    calendar = load_calendar(ROOT / "config" / "calendar.yaml")
    return campus, calendar, load_rules(ROOT / "config" / "rules.yaml", campus)


def test_the_scenarios_cover_every_device_kind_and_the_issue_s_faults(world) -> None:
    campus, _, rules = world
    loaded = [load_scenario(p, campus, rules) for p in SCENARIOS]
    kinds = {campus.get(f.device).kind for s in loaded for f in s.faults}
    assert kinds == {"power", "water", "hvac", "dorm"}
    faults = {f.kind for s in loaded for f in s.faults}
    assert {"burst_pipe", "slow_leak", "balance_loss", "chiller_trip", "fan_failure"} <= faults
    assert {"setpoint_drift", "overheating", "co2_buildup", "smoke", "feeder_outage"} <= faults
    assert {"counter_reset", "stuck", "offline"} <= faults
    quiet = [s for s in loaded if not s.faults]
    assert quiet and all(s.duration.days >= 7 and not s.expect for s in quiet)
    rule_kinds = {r.kind for r in rules for s in loaded for e in s.expect if e.rule == r.id}
    assert rule_kinds >= {
        "threshold", "rate", "stale", "offline", "flatline", "night_flow",
        "balance", "counter", "expression", "composite",
    }  # fmt: skip


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(world, path: Path) -> None:
    campus, calendar, rules = world
    result = run_scenario(load_scenario(path, campus, rules), campus, calendar, rules)
    problems = [
        f"{o.expect.rule} on {o.expect.device}: {o.why}" for o in result.outcomes if not o.ok
    ]
    problems += [
        f"false alert {e.rule} on {e.device} at {e.to_json()['ts']}" for e in result.unexpected
    ]
    problems += [f"rule {r} disabled: {why}" for r, why in result.disabled.items()]
    assert result.passed, "\n".join(problems)
    assert result.readings > 0


def test_fault_spec_from_the_command_line() -> None:
    f = parse_fault_spec("wm-teach-1-f2:burst_pipe:at=5m:for=1h:extra_lpm=300", 1_000_000)
    assert (f.device, f.kind, f.start, f.end) == (
        "wm-teach-1-f2",
        "burst_pipe",
        1_000_300,
        1_003_900,
    )
    assert f.params == {"extra_lpm": 300.0}
    past = parse_fault_spec("pm-teach-3:feeder_outage:at=-20m", 1_000_000)
    assert (past.start, past.end) == (998_800, None)
    for bad, why in [
        ("wm-teach-1-f2", "use DEVICE:KIND"),
        ("wm-teach-1-f2:burst_pipe:extra_lpm", "is not key=value"),
        ("wm-teach-1-f2:burst_pipe:extra_lpm=lots", "extra_lpm must be a number"),
        ("wm-teach-1-f2:burst_pipe:at=soon", "cannot read duration"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_fault_spec(bad, 0)
