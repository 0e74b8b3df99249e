"""Grafana's macros and template variables, expanded the way its InfluxDB datasource does.

``campus dashboards check`` runs every panel's InfluxQL against a real InfluxDB,
so the query must first become what Grafana would send:

* ``$timeFilter`` becomes ``time >= <from>ms and time <= <to>ms``;
* ``$__interval`` / ``$__interval_ms`` become Grafana's automatic interval: the
  range divided by the maximum number of data points, rounded to a "nice" step
  (Grafana's ``rangeutil.roundInterval``), never below the panel's or the
  datasource's minimum interval;
* ``$__from`` / ``$__to`` (epoch ms) and ``$__range``, ``$__range_s``, ``$__range_ms``;
* template variables in any of Grafana's syntaxes (``$var``, ``${var}``,
  ``${var:format}``, ``[[var]]``). Multi-value and "All" selections become a
  regex alternation ``(a|b)`` of regex-escaped values, as in ``/^$building$/``;
  a single value is escaped only where it sits inside a regex literal.

Everything here is pure: no I/O, no clock (``now`` is passed in).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

#: Variables Grafana defines by itself (InfluxQL's ``$timeFilter`` included).
BUILTINS = frozenset(
    {
        "timeFilter",
        "interval",
        "__interval",
        "__interval_ms",
        "__from",
        "__to",
        "__range",
        "__range_s",
        "__range_ms",
        "__rate_interval",
        "__dashboard",
        "__org",
        "__user",
        "__timezone",
    }
)

#: Grafana's variable syntaxes: ``$var``, ``[[var:fmt]]``, ``${var.field:fmt}``.
VARIABLE_RE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^}]+))?(?::([^}]+))?\}"
)

# InfluxQL regex literals after =~, !~ or FROM (where single values get escaped).
_REGEX_LITERAL = re.compile(r"(?:[=!]~|\bFROM)\s*/(?:[^/\\\n]|\\.)*/", re.IGNORECASE)

# Grafana's rangeutil.roundInterval: (upper bound in ms, rounded interval in ms).
_ROUNDING: tuple[tuple[int, int], ...] = (
    (10, 1),
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (210_000, 120_000),
    (450_000, 300_000),
    (750_000, 600_000),
    (1_050_000, 900_000),
    (1_500_000, 1_200_000),
    (2_700_000, 1_800_000),
    (5_400_000, 3_600_000),
    (9_000_000, 7_200_000),
    (16_200_000, 10_800_000),
    (32_400_000, 21_600_000),
    (86_400_000, 43_200_000),
    (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000),
    (3_628_800_000, 2_592_000_000),
)
_YEAR_MS = 31_536_000_000

_UNIT_MS = {
    "ms": 1,
    "s": 1_000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
    "y": _YEAR_MS,
}
_INTERVAL_RE = re.compile(r"^\s*>?\s*(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)\s*$")
_DATE_MATH = re.compile(r"([+-])(\d+)([smhdwMy])|/([smhdwMy])")


class MacroError(ValueError):
    """A query that cannot be expanded (undefined variable, bad format, bad time)."""


# ------------------------------------------------------------------ intervals


def round_interval(interval_ms: float) -> int:
    """Grafana's ``roundInterval``: the "nice" step (ms) nearest below-ish ``interval_ms``."""
    for bound, rounded in _ROUNDING:
        if interval_ms < bound:
            return rounded
    return _YEAR_MS


def format_interval(interval_ms: int) -> str:
    """Grafana's ``secondsToHms``: the largest whole unit (``1y``, ``30d``, ``5m``, ``500ms``)."""
    for unit, size in (("y", _YEAR_MS), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if interval_ms >= size:
            return f"{interval_ms // size}{unit}"
    if interval_ms >= 1_000:
        return f"{interval_ms // 1_000}s"
    return f"{max(interval_ms, 1)}ms"


def parse_interval(text: str) -> int:
    """Milliseconds of a Grafana interval such as ``10s``, ``>1m`` or ``1h``."""
    m = _INTERVAL_RE.match(text)
    if not m:
        raise MacroError(f"cannot read interval {text!r}: use e.g. 10s, 1m, 1h")
    return int(float(m.group(1)) * _UNIT_MS[m.group(2)])


def calculate_interval(from_ms: int, to_ms: int, max_points: int, low_limit_ms: int = 1) -> int:
    """Grafana's ``calculateInterval``: range / ``max_points``, rounded, at least the limit."""
    rounded = round_interval((to_ms - from_ms) / max(max_points, 1))
    return max(rounded, low_limit_ms)


def time_filter(from_ms: int, to_ms: int) -> str:
    """What ``$timeFilter`` becomes in a query Grafana sends to InfluxDB."""
    return f"time >= {from_ms}ms and time <= {to_ms}ms"


# --------------------------------------------------------------- time ranges


def parse_time(text: str, now: datetime, *, round_up: bool = False) -> int:
    """Epoch ms of a Grafana time: ``now``, ``now-24h``, ``now-1d/d``, ISO 8601, or epoch ms.

    Rounding (``/d``) goes to the start of the unit, or to its end when
    ``round_up`` (the range's ``to``), in UTC.
    """
    t = text.strip()
    if t.isdigit():
        return int(t)
    if t.startswith("now"):
        return _date_math(t, now, round_up)
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        raise MacroError(
            f"cannot read time {text!r}: use now, now-24h, now-7d/d, an ISO time or epoch ms"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def _date_math(text: str, now: datetime, round_up: bool) -> int:
    rest = text[3:]
    dt = now.astimezone(UTC)
    pos = 0
    for m in _DATE_MATH.finditer(rest):
        if m.start() != pos:
            break
        pos = m.end()
        if m.group(4):
            dt = _round(dt, m.group(4), round_up)
        else:
            amount = int(m.group(2)) * (1 if m.group(1) == "+" else -1)
            dt = _shift(dt, amount, m.group(3))
    if pos != len(rest):
        raise MacroError(f"cannot read time {text!r}: use e.g. now-24h or now-7d/d")
    return int(dt.timestamp() * 1000)


def _shift(dt: datetime, amount: int, unit: str) -> datetime:
    if unit == "M":
        month = dt.month - 1 + amount
        return dt.replace(year=dt.year + month // 12, month=month % 12 + 1, day=1) + (
            timedelta(days=dt.day - 1)
        )
    if unit == "y":
        return dt.replace(year=dt.year + amount)
    return dt + timedelta(milliseconds=amount * _UNIT_MS[unit])


def _round(dt: datetime, unit: str, up: bool) -> datetime:
    if unit in "smh":
        size = _UNIT_MS[unit] // 1000
        start = datetime.fromtimestamp(int(dt.timestamp()) // size * size, UTC)
        end = start + timedelta(seconds=size)
    elif unit in "dw":
        start = dt.replace(hour=0, minute=0, second=0, microsecond=0)
        if unit == "w":
            start -= timedelta(days=start.weekday())
        end = start + timedelta(days=1 if unit == "d" else 7)
    elif unit == "M":
        start = dt.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        end = _shift(start, 1, "M")
    else:
        start = dt.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)
        end = start.replace(year=start.year + 1)
    return end - timedelta(milliseconds=1) if up else start


# ----------------------------------------------------------------- variables


def escape_regex(value: str) -> str:
    """Grafana's ``escapeRegex``: backslash every regex metacharacter and ``/``."""
    return re.sub(r"[\\^$*+?.()|\[\]{}/]", lambda m: "\\" + m.group(0), value)


@dataclass(frozen=True)
class Selection:
    """The value(s) a template variable holds for one run of the board."""

    name: str
    values: tuple[str, ...]
    multi: bool = False
    include_all: bool = False
    #: The custom value of "All" (used as is, unescaped), when "All" is selected.
    all_value: str | None = None
    all_selected: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)

    def render(self, fmt: str | None, in_regex: bool) -> str:
        """The text Grafana puts in the query for this selection."""
        if self.all_selected and self.all_value is not None and fmt in (None, "regex"):
            return self.all_value
        values = list(self.values)
        if fmt is None:
            return self._default(values, in_regex)
        return _format(values, fmt, self.name)

    def _default(self, values: list[str], in_regex: bool) -> str:
        if not (self.multi or self.include_all):
            value = values[0] if values else ""
            if _is_number(value) or not in_regex:
                return value
            return escape_regex(value)
        escaped = [escape_regex(v) for v in values]
        if len(escaped) == 1:
            return escaped[0]
        return "(" + "|".join(escaped) + ")"


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _format(values: list[str], fmt: str, name: str) -> str:
    if fmt == "raw":
        return ",".join(values)
    if fmt == "regex":
        escaped = [escape_regex(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if fmt == "pipe":
        return "|".join(values)
    if fmt == "csv":
        return ",".join(values)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in values)
    if fmt == "doublequote":
        return ",".join('"' + v.replace('"', '\\"') + '"' for v in values)
    raise MacroError(f"variable {name!r}: format {fmt!r} is not supported by the check")


def used_variables(text: str) -> list[str]:
    """Names of the variables ``text`` refers to, in order, built-ins included."""
    return [_name(m) for m in VARIABLE_RE.finditer(text)]


def undefined_variables(text: str, defined: set[str]) -> list[str]:
    """Variables ``text`` uses that are neither ``defined`` nor Grafana built-ins."""
    seen: list[str] = []
    for name in used_variables(text):
        if name not in defined and name not in BUILTINS and name not in seen:
            seen.append(name)
    return seen


def _name(m: re.Match[str]) -> str:
    return m.group(1) or m.group(2) or m.group(4)


@dataclass(frozen=True)
class TimeContext:
    """The time range and interval a query is expanded for."""

    from_ms: int
    to_ms: int
    interval_ms: int

    def builtin(self, name: str, fmt: str | None) -> str:
        """The value of a built-in variable."""
        range_ms = self.to_ms - self.from_ms
        if name == "timeFilter":
            return time_filter(self.from_ms, self.to_ms)
        if name in ("__interval", "interval", "__rate_interval"):
            return format_interval(self.interval_ms)
        if name == "__interval_ms":
            return str(self.interval_ms)
        if name in ("__from", "__to"):
            ms = self.from_ms if name == "__from" else self.to_ms
            if fmt and fmt.startswith("date"):
                return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")
            return str(ms)
        if name == "__range_ms":
            return str(range_ms)
        if name == "__range_s":
            return str(round(range_ms / 1000))
        if name == "__range":
            return f"{round(range_ms / 1000)}s"
        if name == "__timezone":
            return "utc"
        return ""


def expand(text: str, ctx: TimeContext, selections: Mapping[str, Selection]) -> str:
    """``text`` with every macro and variable replaced, as Grafana would send it.

    Raises :class:`MacroError` naming the first variable that is not defined.
    """
    regex_spans = [m.span() for m in _REGEX_LITERAL.finditer(text)]

    def replace(m: re.Match[str]) -> str:
        name = _name(m)
        fmt = m.group(3) or m.group(6)
        if name in selections:
            inside = any(a <= m.start() < b for a, b in regex_spans)
            return selections[name].render(fmt, inside)
        if name in BUILTINS:
            return ctx.builtin(name, fmt)
        raise MacroError(f"variable ${name} is not defined on the board")

    return VARIABLE_RE.sub(replace, text)


def choose(
    name: str,
    options: Sequence[str],
    current: object,
    *,
    multi: bool = False,
    include_all: bool = False,
    all_value: str | None = None,
) -> Selection:
    """The selection Grafana shows on load: the saved ``current`` if still valid, else the first.

    With "All" (``$__all``) saved, or no valid saved value and "All" offered,
    every option is selected.
    """
    wanted = _current_values(current)
    kept = [v for v in wanted if v in options]
    if "$__all" in wanted or (not kept and include_all):
        return Selection(name, tuple(options), multi, include_all, all_value, True)
    return Selection(name, tuple(kept or options[:1]), multi, include_all, all_value, False)


def _current_values(current: object) -> list[str]:
    if not isinstance(current, Mapping):
        return []
    value = current.get("value")
    if isinstance(value, list):
        return [str(v) for v in value]
    if value is None or value == "":
        return []
    return [str(value)]
