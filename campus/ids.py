"""Identifier rules shared by the registry, ingest and line protocol.

Tag values (building, device, floor, room, zone) and metric names are
allowlisted rather than escaped: line protocol cannot carry a newline, CR or
tab in a tag, and a trailing backslash changes meaning (RELIABILITY.md).
"""

from __future__ import annotations

import re

TAG_VALUE_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
METRIC_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
KIND_RE = re.compile(r"[a-z][a-z0-9_]{0,31}")


def is_tag_value(value: str) -> bool:
    """True when ``value`` may be used as a tag value (and MQTT topic level)."""
    return TAG_VALUE_RE.fullmatch(value) is not None


def is_metric_name(value: str) -> bool:
    """True when ``value`` may be used as a metric (field) name."""
    return METRIC_NAME_RE.fullmatch(value) is not None
