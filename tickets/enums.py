"""The names tickets and accounts use: states, sources, roles.

Kept apart from the tables so that the command line can offer them without
importing SQLAlchemy (every ``campus`` command starts faster).
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """Where a ticket is in its life."""

    open = "open"
    acknowledged = "acknowledged"
    assigned = "assigned"
    in_progress = "in_progress"
    resolved = "resolved"
    closed = "closed"


class Source(StrEnum):
    """What raised a ticket."""

    rule = "rule"
    anomaly = "anomaly"
    feedback = "feedback"
    manual = "manual"


class Role(StrEnum):
    """What an API account may do (docs/api.md)."""

    viewer = "viewer"  # the facilities office: reads everything, changes nothing
    technician = "technician"  # works the tickets of their own team's trade or their own
    engineer = "engineer"  # every ticket, and the rules
    admin = "admin"  # everything, accounts too
