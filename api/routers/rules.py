"""``/api/rules``: the alert rules the engine runs, their lint, and their
scenario tests: what ``campus rules lint`` and ``campus rules test --scenario``
do, over HTTP.

Every role reads the rules and the list of scenarios; only engineers and
admins lint a text or run a scenario (both cost CPU). A posted rules text is
checked by the same code as the rules file (:func:`rules.model.load_rules_text`)
and its findings carry the same line numbers. A scenario run plays the
bundled scenario through the real engine (:func:`rules.scenarios.run_scenario`),
bounded three ways: scenarios simulating more than :data:`MAX_SCENARIO_H`
hours are refused before they start (run those with ``campus rules test``),
one run at a time per API process (429 otherwise), and a run still going
after :data:`RUN_TIMEOUT_S` seconds is stopped at the next simulated hour.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Request, status
from pydantic import BaseModel, ConfigDict, Field

from api.accounts import Principal
from api.deps import PrincipalDep, role
from api.schemas import In, Problem
from campus.errors import ConfigError, ConfigIssue
from campus.registry import Campus
from campus.settings import Settings
from campus.yamlconf import load_located, validate
from rules.kinds import KINDS
from rules.model import Rule, load_rules, load_rules_text
from tickets.models import Role

router = APIRouter(prefix="/api/rules", tags=["rules"])

Engineer = Annotated[Principal, Depends(role(Role.engineer, Role.admin))]
ScenarioName = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]

MAX_RULES_CHARS = 128 * 1024  # a rules text longer than this is refused (422)
MAX_YAML_NODES = 100_000  # values in a posted text, every alias counted again
MAX_SCENARIO_H = 48  # simulated hours a scenario may span to run here
RUN_TIMEOUT_S = 20.0  # wall-clock time a scenario run may take
POSTED = "rules.yaml"  # the file name a posted text's findings carry
MAX_FALSE_ALERTS = 100  # false alerts listed in a run's answer (all are counted)

_running = threading.Lock()  # one scenario run at a time per process

READ: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "No valid bearer token."},
    503: {"model": Problem, "description": "The rules file on the server is invalid."},
}
WRITE: dict[int | str, dict[str, Any]] = {
    **READ,
    403: {"model": Problem, "description": "Engineers and admins only."},
}


# ---------------------------------------------------------------- models


class SelectOut(BaseModel):
    """Which devices a rule watches (globs; every field must match)."""

    building: list[str]
    kind: list[str]
    device: list[str]
    model: list[str]
    tags: dict[str, str]


class EscalateOut(BaseModel):
    """Raise the severity once the condition has held this long."""

    after_s: float
    to: str


class ScheduleOut(BaseModel):
    """When a rule is active (empty lists: always)."""

    hours: list[str]
    days: list[str]
    periods: list[str]


class MaintenanceOut(BaseModel):
    """A window in which the rule's alerts are held back."""

    start: datetime
    end: datetime
    devices: list[str]
    buildings: list[str]
    reason: str


class RuleOut(BaseModel):
    """One rule as loaded, with how many devices it watches."""

    id: str
    description: str
    kind: str
    enabled: bool
    severity: str
    trade: str
    select: SelectOut
    metric: str | None
    params: dict[str, Any]
    for_s: float = Field(description="How long the condition must hold before it fires.")
    clear: dict[str, Any]
    clear_for_s: float = Field(description="How long it must stay clear before it resolves.")
    escalate: EscalateOut | None
    schedule: ScheduleOut | None
    maintenance: list[MaintenanceOut]
    inhibits_children: bool
    title: str
    text: str
    runbook: str
    dedup_key: str
    devices: int = Field(description="Devices of the campus the rule watches.")


class RulesOut(BaseModel):
    """The rules file the engine runs."""

    file: str
    rules: list[RuleOut]
    disabled: int
    watching: int = Field(description="(rule, device) pairs watched, as `campus rules lint`.")


class LintIn(In):
    """A rules file's text (the same YAML as config/rules.yaml)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)  # keep line numbers

    yaml: str = Field(max_length=MAX_RULES_CHARS)


class RunIn(In):
    """Run against this rules text instead of the server's rules file."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    yaml: str | None = Field(default=None, max_length=MAX_RULES_CHARS)


class IssueOut(BaseModel):
    """One finding, as ``campus rules lint`` prints it (``text``)."""

    line: int | None
    field: str
    message: str
    text: str


class LintOut(BaseModel):
    """The lint of a rules text: ``ok`` and the figures, or the issues."""

    ok: bool
    rules: int
    disabled: int
    watching: int
    issues: list[IssueOut]


class ExpectOut(BaseModel):
    """An alert the scenario expects."""

    rule: str
    device: str
    within_s: float


class ScenarioOut(BaseModel):
    """One bundled scenario (config/scenarios)."""

    name: str
    description: str
    start: datetime | None
    duration_s: float | None
    devices: list[str]
    faults: int
    expect: list[ExpectOut]
    runnable: bool = Field(description=f"At most {MAX_SCENARIO_H} simulated hours: runs here.")
    error: str | None = Field(description="Why the scenario file does not load, if it does not.")


class OutcomeOut(BaseModel):
    """How one expected alert went."""

    rule: str
    device: str
    ok: bool
    delay_s: float | None
    within_s: float
    why: str


class RunOut(BaseModel):
    """A scenario run: pass or fail per expectation, as ``campus rules test --json``."""

    name: str
    rules: str = Field(description="`file` (the server's rules) or `posted`.")
    passed: bool
    readings: int
    seconds: float
    expected: list[OutcomeOut]
    false_alerts: list[dict[str, Any]] = Field(description=f"The first {MAX_FALSE_ALERTS}.")
    false_alert_count: int
    disabled: dict[str, str]


# ---------------------------------------------------------------- helpers


def _watching(rule: Rule, campus: Campus) -> int:
    """Devices ``rule`` runs for (the count `campus rules lint` adds up)."""
    kind = KINDS[rule.kind]
    return sum(1 for d in campus if kind.applies(rule, d, campus))


def _rule_out(rule: Rule, campus: Campus) -> RuleOut:
    sched = rule.schedule
    return RuleOut(
        id=rule.id,
        description=rule.description,
        kind=rule.kind,
        enabled=rule.enabled,
        severity=rule.severity.value,
        trade=rule.trade.value,
        select=SelectOut(
            building=list(rule.select.building),
            kind=list(rule.select.kind),
            device=list(rule.select.device),
            model=list(rule.select.model),
            tags=dict(rule.select.tags),
        ),
        metric=rule.metric,
        params=rule.params,
        for_s=rule.for_.total_seconds(),
        clear=rule.clear,
        clear_for_s=rule.clear_for.total_seconds(),
        escalate=None
        if rule.escalate is None
        else EscalateOut(after_s=rule.escalate.after.total_seconds(), to=rule.escalate.to.value),
        schedule=None
        if sched is None
        else ScheduleOut(
            hours=[f"{h.start:%H:%M}-{h.end:%H:%M}" for h in sched.hours],
            days=list(sched.days),
            periods=[p.value for p in sched.periods],
        ),
        maintenance=[
            MaintenanceOut(
                start=m.start, end=m.end, devices=m.devices, buildings=m.buildings, reason=m.reason
            )
            for m in rule.maintenance
        ],
        inhibits_children=rule.inhibits_children,
        title=rule.title,
        text=rule.text,
        runbook=rule.runbook,
        dedup_key=rule.dedup_key,
        devices=_watching(rule, campus),
    )


def _issue(i: ConfigIssue) -> IssueOut:
    return IssueOut(line=i.line, field=i.field, message=i.message, text=str(i))


def _posted_rules(text: str, campus: Campus) -> list[Rule]:
    """Rules from a posted text; :class:`ConfigError` for everything wrong in it
    (a text that expands past ``MAX_YAML_NODES`` values is refused unbuilt)."""
    return load_rules_text(text, POSTED, campus, max_values=MAX_YAML_NODES)


def _file_rules(settings: Settings, campus: Campus) -> list[Rule]:
    """The server's rules file; 503 when it is invalid (the engine keeps running
    the rules it had, and the API says what is wrong)."""
    try:
        return load_rules(settings.rules_file, campus)
    except ConfigError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the rules file {settings.rules_file} is invalid: {exc}",
        ) from None


def _scenario_file(settings: Settings, name: str) -> FilePath:
    from rules.scenarios import scenario_files

    for f in scenario_files(settings.scenarios_dir):
        if f.stem == name:
            return f
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"no scenario named {name!r}")


class _TooLong(Exception):
    """A scenario run passed its time limit."""


# ---------------------------------------------------------------- routes


@router.get("", response_model=RulesOut, responses=READ)
def list_rules(request: Request, who: PrincipalDep) -> RulesOut:
    """The rules in the server's rules file, as the engine loads them."""
    settings: Settings = request.app.state.settings
    campus: Campus = request.app.state.campus
    loaded = _file_rules(settings, campus)
    out = [_rule_out(r, campus) for r in loaded]
    return RulesOut(
        file=str(settings.rules_file),
        rules=out,
        disabled=sum(1 for r in loaded if not r.enabled),
        watching=sum(r.devices for r in out),
    )


@router.post(
    "/lint",
    response_model=LintOut,
    responses={**WRITE, 413: {"model": Problem, "description": "Body too large."}},
)
def lint(body: LintIn, request: Request, who: Engineer) -> LintOut:
    """Check a rules text without running it: ``ok`` with the figures
    `campus rules lint` prints, or every issue with its line (still 200)."""
    campus: Campus = request.app.state.campus
    try:
        loaded = _posted_rules(body.yaml, campus)
    except ConfigError as exc:
        return LintOut(
            ok=False, rules=0, disabled=0, watching=0, issues=[_issue(i) for i in exc.issues]
        )
    return LintOut(
        ok=True,
        rules=len(loaded),
        disabled=sum(1 for r in loaded if not r.enabled),
        watching=sum(_watching(r, campus) for r in loaded),
        issues=[],
    )


@router.get("/scenarios", response_model=list[ScenarioOut], responses=READ)
def list_scenarios(request: Request, who: PrincipalDep) -> list[ScenarioOut]:
    """The bundled scenarios (config/scenarios), and whether each runs here."""
    from rules.scenarios import Scenario, scenario_files

    settings: Settings = request.app.state.settings
    out = []
    for f in scenario_files(settings.scenarios_dir):
        try:
            sc = validate(Scenario, load_located(f))
        except ConfigError as exc:
            out.append(
                ScenarioOut(
                    name=f.stem,
                    description="",
                    start=None,
                    duration_s=None,
                    devices=[],
                    faults=0,
                    expect=[],
                    runnable=False,
                    error=str(exc),
                )
            )
            continue
        out.append(
            ScenarioOut(
                name=f.stem,
                description=sc.description,
                start=sc.start,
                duration_s=sc.duration.total_seconds(),
                devices=sc.devices,
                faults=len(sc.faults),
                expect=[
                    ExpectOut(rule=e.rule, device=e.device, within_s=e.within.total_seconds())
                    for e in sc.expect
                ],
                runnable=sc.duration.total_seconds() <= MAX_SCENARIO_H * 3600,
                error=None,
            )
        )
    return out


@router.post(
    "/scenarios/{name}/run",
    response_model=RunOut,
    responses={
        **WRITE,
        404: {"model": Problem, "description": "No such scenario."},
        413: {"model": Problem, "description": "Body too large."},
        422: {"model": Problem, "description": "Posted rules invalid, or the scenario too long."},
        429: {"model": Problem, "description": "A scenario is running; try again."},
    },
)
def run(name: ScenarioName, request: Request, who: Engineer, body: RunIn | None = None) -> RunOut:
    """Play one bundled scenario through the real engine against the server's
    rules or the posted ones, as `campus rules test --scenario NAME` does."""
    from campus.calendar import load_calendar
    from rules.scenarios import load_scenario, run_scenario

    settings: Settings = request.app.state.settings
    campus: Campus = request.app.state.campus
    path = _scenario_file(settings, name)
    posted = body is not None and body.yaml is not None
    if body is not None and body.yaml is not None:
        try:
            loaded = _posted_rules(body.yaml, campus)
        except ConfigError as exc:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, f"yaml: the rules are invalid: {exc}"
            ) from None
    else:
        loaded = _file_rules(settings, campus)
    try:
        sc = load_scenario(path, campus, loaded)
    except ConfigError as exc:
        where = "yaml: the posted rules do not fit" if posted else "the scenario is invalid"
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{where}: {exc}") from None
    hours = sc.duration.total_seconds() / 3600
    if hours > MAX_SCENARIO_H:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"name: scenario {name!r} simulates {hours:g} h, more than the {MAX_SCENARIO_H} h "
            f"run here; run it with `campus rules test --scenario {name}`",
        )
    if not _running.acquire(blocking=False):
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "a scenario is already running; try again in a few seconds",
            headers={"Retry-After": "5"},
        )
    t0 = time.monotonic()

    def deadline(done: int, total: int) -> None:
        if time.monotonic() - t0 > RUN_TIMEOUT_S:
            raise _TooLong(f"stopped after {RUN_TIMEOUT_S:g} s at simulated hour {done} of {total}")

    try:
        res = run_scenario(sc, campus, load_calendar(settings.calendar_file), loaded, deadline)
    except _TooLong as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"name: scenario {name!r} takes too long to run here ({exc}); run it with "
            f"`campus rules test --scenario {name}`",
        ) from None
    except ConfigError as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"the scenario is invalid: {exc}"
        ) from None
    finally:
        _running.release()
    return RunOut(
        name=sc.name,
        rules="posted" if posted else "file",
        passed=res.passed,
        readings=res.readings,
        seconds=round(time.monotonic() - t0, 3),
        expected=[
            OutcomeOut(
                rule=o.expect.rule,
                device=o.expect.device,
                ok=o.ok,
                delay_s=o.delay_s,
                within_s=o.expect.within.total_seconds(),
                why=o.why,
            )
            for o in res.outcomes
        ],
        false_alerts=[ev.to_json() for ev in res.unexpected[:MAX_FALSE_ALERTS]],
        false_alert_count=len(res.unexpected),
        disabled=dict(res.disabled),
    )
