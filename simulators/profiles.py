"""Occupancy and weather: the shapes every simulated load follows.

Occupancy is a fraction (0-1) by building type, local hour, weekday/weekend
and academic period; it drives power, water, HVAC and dorm sensors. Outdoor
temperature follows Shanghai's seasons and days plus a seeded, smooth weather
wander. Everything is a pure function of time (and the seed).
"""

from __future__ import annotations

import itertools
import math
from datetime import datetime

from campus.calendar import Period


def _curve(points: dict[float, float]) -> list[float]:
    """96 quarter-hour values by linear interpolation of ``{hour: value}`` anchors (wrapping)."""
    anchors = sorted(points.items())
    first, last = anchors[0], anchors[-1]
    anchors = [(last[0] - 24, last[1]), *anchors, (first[0] + 24, first[1])]
    out = []
    for q in range(96):
        h = q / 4
        for (h0, v0), (h1, v1) in itertools.pairwise(anchors):
            if h0 <= h < h1:
                out.append(v0 + (v1 - v0) * (h - h0) / (h1 - h0))
                break
    return out


# (weekday, weekend) curves in term time.
TERM: dict[str, tuple[list[float], list[float]]] = {
    "teaching": (
        _curve(
            {
                0: 0.02,
                7: 0.05,
                8: 0.75,
                11.5: 0.8,
                12: 0.35,
                13.5: 0.35,
                14: 0.8,
                17.5: 0.7,
                18: 0.25,
                19: 0.35,
                21: 0.3,
                22: 0.05,
            }
        ),
        _curve({0: 0.02, 8: 0.03, 9: 0.15, 17: 0.15, 18: 0.05}),
    ),
    "laboratory": (
        _curve({0: 0.15, 7: 0.2, 9: 0.7, 12: 0.6, 14: 0.75, 18: 0.6, 22: 0.35, 23.5: 0.2}),
        _curve({0: 0.15, 9: 0.2, 10: 0.4, 18: 0.35, 22: 0.2}),
    ),
    "library": (
        _curve({0: 0.02, 7.5: 0.05, 8: 0.35, 12: 0.5, 15: 0.7, 20: 0.8, 22: 0.4, 22.5: 0.03}),
        _curve({0: 0.02, 8: 0.05, 9: 0.4, 15: 0.6, 21: 0.5, 22: 0.03}),
    ),
    "canteen": (
        _curve(
            {
                0: 0.02,
                6: 0.1,
                7: 0.6,
                8.5: 0.3,
                10: 0.4,
                11.5: 1.0,
                13: 0.4,
                14: 0.2,
                16.5: 0.5,
                17.5: 0.9,
                19: 0.4,
                20: 0.1,
                21: 0.03,
            }
        ),
        _curve({0: 0.02, 7: 0.3, 9: 0.2, 11.5: 0.7, 13: 0.3, 17.5: 0.6, 19: 0.2, 20.5: 0.03}),
    ),
    "sports": (
        _curve({0: 0.02, 6: 0.1, 8: 0.2, 12: 0.3, 16: 0.6, 19: 0.8, 21: 0.5, 22: 0.03}),
        _curve({0: 0.02, 8: 0.3, 10: 0.7, 18: 0.6, 21: 0.4, 22: 0.03}),
    ),
    "admin": (
        _curve(
            {
                0: 0.02,
                7.5: 0.05,
                8.5: 0.8,
                11.5: 0.8,
                12: 0.4,
                13.5: 0.8,
                17.5: 0.7,
                18.5: 0.1,
                20: 0.03,
            }
        ),
        _curve({0: 0.02, 9: 0.05, 17: 0.05}),
    ),
    "dormitory": (
        _curve(
            {
                0: 0.95,
                6.5: 0.95,
                8: 0.4,
                11.5: 0.3,
                12.5: 0.5,
                14: 0.25,
                17: 0.35,
                19: 0.65,
                22: 0.9,
                23: 0.95,
            }
        ),
        _curve({0: 0.95, 9: 0.85, 11: 0.6, 14: 0.5, 18: 0.55, 21: 0.8, 23: 0.95}),
    ),
    "central_plant": (
        _curve({0: 0.5}),
        _curve({0: 0.5}),
    ),
}

# Share of term-time occupancy left in each period, by building type.
PERIOD_FACTOR: dict[Period, dict[str, float]] = {
    Period.term: {},
    Period.exams: {"teaching": 0.7, "library": 1.25, "sports": 0.5, "canteen": 0.9},
    Period.holidays: {
        "teaching": 0.06,
        "laboratory": 0.5,
        "library": 0.2,
        "canteen": 0.12,
        "sports": 0.15,
        "admin": 0.45,
        "dormitory": 0.1,
    },
}


def occupancy(btype: str, local: datetime, period: Period, closed: bool) -> float:
    """Fraction of the building in use at a local time."""
    weekday, weekend = TERM[btype]
    curve = weekend if local.weekday() >= 5 else weekday
    q = (local.hour + local.minute / 60 + local.second / 3600) * 4
    i = int(q) % 96
    frac = q - int(q)
    value = curve[i] + (curve[(i + 1) % 96] - curve[i]) * frac
    factor = PERIOD_FACTOR[period].get(btype, 1.0)
    if closed and btype != "dormitory":
        factor = min(factor, 0.05 if btype != "laboratory" else 0.3)
    return max(0.0, min(1.0, value * factor))


def outdoor_temp(ts: float, local: datetime, seed: int) -> float:
    """Outdoor air temperature (degC) in Shanghai's climate at epoch ``ts``."""
    doy = local.timetuple().tm_yday + local.hour / 24
    annual = 17.0 - 11.0 * math.cos(2 * math.pi * (doy - 20) / 365.25)
    h = local.hour + local.minute / 60
    daily = 3.5 * math.cos(2 * math.pi * (h - 14.5) / 24)
    days = ts / 86400
    p1, p2, p3 = (seed * 0.7311) % 6.283, (seed * 1.913) % 6.283, (seed * 2.417) % 6.283
    wander = (
        2.2 * math.sin(2 * math.pi * days / 3.3 + p1)
        + 1.4 * math.sin(2 * math.pi * days / 7.9 + p2)
        + 0.8 * math.sin(2 * math.pi * days / 1.7 + p3)
    )
    return annual + daily + wander


def cooling_demand(t_out: float) -> float:
    """0-1 share of design cooling load."""
    return max(0.0, min(1.0, (t_out - 22.0) / 12.0))


def heating_demand(t_out: float) -> float:
    """0-1 share of design heating load."""
    return max(0.0, min(1.0, (12.0 - t_out) / 14.0))
