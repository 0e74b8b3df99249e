"""InfluxDB line protocol, written by one careful function.

Escaping follows the line-protocol reference: commas and spaces in the
measurement; commas, equals signs and spaces in tag keys, tag values and field
keys; double quotes and backslashes in string field values. Tag values that
line protocol cannot carry at all (newline, CR, tab, a trailing backslash,
empty) raise instead of being mangled: callers allowlist them first.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import orjson

_MEAS = str.maketrans({",": r"\,", " ": r"\ "})
_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_FORBIDDEN = ("\n", "\r", "\t")


def _check(kind: str, value: str) -> None:
    if not value:
        raise ValueError(f"empty {kind}")
    if "\n" in value or "\r" in value or "\t" in value:
        raise ValueError(f"{kind} {value!r} contains a newline, CR or tab")
    if value.endswith("\\"):
        raise ValueError(f"{kind} {value!r} ends with a backslash")


def escape_measurement(name: str) -> str:
    """Escape a measurement name."""
    _check("measurement", name)
    return name.translate(_MEAS)


def escape_key(name: str) -> str:
    """Escape a tag key, tag value or field key."""
    _check("key or tag value", name)
    return name.translate(_KEY)


def escape_field_key(name: str) -> str:
    """Escape a field key; a backslash is refused (InfluxDB's field scanner
    treats it as escaping the next byte, which breaks the line)."""
    if "\\" in name:
        raise ValueError(f"field key {name!r} contains a backslash")
    return escape_key(name)


def format_field_value(value: float | int | bool | str) -> str:
    """Format a field value: numbers as floats (the contract), strings quoted."""
    if isinstance(value, str):
        if any(c in value for c in ("\n", "\r")):
            value = value.replace("\r", " ").replace("\n", " ")
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    try:
        f = float(value)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f):
        raise ValueError(f"non-finite field value {value!r}")
    return repr(f)


def series(measurement: str, tags: Mapping[str, str]) -> str:
    """The escaped series key (measurement and tags, sorted by key) that starts a line."""
    head = escape_measurement(measurement)
    for k in sorted(tags):
        head += f",{escape_key(k)}={escape_key(tags[k])}"
    return head


_FIELD_KEYS: dict[str, str] = {}


def line(head: str, fields: Mapping[str, float | int | bool | str], ts: int | None) -> str:
    """A line from a series key made by :func:`series` (cache it per device)."""
    if not fields:
        raise ValueError("a point needs at least one field")
    parts = []
    keys = _FIELD_KEYS
    for k, v in fields.items():
        fk = keys.get(k)
        if fk is None:
            fk = escape_field_key(k)
            if len(keys) < 100_000:
                keys[k] = fk
        if type(v) is float and v - v == 0:
            parts.append(f"{fk}={v!r}")
        else:
            parts.append(f"{fk}={format_field_value(v)}")
    body = ",".join(parts)
    return f"{head} {body}" if ts is None else f"{head} {body} {int(ts)}"


def float_template(head: str, keys: Iterable[str]) -> str:
    """A ``%`` format for lines of one series whose fields ``keys`` are all
    finite floats: ``template % (*float_texts(values), ts)`` writes the line
    (what the ingester checked needs no checking again)."""
    fields = ",".join(f"{escape_field_key(k).replace('%', '%%')}=%s" for k in keys)
    if not fields:
        raise ValueError("a point needs at least one field")
    return f"{head.replace('%', '%%')} {fields} %d"


def float_texts(values: list[float]) -> list[str]:
    """Field values for finite floats, many at once: the shortest text that
    reads back as the same float (orjson's formatting, ``1e-05`` written
    ``0.00001``, which InfluxDB reads alike). Formatting a batch in one call is
    about twice as fast as ``repr`` of each value."""
    if not values:
        return []
    text = orjson.dumps(values)[1:-1].decode()
    if "null" in text:  # orjson writes NaN and infinities as null
        raise ValueError("non-finite field value")
    return text.split(",")


def point(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, float | int | bool | str],
    ts: int | None,
) -> str:
    """One line of line protocol; tags sorted by key as InfluxDB prefers."""
    return line(series(measurement, tags), fields, ts)
