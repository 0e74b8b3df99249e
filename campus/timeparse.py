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
    """``90s``, ``15m``, ``1h``, ``7d`` as a timedelta."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m|h|d|w)", text.strip())
    if not m:
        raise ValueError(f"cannot read duration {text!r}: use e.g. 30s, 15m, 1h, 7d")
    return timedelta(**{_UNITS[m.group(2)]: float(m.group(1))})
