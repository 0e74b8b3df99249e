"""Fixtures shared by every test: paths to the shipped configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "config"


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
