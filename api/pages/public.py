"""The public status board at ``/``: no login, the campus map with each
building's state, and the public notices of repairs under way.

The map is an inline SVG drawn from the buildings' coordinates in the registry
(no tile server: the page works offline on a phone). A building is ``ok``,
``warning`` (a P3/P4 problem) or ``fault`` (a P1/P2 one) by its public tickets
not yet resolved. The page carries nothing personal (:mod:`api.notices`): no
names, no device ids, no contact details, no ticket titles or descriptions,
nothing staff marked internal.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from api.i18n import local_name
from api.pages.render import STATIC, language, page
from api.routers.notices import board_data
from campus.registry import Campus
from campus.settings import Settings
from tickets.service import utcnow

router = APIRouter(include_in_schema=False)

MAP_WIDTH = 600
MAP_MARGIN = 45
BOX_W, BOX_H = 64, 48


def install(app: FastAPI, settings: Settings) -> None:
    """Serve the pages' stylesheet (from the package: no outside request)."""
    app.mount("/static", StaticFiles(directory=STATIC), name="static")


@dataclass(frozen=True)
class MapBuilding:
    """A building where the map draws it."""

    id: str
    number: int
    name: str
    state: str
    x: float
    y: float


@dataclass(frozen=True)
class Map:
    """The campus map: buildings placed by their coordinates, in SVG units."""

    width: int
    height: int
    w: int
    h: int
    buildings: list[MapBuilding]
    roads: list[tuple[float, float, float, float]]


def campus_map(campus: Campus, states: dict[str, str], lang: str) -> Map:
    """Place every building by latitude and longitude (an equirectangular
    projection: exact enough for a campus a few kilometres across)."""
    blds = list(campus.buildings.values())
    lat0 = sum(b.lat for b in blds) / len(blds)
    kx = math.cos(math.radians(lat0))
    xs = [b.lon * kx for b in blds]
    ys = [-b.lat for b in blds]
    span = max(max(xs) - min(xs), max(ys) - min(ys)) or 1.0
    scale = (MAP_WIDTH - 2 * MAP_MARGIN) / span
    height = int((max(ys) - min(ys)) * scale + 2 * MAP_MARGIN)
    placed = [
        MapBuilding(
            id=b.id,
            number=i,
            name=local_name(b, lang),
            state=states.get(b.id, "ok"),
            x=round((x - min(xs)) * scale + MAP_MARGIN, 1),
            y=round((y - min(ys)) * scale + MAP_MARGIN, 1),
        )
        for i, (b, x, y) in enumerate(zip(blds, xs, ys, strict=True), start=1)
    ]
    return Map(MAP_WIDTH, max(height, 2 * MAP_MARGIN), BOX_W, BOX_H, placed, _roads(placed, height))


def _roads(placed: list[MapBuilding], height: int) -> list[tuple[float, float, float, float]]:
    """Paths between the rows and columns of a campus laid out on a grid."""
    roads: list[tuple[float, float, float, float]] = []
    cols = sorted({b.x for b in placed})
    rows = sorted({b.y for b in placed})
    if len(cols) > 12 or len(rows) > 12:
        return roads  # not a grid: no paths drawn
    for a, b in itertools.pairwise(rows):
        y = round((a + b) / 2, 1)
        roads.append((10, y, MAP_WIDTH - 10, y))
    for a, b in itertools.pairwise(cols):
        x = round((a + b) / 2, 1)
        roads.append((x, 10, x, height - 10))
    return roads


@router.get("/", response_class=HTMLResponse)
def board(request: Request) -> HTMLResponse:
    """The public status board."""
    lang = language(request)
    campus: Campus = request.app.state.campus
    found, states = board_data(request, lang)
    tz = ZoneInfo(campus.timezone)

    def local(at: datetime) -> str:
        return at.astimezone(tz).strftime("%Y-%m-%d %H:%M")

    return page(
        request,
        "board.html",
        lang,
        {
            "notices": found,
            "map": campus_map(campus, states, lang),
            "local": local,
            "updated": local(utcnow()),
        },
    )
