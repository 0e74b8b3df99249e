"""Retention and rollups of the readings (contract shared by `campus db init` and the boards).

Raw readings stay in the default retention policy ``autogen`` for a configured
time (90 days by default). Continuous queries roll them up into the retention
policies ``hourly`` and ``daily``, kept for years, into measurements of the same
name (one per device kind) with the same tags. A rollup keeps each gauge's mean
under the metric's own name plus ``<metric>_min`` and ``<metric>_max``, and each
counter's last value under its own name, so one query such as
``SELECT mean("power_kw") FROM "$rp"."power"`` or
``SELECT non_negative_difference(last("energy_kwh")) FROM "$rp"."power"``
answers from raw data or from either rollup.

``campus db init`` applies all of it to a database (:func:`apply`): the
retention policies, one continuous query per kind and resolution, the
reference points in ``meta``. Continuous queries only look at the last hours,
so :func:`rollup_statements` gives the same ``SELECT ... INTO`` queries over
any past range, chunk by chunk, for ``campus db rollup``.

Hourly rollups are computed from raw data, daily ones from the hourly rollup
(a day's mean is the mean of its hourly means). Daily buckets are the campus's
local days: InfluxDB 1.x computes a continuous query's time window in UTC
(plus the ``GROUP BY time()`` offset) and ignores ``tz()`` there, so the
buckets are shifted by the time zone's standard offset instead (in a zone
with daylight saving time, summer days run from 01:00 to 01:00 local time).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from campus.errors import CampusError, SinkError
from campus.influxql import quote_ident
from campus.lineprotocol import point

if TYPE_CHECKING:
    from campus.influx import InfluxClient
    from campus.registry import Campus

RP_RAW = "autogen"
RP_HOURLY = "hourly"
RP_DAILY = "daily"

#: The dashboard variable holding the retention policy for the board's time range.
RP_VARIABLE = "rp"

#: Infinite retention policy for reference data: building positions and the rollup choice table.
RP_META = "meta"

#: The measurement (in ``RP_META``) the ``rp`` variable reads its choice from.
RP_CONFIG = "rp_config"

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS

#: Boards switch from raw data to the hourly rollup for ranges at least this long ...
HOURLY_FROM_MS = 2 * DAY_MS
#: ... and to the daily rollup for ranges at least this long.
DAILY_FROM_MS = 60 * DAY_MS

#: Rank of each retention policy in the choice: the coarsest one any rule asks for wins.
RP_RANK = {RP_RAW: 0, RP_HOURLY: 1, RP_DAILY: 2}


def rp_variable_query() -> str:
    """The InfluxQL query of the hidden dashboard variable ``rp``.

    Grafana runs it on every time-range change with ``$__from`` and ``$__to``
    expanded to epoch milliseconds; it answers exactly one row whose first
    column is ``autogen``, ``hourly`` or ``daily``. Two kinds of rows of
    ``"meta"."rp_config"`` (written by ``campus db init``) vote, and the
    coarsest vote wins (``max("rank")`` selects its row):

    * one row per policy at time 0 with ``min_ms``/``max_ms``: the range
      lengths that policy serves (raw below 2 days, daily from 60 days);
    * with a finite raw retention R, one ``hourly`` row per day ``g`` of a
      grid, stamped ``g + R`` with field ``start_ms = g``: a row stamped
      before ``now()`` with ``start_ms >= $__from`` exists exactly when the
      range starts more than R ago (to within a day), when raw data there is
      already gone, so even a short range that far back reads the rollup.
    """
    table = f'"{RP_META}"."{RP_CONFIG}"'
    length = "$__to - $__from"
    by_length = (
        f'SELECT "rp", "rank" FROM {table} WHERE "min_ms" <= {length} AND "max_ms" > {length}'
    )
    by_age = f'SELECT "rp", "rank" FROM {table} WHERE time <= now() AND "start_ms" >= $__from'
    return f'SELECT "rp", max("rank") FROM ({by_length}), ({by_age})'


#: Continuous queries whose names start with this belong to ``campus db init``,
#: which drops those it no longer wants.
CQ_PREFIX = "campus_rollup_"

#: The grid of days the ``raw_age`` rows of ``rp_config`` cover (see :func:`rp_variable_query`).
AGE_GRID_START = datetime(2000, 1, 1, tzinfo=UTC)
AGE_GRID_END = datetime(2100, 1, 1, tzinfo=UTC)

#: Longest retention accepted (the ``raw_age`` rows must stay within InfluxDB's time range).
MAX_RETENTION_MS = 100 * 365 * DAY_MS

#: Shard group duration of ``meta``: its few points (time 0, and the day grid up
#: to 2100) then fill three shards instead of one per week.
META_SHARD_DURATION = "5200w"


@dataclass(frozen=True)
class Resolution:
    """One rollup: its retention policy, bucket, source, and how its
    continuous query runs: every ``resample_every`` it recomputes the buckets
    of the last ``resample_for``, so a bucket shows before it ends (once
    ``bucket - resample_every`` of it passed) and readings that arrive late
    within ``resample_for`` still count."""

    rp: str
    bucket_ms: int
    source_rp: str
    resample_every: str
    resample_for: str


HOURLY = Resolution(RP_HOURLY, HOUR_MS, RP_RAW, "15m", "2h")
DAILY = Resolution(RP_DAILY, DAY_MS, RP_HOURLY, "1h", "2d")
RESOLUTIONS = (HOURLY, DAILY)


# ------------------------------------------------------------------ retention


@dataclass(frozen=True)
class Retention:
    """A retention policy duration: ``text`` as InfluxQL takes it, ``ms`` (None: forever)."""

    text: str
    ms: int | None


_RETENTION = re.compile(r"(\d{1,9})(h|d|w)")
_UNIT_MS = {"h": HOUR_MS, "d": DAY_MS, "w": 7 * DAY_MS}


def parse_retention(text: str) -> Retention:
    """``INF`` (or ``0``) or a whole number of hours, days or weeks (``48h``, ``90d``, ``520w``)."""
    t = text.strip().lower()
    if t in ("inf", "0"):  # InfluxDB 2 writes forever as 0
        return Retention("INF", None)
    m = _RETENTION.fullmatch(t)
    if not m:
        raise CampusError(
            f"cannot read retention {text!r}: use INF or a whole number of hours, "
            "days or weeks, such as 48h, 90d or 520w"
        )
    ms = int(m.group(1)) * _UNIT_MS[m.group(2)]
    if not HOUR_MS <= ms <= MAX_RETENTION_MS:
        raise CampusError(f"retention {text!r} must lie between 1h and 100 years (or be INF)")
    return Retention(t, ms)


_GO_DURATION = re.compile(r"(\d+)h(\d+)m(\d+)s")


def go_duration_ms(text: str) -> int | None:
    """A duration as ``SHOW RETENTION POLICIES`` prints it (``2160h0m0s``; ``0s``
    is infinite) in milliseconds, None for infinite."""
    m = _GO_DURATION.fullmatch(text)
    if not m:
        return None
    h, mins, s = (int(g) for g in m.groups())
    return ((h * 60 + mins) * 60 + s) * 1000


# ---------------------------------------------------------------- the queries


@dataclass(frozen=True)
class KindRollup:
    """What a rollup keeps of one kind: gauges (mean, min, max) and counters (last)."""

    kind: str
    gauges: tuple[str, ...]
    counters: tuple[str, ...]


def kind_rollups(campus: Campus) -> list[KindRollup]:
    """One entry per kind that has devices, metrics united over its devices
    (a metric that is a counter on any device is rolled up as a counter)."""
    counter: dict[str, dict[str, bool]] = {}
    for device in campus:
        metrics = counter.setdefault(device.kind, {})
        for name, spec in device.metrics.items():
            metrics[name] = metrics.get(name, False) or spec.counter
    return [
        KindRollup(
            kind,
            tuple(sorted(m for m, c in metrics.items() if not c)),
            tuple(sorted(m for m, c in metrics.items() if c)),
        )
        for kind, metrics in sorted(counter.items())
    ]


def day_offset_ms(timezone: str) -> int:
    """Where the campus's local day starts, in ms after UTC midnight (standard time)."""
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise CampusError(f"unknown time zone {timezone!r} in campus.yaml") from None
    offsets = [zone.utcoffset(datetime(2025, month, 1)) for month in (1, 7)]
    standard = min(o for o in offsets if o is not None)
    return int(-standard.total_seconds() * 1000) % DAY_MS


def influx_duration(ms: int) -> str:
    """A duration literal for InfluxQL in the largest whole unit."""
    for unit, size in (("d", DAY_MS), ("h", HOUR_MS), ("m", 60_000), ("s", 1000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def _aggregates(k: KindRollup, from_raw: bool) -> str:
    parts = []
    for m in k.gauges:
        mean, low, high = quote_ident(m), quote_ident(f"{m}_min"), quote_ident(f"{m}_max")
        parts += [
            f"mean({mean}) AS {mean}",
            f"min({mean if from_raw else low}) AS {low}",
            f"max({mean if from_raw else high}) AS {high}",
        ]
    parts += [f"last({quote_ident(c)}) AS {quote_ident(c)}" for c in k.counters]
    return ", ".join(parts)


def rollup_select(
    db: str,
    k: KindRollup,
    res: Resolution,
    offset_ms: int,
    span: tuple[int, int] | None = None,
) -> str:
    """The ``SELECT ... INTO`` of one kind and resolution, over ``span``
    (epoch ms, start inclusive) or, without it, for a continuous query."""
    target = f"{quote_ident(db)}.{quote_ident(res.rp)}.{quote_ident(k.kind)}"
    source = f"{quote_ident(db)}.{quote_ident(res.source_rp)}.{quote_ident(k.kind)}"
    where = f" WHERE time >= {span[0]}ms AND time < {span[1]}ms" if span else ""
    offset = offset_ms % res.bucket_ms
    bucket = influx_duration(res.bucket_ms) + (f", {influx_duration(offset)}" if offset else "")
    return (
        f"SELECT {_aggregates(k, res.source_rp == RP_RAW)} INTO {target} FROM {source}"
        f"{where} GROUP BY time({bucket}), *"
    )


@dataclass(frozen=True)
class ContinuousQuery:
    """A continuous query; its name ends in a digest of its text, so a changed
    query (a new metric in the registry) gets a new name and replaces the old."""

    name: str
    kind: str
    rp: str
    statement: str


def continuous_queries(
    db: str, kinds: Sequence[KindRollup], offset_ms: int
) -> list[ContinuousQuery]:
    """The continuous queries ``campus db init`` keeps: one per kind and resolution."""
    out = []
    for k in kinds:
        for res in RESOLUTIONS:
            body = (
                f"RESAMPLE EVERY {res.resample_every} FOR {res.resample_for} "
                f"BEGIN {rollup_select(db, k, res, offset_ms)} END"
            )
            digest = hashlib.sha256(body.encode()).hexdigest()[:8]
            name = f"{CQ_PREFIX}{res.rp}_{k.kind}_{digest}"
            statement = f"CREATE CONTINUOUS QUERY {quote_ident(name)} ON {quote_ident(db)} {body}"
            out.append(ContinuousQuery(name, k.kind, res.rp, statement))
    return out


@dataclass(frozen=True)
class RollupStep:
    """One ``SELECT ... INTO`` of a backfill, with what it covers."""

    kind: str
    rp: str
    start_ms: int
    end_ms: int
    query: str


def day_spans(
    start_ms: int, end_ms: int, chunk_days: int, offset_ms: int
) -> Iterator[tuple[int, int]]:
    """``[start, end)`` widened to whole local days and cut into ``chunk_days`` pieces."""
    first = (start_ms - offset_ms) // DAY_MS * DAY_MS + offset_ms
    last = -((offset_ms - end_ms) // DAY_MS) * DAY_MS + offset_ms
    step = chunk_days * DAY_MS
    for t in range(first, last, step):
        yield t, min(t + step, last)


def rollup_statements(
    db: str,
    kinds: Sequence[KindRollup],
    start_ms: int,
    end_ms: int,
    offset_ms: int,
    chunk_days: int = 7,
) -> list[RollupStep]:
    """Every query that recomputes both rollups over ``[start, end)`` (whole
    local days): the hourly rollup first, since the daily one reads it."""
    spans = list(day_spans(start_ms, end_ms, chunk_days, offset_ms))
    return [
        RollupStep(k.kind, res.rp, a, b, rollup_select(db, k, res, offset_ms, (a, b)))
        for res in RESOLUTIONS
        for k in kinds
        for a, b in spans
    ]


# ------------------------------------------------------------ reference data


def building_points(campus: Campus) -> list[str]:
    """One ``meta.buildings`` point per building, at time 0 (the map's positions)."""
    return [
        point(
            "buildings",
            {"building": b.id, "type": str(b.type)},
            {
                "lat": b.lat,
                "lon": b.lon,
                "name": b.name,
                "name_zh": b.name_zh or b.name,
                "floors": float(b.floors),
            },
            0,
        )
        for b in campus.buildings.values()
    ]


def range_points() -> list[str]:
    """The ``range`` rows of ``rp_config``: the range lengths each policy serves."""
    bounds = {
        RP_RAW: (0, HOURLY_FROM_MS),
        RP_HOURLY: (HOURLY_FROM_MS, DAILY_FROM_MS),
        RP_DAILY: (DAILY_FROM_MS, 1e15),
    }
    return [
        point(
            RP_CONFIG,
            {"rule": "range", "policy": rp},
            {"rp": rp, "rank": float(RP_RANK[rp]), "min_ms": float(lo), "max_ms": float(hi)},
            0,
        )
        for rp, (lo, hi) in bounds.items()
    ]


def raw_age_points(raw: Retention) -> list[str]:
    """The ``raw_age`` rows: one per day ``g`` of the grid, stamped ``g`` plus the
    raw retention (none when raw data is kept forever)."""
    if raw.ms is None:
        return []
    start = int(AGE_GRID_START.timestamp() * 1000)
    end = int(AGE_GRID_END.timestamp() * 1000)
    return [
        point(
            RP_CONFIG,
            {"rule": "raw_age"},
            {"rp": RP_HOURLY, "rank": float(RP_RANK[RP_HOURLY]), "start_ms": float(g)},
            g + raw.ms,
        )
        for g in range(start, end, DAY_MS)
    ]


# ------------------------------------------------------------------- applying


def query_rows(client: InfluxClient, q: str, database: bool = True) -> list[dict[str, Any]]:
    """The rows of a query's answer as dicts (tags merged in)."""
    from campus.influx import rows

    return rows(client.query(q, database=database))


def shard_duration(ret: Retention) -> str:
    """The shard group duration InfluxDB itself picks for a retention policy."""
    if ret.ms is not None and ret.ms < 2 * DAY_MS:
        return "1h"
    if ret.ms is not None and ret.ms <= 180 * DAY_MS:
        return "1d"
    return "7d"


def _duration_ms(literal: str) -> int:
    m = re.fullmatch(r"(\d+)(h|d|w)", literal)
    assert m, literal
    return int(m.group(1)) * _UNIT_MS[m.group(2)]


def ensure_retention_policies(client: InfluxClient, raw: Retention, rollup: Retention) -> list[str]:
    """Create or alter ``autogen`` (raw, default), ``hourly``, ``daily`` and ``meta``."""
    db = quote_ident(client.database)
    wanted = (
        (RP_RAW, raw, shard_duration(raw), True),
        (RP_HOURLY, rollup, shard_duration(rollup), False),
        (RP_DAILY, rollup, shard_duration(rollup), False),
        (RP_META, Retention("INF", None), META_SHARD_DURATION, False),
    )
    have = {r["name"]: r for r in query_rows(client, f"SHOW RETENTION POLICIES ON {db}")}
    changes = []
    for name, ret, shard, default in wanted:
        spec = f"DURATION {ret.text} REPLICATION 1 SHARD DURATION {shard}"
        spec += " DEFAULT" if default else ""
        row = have.get(name)
        if row is None:
            client.query(f"CREATE RETENTION POLICY {quote_ident(name)} ON {db} {spec}")
            changes.append(f"created retention policy {name} ({ret.text})")
        elif (
            go_duration_ms(row["duration"]) != ret.ms
            or go_duration_ms(row["shardGroupDuration"]) != _duration_ms(shard)
            or (default and not row["default"])
        ):
            client.query(f"ALTER RETENTION POLICY {quote_ident(name)} ON {db} {spec}")
            changes.append(f"set retention policy {name} to {ret.text}")
    return changes


def current_retention(client: InfluxClient, rp: str) -> Retention | None:
    """The duration of retention policy ``rp`` on the server (None: no such policy)."""
    if not database_exists(client):
        return None
    for r in query_rows(client, f"SHOW RETENTION POLICIES ON {quote_ident(client.database)}"):
        if r["name"] == rp:
            ms = go_duration_ms(r["duration"])
            return Retention("INF" if ms is None else influx_duration(ms), ms)
    return None


def installed_queries(client: InfluxClient) -> dict[str, str]:
    """The continuous queries on the client's database, by name."""
    out = {}
    for s in client.query("SHOW CONTINUOUS QUERIES", database=False):
        if s.get("name") == client.database:
            out.update({row[0]: row[1] for row in s.get("values") or []})
    return out


def ensure_continuous_queries(client: InfluxClient, wanted: Sequence[ContinuousQuery]) -> list[str]:
    """Create the wanted continuous queries, drop ours that are no longer wanted."""
    db = quote_ident(client.database)
    have = installed_queries(client)
    names = {cq.name for cq in wanted}
    changes = []
    for name in sorted(have):
        if name.startswith(CQ_PREFIX) and name not in names:
            client.query(f"DROP CONTINUOUS QUERY {quote_ident(name)} ON {db}")
            changes.append(f"dropped continuous query {name}")
    for cq in wanted:
        if cq.name not in have:
            client.query(cq.statement)
            changes.append(f"created continuous query {cq.name}")
    return changes


def write_into(client: InfluxClient, rp: str, lines: Sequence[str], chunk: int = 20_000) -> None:
    """Write ``lines`` (ms timestamps) into retention policy ``rp``, in chunks."""
    for i in range(0, len(lines), chunk):
        client.write(lines[i : i + chunk], precision="ms", rp=rp)


def ensure_reference(
    client: InfluxClient, campus: Campus, raw: Retention, *, can_drop: bool = True
) -> list[str]:
    """Write the building positions and the ``rp`` choice table into ``meta``.

    Rewriting the same points changes nothing; the ``raw_age`` rows are
    replaced only when the raw retention changed. A server that cannot drop
    series over InfluxQL (2.x, 3.x) keeps the rows of earlier retentions too:
    the choice then follows the shortest raw retention configured so far,
    which reads a rollup where raw data might still exist, never the reverse.
    """
    write_into(client, RP_META, building_points(campus) + range_points())
    first = client.query(
        f'SELECT first("start_ms") FROM {quote_ident(RP_META)}.{quote_ident(RP_CONFIG)} '
        "WHERE \"rule\" = 'raw_age'"
    )
    have_first = first[0]["values"][0][0] if first else None
    want_first = int(AGE_GRID_START.timestamp() * 1000) + raw.ms if raw.ms is not None else None
    if have_first == want_first:
        return []
    if have_first is not None and can_drop:
        client.query(f"DROP SERIES FROM {quote_ident(RP_CONFIG)} WHERE \"rule\" = 'raw_age'")
    write_into(client, RP_META, raw_age_points(raw))
    return [f"wrote the rollup choice for raw data kept {raw.text}"]


def server_version(client: InfluxClient) -> str:
    """The version the server reports on ``/ping`` (``1.6.7~rc0``, ``v2.7.10``, ``3.2.0``)."""
    import httpx

    try:
        return httpx.get(f"{client.url}/ping", timeout=5.0).headers.get("X-Influxdb-Version", "")
    except httpx.HTTPError as exc:
        raise SinkError(f"InfluxDB unreachable: {exc!r}", retryable=True) from exc


def has_continuous_queries(version: str) -> bool:
    """True for InfluxDB 1.x; 2.x and 3.x keep retention in buckets and roll up
    with tasks or plugins instead (docs/retention.md)."""
    return not version.lstrip("v").startswith(("2", "3"))


def database_exists(client: InfluxClient) -> bool:
    """True when the client's database exists."""
    return any(r["name"] == client.database for r in query_rows(client, "SHOW DATABASES", False))


def longest(a: Retention, b: Retention | None) -> Retention:
    """The longer of two retentions (``b`` may be missing)."""
    if b is None or a.ms is None:
        return a
    return b if b.ms is None or b.ms > a.ms else a


def apply(client: InfluxClient, campus: Campus, raw: Retention, rollup: Retention) -> list[str]:
    """Bring an InfluxDB 1.x database to the wanted state (idempotent); say what changed."""
    changes = [] if database_exists(client) else [f"created database {client.database}"]
    client.create_database()
    changes += ensure_retention_policies(client, raw, rollup)
    kinds = kind_rollups(campus)
    offset = day_offset_ms(campus.timezone)
    changes += ensure_continuous_queries(client, continuous_queries(client.database, kinds, offset))
    changes += ensure_reference(client, campus, raw)
    return changes


def raw_span(client: InfluxClient, kinds: Sequence[KindRollup]) -> tuple[int, int] | None:
    """Epoch ms of the first and last raw reading of any kind (None: no data)."""
    times: list[int] = []
    for k in kinds:
        source = f"{quote_ident(RP_RAW)}.{quote_ident(k.kind)}"
        for order in ("ASC", "DESC"):
            for s in client.query(
                f"SELECT * FROM {source} ORDER BY time {order} LIMIT 1", epoch="ms"
            ):
                times.append(int(s["values"][0][0]))
    return (min(times), max(times) + 1) if times else None


def run_step(client: InfluxClient, step: RollupStep) -> int:
    """Run one backfill query; the number of rollup points it wrote."""
    return sum(int(row.get("written") or 0) for row in query_rows(client, step.query))


def point_counts(client: InfluxClient) -> dict[str, dict[str, int]]:
    """Points per retention policy and measurement (the most of any field)."""
    db = quote_ident(client.database)
    out: dict[str, dict[str, int]] = {}
    for r in query_rows(client, f"SHOW RETENTION POLICIES ON {db}"):
        counts = out.setdefault(r["name"], {})
        for s in client.query(f"SELECT count(*) FROM {quote_ident(r['name'])}./.*/"):
            values = [v for v in s["values"][0][1:] if isinstance(v, int | float)]
            counts[s["name"]] = int(max(values, default=0))
    return out
