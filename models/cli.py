"""``campus model``: train, list, score and evaluate the anomaly models."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

DETECTOR_NAMES = ["seasonal", "regressor", "forest", "drift", "zscore", "static"]


class _ModelGroup(click.Group):
    """A model, dataset or history problem is one clear line, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        from campus.errors import SinkError
        from models.base import ModelError

        try:
            return super().invoke(ctx)
        except ModelError as exc:
            raise click.ClickException(str(exc)) from None
        except SinkError as exc:
            raise click.ClickException(f"InfluxDB: {exc}") from None


@click.group(cls=_ModelGroup)
def model() -> None:
    """Anomaly models: learn each meter's normal, score ranges, evaluate on NAB."""


def _when(text: str) -> datetime:
    from campus.timeparse import parse_time

    try:
        return parse_time(text, datetime.now(UTC))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _registry():  # type: ignore[no-untyped-def]
    from campus.settings import Settings
    from models.registry import Registry

    return Registry(Settings().models_folder)


@model.command("train")
@click.option("--since", default="-30d", show_default=True, help="History from (time).")
@click.option("--until", default="now", show_default=True, help="History until (time).")
@click.option(
    "--devices",
    "patterns",
    multiple=True,
    help="Device ids or buildings (globs; repeatable). Default: every modelled device.",
)
@click.option(
    "--detector",
    type=click.Choice(DETECTOR_NAMES),
    default=None,
    help="Use this detector for every device (default: the one chosen per device kind).",
)
def train_cmd(since: str, until: str, patterns: tuple[str, ...], detector: str | None) -> None:
    """Train a model per device from its InfluxDB history; each is a new version."""
    from rich.progress import Progress

    from campus.calendar import load_calendar
    from campus.influx import InfluxClient
    from campus.registry import load_campus
    from campus.settings import Settings
    from models.train import select, train

    s = Settings()
    campus = load_campus(s.campus_file)
    calendar = load_calendar(s.calendar_file)
    devices = select(campus, list(patterns) or None)
    if not devices:
        raise click.ClickException(f"no modelled device matches {', '.join(patterns)}")
    start, end = _when(since), _when(until)
    with InfluxClient.from_settings(s) as influx, Progress(transient=True) as bar:
        task = bar.add_task("training", total=len(devices))

        def progress(done: int, total: int, key: str) -> None:
            bar.update(task, completed=done, description=f"training {key}")

        report = train(
            influx, _registry(), devices, start, end, calendar, detector, progress=progress
        )
    for saved in report.saved:
        m = saved.meta
        click.echo(
            f"{saved.device}/{saved.metric} v{saved.version}: {m['detector']} on {m['rows']} "
            f"readings, {m['training_flagged_share']:.1%} of them above 0.5"
        )
    for key, why in report.skipped.items():
        click.echo(f"{key}: skipped: {why}")
    click.echo(f"{len(report.saved)} trained, {len(report.skipped)} skipped")


@model.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_cmd(as_json: bool) -> None:
    """The newest model of every device."""
    found = _registry().all_latest()
    if as_json:
        click.echo(json.dumps([s.meta for s in found], default=str))
        return
    for s in found:
        m = s.meta
        click.echo(
            f"{s.device}/{s.metric} v{s.version} {m.get('detector')} "
            f"trained {m.get('trained_at')} on {m.get('rows')} readings"
        )


@model.command("score")
@click.option("--start", required=True, help="From (time).")
@click.option("--end", default="now", show_default=True, help="Until (time).")
@click.option("--devices", "patterns", multiple=True, help="Device ids or buildings (globs).")
@click.option("--threshold", type=float, default=0.5, show_default=True)
@click.option(
    "--plot",
    "plot_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Write a PNG per device with its band and anomalies here.",
)
@click.option("--json", "as_json", is_flag=True)
def score_cmd(
    start: str,
    end: str,
    patterns: tuple[str, ...],
    threshold: float,
    plot_dir: Path | None,
    as_json: bool,
) -> None:
    """Score a range of history with each device's newest model."""
    from campus.influx import InfluxClient
    from campus.registry import load_campus
    from campus.settings import Settings
    from models.explain import plot_day
    from models.history import clean, read_history
    from models.train import select

    s = Settings()
    campus = load_campus(s.campus_file)
    reg = _registry()
    t0, t1 = _when(start), _when(end)
    out = []
    with InfluxClient.from_settings(s) as influx:
        for device in select(campus, list(patterns) or None):
            metric = _metric(device.kind)
            saved = reg.latest(device.id, metric)
            if saved is None:
                continue
            detector = reg.load(saved)
            spec = device.metrics[metric]
            raw = read_history(influx, device.kind, device.id, metric, t0, t1)
            history = clean(raw, counter=spec.counter, min_days=0).frame
            if history.empty:
                continue
            scored = detector.score(history)
            odd = scored[scored["score"] > threshold]
            doc = {
                "device": device.id,
                "metric": metric,
                "model_version": saved.version,
                "readings": len(scored),
                "anomalous": len(odd),
                "max_score": round(float(scored["score"].max()), 4),
                "first_anomalous": odd.index[0].isoformat() if len(odd) else None,
            }
            if plot_dir is not None:
                path = plot_dir / f"{device.id}-{metric}.png"
                plot_day(history, scored, path, f"{device.id} {metric}", threshold)
                doc["plot"] = str(path)
            out.append(doc)
    if as_json:
        click.echo(json.dumps(out))
        return
    for d in out:
        click.echo(
            f"{d['device']}/{d['metric']}: {d['anomalous']} of {d['readings']} readings above "
            f"{threshold:g} (max {d['max_score']:.2f})" + (f"  {d['plot']}" if "plot" in d else "")
        )
    if not out:
        click.echo("no device in the range has a model (campus model train)")


def _metric(kind: str) -> str:
    from models.choice import MODELLED

    return MODELLED[kind][0]


@model.command("evaluate")
@click.option(
    "--dataset",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=None,
    help="A NAB-format folder (data/, labels/combined_windows.json).",
)
@click.option(
    "--simulated",
    is_flag=True,
    help="Instead: the labelled simulated faults (creep, weekday shape, efficiency loss).",
)
@click.option(
    "--detectors",
    default=",".join(DETECTOR_NAMES),
    show_default=True,
    help="Comma-separated detector names.",
)
@click.option("--files", "file_globs", multiple=True, help="Only these NAB series (globs).")
@click.option(
    "--plot",
    "plot_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="With --simulated: write one PNG per case here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
def evaluate_cmd(
    dataset: Path | None,
    simulated: bool,
    detectors: str,
    file_globs: tuple[str, ...],
    plot_dir: Path | None,
    as_json: bool,
) -> None:
    """Score detectors on labelled data: a NAB corpus the way NAB does (online, no
    look-ahead), or the simulated campus faults."""
    names = [n.strip() for n in detectors.split(",") if n.strip()]
    unknown = sorted(set(names) - set(DETECTOR_NAMES))
    if unknown:
        raise click.BadParameter(
            f"unknown detector(s) {', '.join(unknown)}", param_hint="--detectors"
        )
    if (dataset is None) == (not simulated):
        raise click.UsageError("give either --dataset DIR or --simulated")
    if simulated:
        _evaluate_simulated(names, plot_dir, as_json)
        return
    from models.evaluate import evaluate_nab

    assert dataset is not None
    log = None if as_json else sys.stderr
    report = evaluate_nab(dataset, names, list(file_globs) or None, log=log)
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"{'detector':<16} {'standard':>9} {'low_fp':>8} {'low_fn':>8} {'F1':>6}  held out")
    for name, fig in report["detectors"].items():
        held = fig["held_out"]
        click.echo(
            f"{name:<16} {fig['standard']:>9.1f} {fig['low_fp']:>8.1f} {fig['low_fn']:>8.1f} "
            f"{fig['f1']:>6.2f}  {held['standard']:.1f} / {held['low_fp']:.1f} / "
            f"{held['low_fn']:.1f}"
        )
    click.echo(f"({report['files']} series, {report['seconds']:.0f} s)")


def _evaluate_simulated(names: list[str], plot_dir: Path | None, as_json: bool) -> None:
    from campus.calendar import load_calendar
    from campus.registry import load_campus
    from campus.settings import Settings
    from models.simeval import evaluate_simulated

    s = Settings()
    say = None if as_json else (lambda text: click.echo(text, err=True))
    report = evaluate_simulated(
        load_campus(s.campus_file), load_calendar(s.calendar_file), names, plot_dir=plot_dir,
        progress=say,
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(f"{'case':<36} {'detector':<10} {'false alerts':>12} {'found after':>12}")
    for r in report["cases"]:
        found = "missed" if r["delay_h"] is None else f"{r['delay_h']:.1f} h"
        click.echo(f"{r['case']:<36} {r['detector']:<10} {r['false_alerts']:>12} {found:>12}")
    for kind, name in report["best"].items():
        click.echo(f"best for {kind}: {name} (cost {report['cost'][kind]:.2f})")
