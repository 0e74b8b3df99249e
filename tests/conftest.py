"""Fixtures shared by every test: paths to the shipped configuration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config"
#: The team's shared folder (labelled data sets, Grafana's schemas and API contract):
#: $CAMPUS_SHARED_DIR, else `shared` beside the checkout, else /work/shared.
SHARED = Path(
    os.environ.get("CAMPUS_SHARED_DIR")
    or next(
        (p for p in (ROOT.parent / "shared", Path("/work/shared")) if p.is_dir()),
        Path("/work/shared"),
    )
)


@pytest.fixture(scope="session")
def campus():
    """The demo campus registry."""
    from campus.registry import load_campus

    return load_campus(CONFIG / "campus.yaml")


@pytest.fixture(scope="session")
def calendar():
    """The demo academic calendar."""
    from campus.calendar import load_calendar

    return load_calendar(CONFIG / "calendar.yaml")
