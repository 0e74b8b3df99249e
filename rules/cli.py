"""``campus rules``: lint, test against scenarios, and run the engine live."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from campus.errors import ConfigError

RULES_FILE = click.option(
    "--rules",
    "--rules-file",
    "rules_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The rules to run (default: config/rules.yaml).",
)


@click.group()
def rules() -> None:
    """Write, prove and run the alert rules (config/rules.yaml)."""


def _context():  # type: ignore[no-untyped-def]
    from campus.calendar import load_calendar
    from campus.registry import load_campus
    from campus.settings import Settings

    s = Settings()
    return s, load_campus(s.campus_file), load_calendar(s.calendar_file)


@rules.command("lint")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
def lint(file: Path | None) -> None:
    """Check a rules file (default: config/rules.yaml) without running it."""
    from rules.kinds import KINDS
    from rules.model import load_rules

    s, campus, _ = _context()
    path = file or s.rules_file
    try:
        loaded = load_rules(path, campus)
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        raise SystemExit(1) from None
    slots = 0
    for r in loaded:
        kind = KINDS[r.kind]
        slots += sum(1 for d in campus if kind.applies(r, d, campus))
    disabled = sum(1 for r in loaded if not r.enabled)
    click.echo(
        f"{path}: {len(loaded)} rules ({disabled} disabled), watching {slots} (rule, device) pairs"
    )


@rules.command("test")
@click.option("--scenario", "names", multiple=True, help="Only this scenario (repeatable).")
@click.option(
    "--plot",
    "plot_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write a PNG per scenario: each faulted series with the alert marks.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@RULES_FILE
def test(
    names: tuple[str, ...], plot_dir: Path | None, as_json: bool, rules_file: Path | None
) -> None:
    """Run the scenarios (config/scenarios/*.yaml) through the real engine.

    Prints expected versus fired, detection delays and false alerts; exits 1
    when any scenario fails.
    """
    from rules.model import load_rules
    from rules.scenarios import fmt_delay, load_scenario, plot_result, run_scenario, scenario_files

    s, campus, calendar = _context()
    loaded = load_rules(rules_file or s.rules_file, campus)
    files = scenario_files(s.scenarios_dir)
    if names:
        files = [f for f in files if f.stem in names]
        missing = set(names) - {f.stem for f in files}
        if missing:
            raise click.ClickException(f"no scenario named {', '.join(sorted(missing))}")
    results = []
    failed = 0
    for f in files:
        sc = load_scenario(f, campus, loaded)

        def progress(done: int, total: int, name: str = sc.name) -> None:
            if not as_json and sys.stderr.isatty():
                click.echo(f"\r{name}: hour {done}/{total}", nl=False, err=True)

        res = run_scenario(sc, campus, calendar, loaded, progress)
        if not as_json and sys.stderr.isatty():
            click.echo("\r" + " " * 60 + "\r", nl=False, err=True)
        results.append(res)
        failed += not res.passed
        if plot_dir is not None:
            plot_result(res, plot_dir / f"{sc.name}.png")
        if as_json:
            continue
        mark = "PASS" if res.passed else "FAIL"
        click.echo(f"{mark}  {sc.name}  ({res.readings:,} readings, {len(res.events)} events)")
        for o in res.outcomes:
            state = "ok " if o.ok else "NO "
            deadline = fmt_delay(o.expect.within.total_seconds())
            click.echo(
                f"   {state} {o.expect.rule:<28} {o.expect.device:<16} "
                f"detected in {fmt_delay(o.delay_s):>8} (deadline {deadline})"
                + (f"  {o.why}" if o.why else "")
            )
        for ev in res.unexpected:
            click.echo(
                f"   FALSE {ev.rule:<26} {ev.device:<16} at {ev.to_json()['ts']}: {ev.title}"
            )
        for rid, why in res.disabled.items():
            click.echo(f"   DISABLED {rid}: {why}")
    if as_json:
        click.echo(
            json.dumps(
                {
                    "scenarios": [
                        {
                            "name": r.scenario.name,
                            "passed": r.passed,
                            "readings": r.readings,
                            "expected": [
                                {
                                    "rule": o.expect.rule,
                                    "device": o.expect.device,
                                    "ok": o.ok,
                                    "delay_s": o.delay_s,
                                    "why": o.why,
                                }
                                for o in r.outcomes
                            ],
                            "false_alerts": [ev.to_json() for ev in r.unexpected],
                            "disabled": r.disabled,
                        }
                        for r in results
                    ]
                },
                indent=2,
            )
        )
    else:
        click.echo(f"{len(results) - failed} of {len(results)} scenarios passed")
    if failed:
        raise SystemExit(1)


@rules.command("run")
@RULES_FILE
def run(rules_file: Path | None) -> None:
    """Watch the live stream and publish alerts (runs until stopped).

    Alerts go to ops/alerts/{severity}/{building} (QoS 1) and var/alerts.jsonl.
    SIGHUP reloads the rules file; a bad file keeps the running rules.
    """
    import signal

    from campus.cli import _on_signals
    from rules.live import RulesService

    s, campus, calendar = _context()
    service = RulesService(s, campus, calendar, rules_file or s.rules_file)
    signal.signal(signal.SIGHUP, lambda *_: service.request_reload())
    with _on_signals(service.stop):
        service.run()


@rules.command("replay")
@click.option(
    "--csv", "csv_file", type=click.Path(dir_okay=False, path_type=Path), help="A recorded CSV."
)
@click.option(
    "--mapping",
    type=click.Path(dir_okay=False, path_type=Path),
    help="How the CSV's columns map to a device's metrics (config/replay/*.yaml).",
)
@click.option("--influx", "from_influx", is_flag=True, help="Replay readings stored in InfluxDB.")
@click.option("--start", help="InfluxDB: from (ISO time, or -7d style).")
@click.option("--end", default="now", show_default=True, help="InfluxDB: until.")
@click.option(
    "--devices",
    multiple=True,
    help="InfluxDB: device id or building globs (repeatable or comma-separated; default all).",
)
@click.option("--chunk", default="6h", show_default=True, help="InfluxDB: time per query.")
@RULES_FILE
@click.option(
    "--plot",
    "plot_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write a PNG: the mapped series, the alerts and the faulted days.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option(
    "--evaluate",
    is_flag=True,
    help="Score per day against the mapping's label_column (detection rate, false-alarm days).",
)
def replay(
    csv_file: Path | None,
    mapping: Path | None,
    from_influx: bool,
    start: str | None,
    end: str,
    devices: tuple[str, ...],
    chunk: str,
    rules_file: Path | None,
    plot_dir: Path | None,
    as_json: bool,
    evaluate: bool,
) -> None:
    """Run rules over recorded data instead of the simulator, through the same engine.

    \b
    campus rules replay --csv FILE --mapping MAPPING.yaml [--rules FILE] [--evaluate]
    campus rules replay --influx --start -7d [--end now] [--devices 'ahu-*']

    Prints the alerts per rule and device (count, first time, time firing);
    with --evaluate, the days each rule caught against the file's labels.
    """
    from datetime import UTC, datetime

    from campus.errors import CampusError
    from campus.timeparse import parse_duration, parse_time
    from rules import replay as rp
    from rules.model import load_rules

    if bool(csv_file) == from_influx:
        raise click.UsageError("give either --csv FILE --mapping MAPPING.yaml, or --influx")
    s, campus, calendar = _context()
    show = not as_json and sys.stderr.isatty()
    try:
        with _replay_progress(show) as progress:
            if csv_file is not None:
                if mapping is None:
                    raise click.UsageError("--csv needs --mapping MAPPING.yaml")
                rec = rp.load_mapping(mapping, campus)
                loaded = load_rules(rules_file or s.rules_file, rec.rules_campus)
                result = rp.replay_csv(
                    csv_file,
                    rec,
                    loaded,
                    campus,
                    calendar,
                    progress=progress,
                    keep_series=plot_dir is not None,
                )
            else:
                if start is None:
                    raise click.UsageError("--influx needs --start")
                if evaluate:
                    raise click.UsageError("--evaluate needs labels: a CSV with label_column")
                from campus.influx import InfluxClient

                now = datetime.now(UTC)
                globs = [g for d in devices for g in d.split(",") if g.strip()]
                loaded = load_rules(rules_file or s.rules_file, campus)
                with InfluxClient.from_settings(s, timeout=60.0) as client:
                    result = rp.replay_influx(
                        client,
                        parse_time(start, now),
                        parse_time(end, now),
                        loaded,
                        campus,
                        calendar,
                        globs or None,
                        chunk=parse_duration(chunk),
                        progress=progress,
                        keep_series=plot_dir is not None,
                    )
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(str(issue), err=True)
        raise SystemExit(1) from None
    except (CampusError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    if not result.readings:
        click.echo("no readings replayed", err=True)
    try:
        ev = rp.evaluate(result) if evaluate else None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if plot_dir is not None and result.readings:
        name = csv_file.stem if csv_file is not None else "influx"
        out = rp.plot_replay(result, plot_dir / f"{name}.png", ev)
        if not as_json:
            click.echo(f"wrote {out}", err=True)
    if as_json:
        click.echo(json.dumps(rp.result_json(result, ev), indent=2))
        return
    for line in rp.report_lines(result):
        click.echo(line)
    if ev is not None:
        for line in rp.evaluation_lines(ev):
            click.echo(line)


def _replay_progress(show: bool):  # type: ignore[no-untyped-def]
    """A rich progress bar on stderr, as a callback ``(phase, done, total)``; or None."""
    import contextlib

    if not show:
        return contextlib.nullcontext(None)

    @contextlib.contextmanager
    def bar():  # type: ignore[no-untyped-def]
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

        tasks: dict[str, TaskID] = {}
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=Console(stderr=True),
            transient=True,
        ) as p:

            def update(phase: str, done: int, total: int | None) -> None:
                if phase not in tasks:
                    tasks[phase] = p.add_task(phase, total=total)
                p.update(tasks[phase], completed=done, total=total)

            yield update

    return bar()
