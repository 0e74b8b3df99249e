"""``campus qr``: printable QR codes that open the feedback form with the
building (and room) filled in, to put up in corridors, lifts and rooms.

For each building it writes, under ``--out`` (default ``{var_dir}/qr``)::

    {building}/{building}.svg, .png                  the building's code
    {building}/{building}_{room}.svg, .png           one per room (--rooms)
    {building}/sheet.html                            a printable sheet of them

A code opens ``{CAMPUS_PUBLIC_URL}/feedback?building=B&room=R``, so set
``CAMPUS_PUBLIC_URL`` to the address phones reach the service at before
printing. Rooms are the ``room`` values of the building's devices in the
registry. The sheet is a plain HTML file (its style inside it, the codes next
to it) with each code's caption in Chinese and English; print it from a
browser. Error correction is level M (15 %: a code still reads with a scuff).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode

import click

from api.i18n import LANGUAGES, Words, local_name

if TYPE_CHECKING:
    from campus.registry import Building, Campus

TEMPLATES = Path(__file__).resolve().parent / "templates"
PNG_SCALE = 8  # pixels per module: about 3 cm printed at 300 dpi for a short URL
SVG_SCALE = 6
SAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class Code:
    """One QR code: where it leads and the files it is written to."""

    building: str
    room: str | None
    url: str
    stem: str  # file name without extension, inside the building's folder


def feedback_url(public_url: str, building: str, room: str | None = None) -> str:
    """The feedback form's address for ``building`` (and ``room``)."""
    query = {"building": building, **({"room": room} if room else {})}
    return f"{public_url.rstrip('/')}/feedback?{urlencode(query)}"


def rooms_of(campus: Campus, building: str) -> list[str]:
    """The rooms the registry knows in ``building`` (from its devices), sorted."""
    rooms = {d.room for d in campus.devices_in(building) if d.room}
    return sorted(rooms, key=lambda r: (len(r), r))


def plan(campus: Campus, public_url: str, buildings: list[str], rooms: bool) -> list[Code]:
    """Every code to write for ``buildings`` (and their rooms)."""
    codes: list[Code] = []
    for b in buildings:
        codes.append(Code(b, None, feedback_url(public_url, b), SAFE.sub("_", b)))
        if rooms:
            for room in rooms_of(campus, b):
                stem = f"{SAFE.sub('_', b)}_{SAFE.sub('_', room)}"
                codes.append(Code(b, room, feedback_url(public_url, b, room), stem))
    return codes


def write_code(code: Code, folder: Path) -> None:
    """The code as SVG and PNG in ``folder``."""
    import segno

    qr = segno.make(code.url, error="m", micro=False)
    qr.save(str(folder / f"{code.stem}.svg"), scale=SVG_SCALE, border=4, light="#fff")
    qr.save(str(folder / f"{code.stem}.png"), scale=PNG_SCALE, border=4)


def write_sheet(building: Building, codes: list[Code], folder: Path) -> Path:
    """The printable sheet of ``building``'s codes, captioned in both languages."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    words = {lang: Words(lang) for lang in LANGUAGES}
    names = {lang: local_name(building, lang) for lang in LANGUAGES}
    html = env.get_template("qr_sheet.html").render(
        building=building, names=names, words=words, codes=codes, languages=LANGUAGES
    )
    path = folder / "sheet.html"
    path.write_text(html, encoding="utf-8")
    return path


def write_all(
    campus: Campus, public_url: str, out: Path, buildings: list[str], rooms: bool, progress: bool
) -> tuple[int, list[Path]]:
    """Write every code and sheet; (codes written, sheets written)."""
    codes = plan(campus, public_url, buildings, rooms)
    for b in buildings:
        (out / SAFE.sub("_", b)).mkdir(parents=True, exist_ok=True)
    if progress:
        with click.progressbar(codes, label="QR codes", show_pos=True) as bar:
            for code in bar:
                write_code(code, out / SAFE.sub("_", code.building))
    else:
        for code in codes:
            write_code(code, out / SAFE.sub("_", code.building))
    sheets = [
        write_sheet(
            campus.buildings[b],
            [c for c in codes if c.building == b],
            out / SAFE.sub("_", b),
        )
        for b in buildings
    ]
    return len(codes), sheets


@click.command("qr")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to write into (default: {var_dir}/qr).",
)
@click.option(
    "--building",
    "buildings",
    multiple=True,
    metavar="ID",
    help="Only this building (repeatable; default: every building).",
)
@click.option("--rooms", is_flag=True, help="Also one code per room the registry knows.")
def qr(out: Path | None, buildings: tuple[str, ...], rooms: bool) -> None:
    """Printable QR codes (SVG, PNG and an HTML sheet per building) that open
    the anonymous feedback form for a building or room."""
    from campus.registry import load_campus
    from campus.settings import Settings

    s = Settings()
    campus = load_campus(s.campus_file)
    unknown = [b for b in buildings if b not in campus.buildings]
    if unknown:
        raise click.BadParameter(
            f"unknown building {', '.join(unknown)} (known: {', '.join(campus.buildings)})",
            param_hint="--building",
        )
    chosen = list(dict.fromkeys(buildings)) or list(campus.buildings)
    folder = out or s.var_dir / "qr"
    total = len(plan(campus, s.public_url, chosen, rooms))
    count, sheets = write_all(campus, s.public_url, folder, chosen, rooms, progress=total > 20)
    click.echo(f"{count} QR code(s) for {len(chosen)} building(s) written to {folder}")
    click.echo(f"they open {s.public_url}/feedback (set CAMPUS_PUBLIC_URL to change it)")
    click.echo(f"print: {sheets[0]}" + (f" and {len(sheets) - 1} more" if len(sheets) > 1 else ""))
