"""``campus dashboards build``: the campus boards as Grafana dashboard JSON.

The boards are code (``dashboards/boards/``, one module per board) built with
Grafana's foundation SDK from the campus registry (time zone, metering trees,
device kinds and metrics) and the ticket SLAs of ``oncall.yaml``. The JSON is
committed under ``dashboards/generated/`` so Grafana can provision it without
Python; ``--check`` tells CI when the committed files lag behind the code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

#: Board uid -> module under ``dashboards.boards`` that builds it, in menu order.
BOARDS = {
    "campus-overview": "overview",
    "campus-building": "building",
    "campus-energy": "energy",
    "campus-water": "water",
    "campus-hvac": "hvac",
    "campus-dorms": "dorms",
    "campus-tickets": "tickets",
}

DEFAULT_OUT = Path(__file__).parent / "generated"


def build_all(config_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """Every board as {uid: dashboard JSON}, built from the campus configuration.

    ``config_dir`` holds ``campus.yaml`` and ``oncall.yaml`` (default: the
    settings' config folder). Nothing is written.
    """
    import importlib

    ctx = load_context(config_dir)
    out: dict[str, dict[str, Any]] = {}
    for uid, module in BOARDS.items():
        board = importlib.import_module(f"dashboards.boards.{module}").build(ctx)
        out[uid] = board
    return out


def load_context(config_dir: Path | None = None) -> Any:
    """The boards' context: the registry and each severity's SLA in seconds."""
    from campus.registry import load_campus
    from campus.settings import get_settings
    from dashboards.boards.common import Context
    from tickets.oncall import load_oncall

    folder = config_dir if config_dir is not None else get_settings().config_dir
    campus = load_campus(folder / "campus.yaml")
    oncall = load_oncall(folder / "oncall.yaml", campus.buildings)
    sla = {}
    for sev in ("P1", "P2", "P3", "P4"):
        ack, resolve = oncall.sla(sev)
        sla[sev] = (int(ack.total_seconds()), int(resolve.total_seconds()))
    return Context(campus, sla)


def render(board: dict[str, Any]) -> str:
    """The file text of one board: sorted keys, 2-space indent, trailing newline."""
    return json.dumps(board, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def stale_files(boards: dict[str, dict[str, Any]], out: Path) -> list[str]:
    """Names of the files under ``out`` that differ from ``boards`` (or are missing, or extra)."""
    stale = []
    for uid, board in boards.items():
        path = out / f"{uid}.json"
        if not path.is_file() or path.read_text(encoding="utf-8") != render(board):
            stale.append(path.name)
    known = {f"{uid}.json" for uid in boards}
    stale += sorted(p.name for p in out.glob("*.json") if p.name not in known)
    return stale


@click.command("build")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_OUT,
    show_default="dashboards/generated",
    help="Folder to write one <uid>.json per board into.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Write nothing; exit 1 if the files in --out differ from what the code builds.",
)
def build_command(out: Path, check: bool) -> None:
    """Build the Grafana boards from code into JSON files (one per board)."""
    boards = build_all()
    if check:
        stale = stale_files(boards, out)
        if stale:
            raise click.ClickException(
                f"{', '.join(stale)} in {out} differ from the code:"
                " run `campus dashboards build` and commit the result"
            )
        click.echo(f"{len(boards)} boards in {out} are up to date")
        return
    out.mkdir(parents=True, exist_ok=True)
    for uid, board in boards.items():
        path = out / f"{uid}.json"
        path.write_text(render(board), encoding="utf-8")
        click.echo(f"wrote {path} ({board['title']}, {count_panels(board)} panels)")


def count_panels(board: dict[str, Any]) -> int:
    """Panels of a board, rows not counted."""
    return sum(1 for p in board.get("panels", []) if p.get("type") != "row")
