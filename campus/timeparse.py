"""Parsing of times given on the command line: ISO 8601, ``now``, or ``-1d``/``+2h``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_REL = re.compile(r"^([+-])(\d+(?:\.\d+)?)(s|m|h|d|w)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str, now: datetime) -> datetime:
    """An aware UTC datetime from ``now``, ``-30m``, ``+2h``, ``-1d`` or an ISO time.

    A naive ISO time is taken as UTC. ``now`` is passed in (no hidden clock).
    """
    t = text.strip()
    if t == "now":
        return now
    m = _REL.match(t)
    if m:
        sign, amount, unit = m.groups()
        delta = timedelta(**{_UNITS[unit]: float(amount)})
        return now + delta if sign == "+" else now - delta
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise ValueError(
            f"cannot read time {text!r}: use an ISO time (2026-09-01T08:00:00+08:00), "
            f"'now', or a relative one such as -1d, -2h, -30m"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``1h``, ``7d``, or parts together (``1h30m``) as a timedelta."""
    t = text.strip()
    parts = re.findall(r"(\d+(?:\.\d+)?)(s|m|h|d|w)", t)
    if not parts or "".join(n + u for n, u in parts) != t:
        raise ValueError(f"cannot read duration {text!r}: use e.g. 30s, 15m, 1h, 1h30m, 7d")
    total = timedelta()
    for number, unit in parts:
        total += timedelta(**{_UNITS[unit]: float(number)})
    return total
