"""The campus state: each building's devices, open tickets and firing alerts,
summed up into one word per building, for ``/api/campus``, the buildings and
devices routes, the public board and the live stream.

Computing it reads InfluxDB (the newest reading of every device, and the
newest ``device_status`` of each) and the ticket store (open tickets and firing
alerts by building and severity): a fixed number of queries whatever the size
of the campus, about 50 ms on the demo campus of 855 devices. Requests never
pay for that: :class:`CampusState` keeps one :class:`Snapshot` shared by all of
them and, once it is ``max_age_s`` old, computes the next in a background
thread while requests go on reading the current one (stale while
revalidating). Only the first request after start waits for a computation.

**Device status.**

* ``online``: a reading within the last ``STALE_INTERVALS`` (3) reporting
  intervals of the device (``interval_s`` in ``campus.yaml``);
* ``offline``: the device said so (its ``.../status`` topic, ``offline`` as its
  last will, recorded by ingest in ``device_status``) and has sent no reading
  since;
* ``stale``: silent for longer than 3 intervals without saying it went away
  (a dead battery, a cut cable, a broken gateway);
* ``unknown``: InfluxDB did not answer.

**Building state**, the most serious that applies:

* ``fault``: an open ticket or a firing alert of severity P1 or P2;
* ``offline``: every device of the building is offline or stale (a building
  without telemetry: a power cut, a network outage);
* ``warning``: any other open ticket or firing alert, or some devices offline
  or stale;
* ``ok``: none of these.

A ticket counts as open from ``open`` to ``in_progress``; a resolved ticket
waiting for telemetry to verify the repair does not.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from campus.errors import SinkError
from campus.influx import InfluxClient, rows
from campus.influxql import quote_ident
from campus.registry import Campus, Device
from tickets.db import Store
from tickets.models import AlertRecord, State, Ticket

log = logging.getLogger("campus.api.state")

MAX_AGE_S = 5.0  # a snapshot older than this is recomputed (in the background)
STALE_INTERVALS = 3  # silent this many reporting intervals: stale
LOOKBACK_MIN_S = 3600  # the newest reading is looked for this far back at least
STATUS_LOOKBACK = "30d"  # ... and the newest online/offline word this far
OPEN_STATES = (State.open, State.acknowledged, State.assigned, State.in_progress)
SEVERITIES = ("P1", "P2", "P3", "P4")  # P1 most urgent
SERIOUS = frozenset({"P1", "P2"})

DeviceStatus = Literal["online", "stale", "offline", "unknown"]
BuildingStatus = Literal["ok", "warning", "fault", "offline"]
Severity = Literal["P1", "P2", "P3", "P4"]


@dataclass(frozen=True)
class DeviceState:
    """What the telemetry says of one device."""

    status: DeviceStatus
    last_seen_ms: int | None  # its newest reading (within the lookback)
    values: Mapping[str, float | None]  # the metrics of that reading
    said_ms: int | None = None  # when it last said online / offline
    said_online: bool | None = None


class BuildingState(BaseModel):
    """One building on the campus map."""

    id: str
    name: str
    type: str
    lat: float
    lon: float
    floors: int
    state: BuildingStatus = Field(description="ok | warning | fault | offline (docs/api.md)")
    devices: int
    devices_offline: int | None = Field(
        description="Devices offline or stale; null while InfluxDB does not answer."
    )
    open_tickets: int
    worst_severity: Severity | None = Field(
        description="The most urgent of its open tickets and firing alerts (P1 most)."
    )
    firing_alerts: int
    power_kw: float | None = Field(description="Now, at its main meters (online ones).")
    water_lpm: float | None = Field(description="Now, at its main water meters, in L/min.")


class CampusTotals(BaseModel):
    """The whole campus at once."""

    power_kw: float | None = Field(description="Now, at the campus main meters.")
    water_lpm: float | None = Field(description="Now, at the campus main water meters.")
    devices: int
    devices_offline: int | None
    open_tickets: int
    firing_alerts: int
    buildings_by_state: dict[str, int]


class CampusOut(BaseModel):
    """``/api/campus``: every building's state and the campus totals."""

    name: str
    timezone: str
    as_of: datetime = Field(description="When this state was computed (at most ~5 s ago).")
    telemetry: Literal["ok", "unavailable"]
    totals: CampusTotals
    buildings: list[BuildingState]


@dataclass(frozen=True)
class Snapshot:
    """One computation of the campus state, shared by every request until the next."""

    at: datetime
    mono: float
    telemetry_ok: bool
    devices: Mapping[str, DeviceState]
    out: CampusOut
    body: bytes  # ``out`` as JSON: what /api/campus sends, serialised once

    def building(self, building_id: str) -> BuildingState | None:
        """The state of one building, or None."""
        for b in self.out.buildings:
            if b.id == building_id:
                return b
        return None


class CampusState:
    """The shared, periodically recomputed :class:`Snapshot` of a campus."""

    def __init__(
        self,
        campus: Campus,
        influx: Callable[[], InfluxClient],
        store: Callable[[], Store],
        max_age_s: float = MAX_AGE_S,
    ) -> None:
        self.campus = campus
        self.influx = influx
        self.store = store
        self.max_age_s = max_age_s
        self._snap: Snapshot | None = None
        self._lock = threading.Lock()  # one computation at a time
        self._worker: threading.Thread | None = None
        self._closed = False
        self._failed = 0.0  # when a background computation last failed (then wait)
        self._kinds = sorted({d.kind for d in campus})
        self._lookback_s = {
            k: max(
                LOOKBACK_MIN_S,
                int(max(d.interval_s for d in campus if d.kind == k) * (STALE_INTERVALS + 1)),
            )
            for k in self._kinds
        }
        self._mains = _main_meters(campus)

    # ----------------------------------------------------------------- reading

    def snapshot(self) -> Snapshot:
        """The current snapshot; an old one starts the next computation in the
        background and is answered meanwhile. The first call computes (and may
        raise the ticket store's errors: the API answers those with 503)."""
        snap = self.current()
        if snap is None:
            with self._lock:
                if self._snap is None:
                    self._snap = self._compute()
                return self._snap
        return snap

    def current(self) -> Snapshot | None:
        """The current snapshot without waiting (None before the first): for
        async code, which must not block its event loop on a computation."""
        snap = self._snap
        now = time.monotonic()
        if snap is not None and now - max(snap.mono, self._failed) >= self.max_age_s:
            self._kick()
        return snap

    def refresh(self) -> Snapshot:
        """Compute a snapshot now (waiting for one under way) and keep it."""
        with self._lock:
            self._snap = self._compute()
            return self._snap

    def close(self) -> None:
        """Start no more computations; wait a little for the one under way."""
        self._closed = True
        worker = self._worker
        if worker is not None:
            worker.join(5)

    def _kick(self) -> None:
        if self._closed or not self._lock.acquire(blocking=False):
            return  # stopping, or a computation is under way
        self._worker = threading.Thread(target=self._background, name="campus-state", daemon=True)
        self._worker.start()  # it releases the lock

    def _background(self) -> None:
        try:
            self._snap = self._compute()
        except Exception as exc:  # tried again max_age_s later; the old state stays
            self._failed = time.monotonic()
            log.warning("campus state not recomputed: %s", exc)
        finally:
            self._lock.release()

    # --------------------------------------------------------------- computing

    def _compute(self) -> Snapshot:
        now = datetime.now(UTC)
        now_ms = int(now.timestamp() * 1000)
        try:
            devices = self._telemetry(now_ms)
            telemetry_ok = True
        except SinkError as exc:
            log.warning("campus state without telemetry: %s", exc)
            devices = {d.id: DeviceState("unknown", None, {}) for d in self.campus.devices.values()}
            telemetry_ok = False
        tickets, alerts = self._problems()
        out = self._summarise(now, devices, telemetry_ok, tickets, alerts)
        return Snapshot(
            at=now,
            mono=time.monotonic(),
            telemetry_ok=telemetry_ok,
            devices=devices,
            out=out,
            body=out.model_dump_json().encode(),
        )

    def _telemetry(self, now_ms: int) -> dict[str, DeviceState]:
        """Every device's newest reading and status: one request to InfluxDB of
        one statement per kind, and one for ``device_status``."""
        statements = [
            f"SELECT * FROM {quote_ident(kind)} WHERE time > now() - {self._lookback_s[kind]}s "
            f"GROUP BY {quote_ident('device')} ORDER BY time DESC LIMIT 1"
            for kind in self._kinds
        ]
        statements.append(
            f"SELECT last({quote_ident('online')}) AS {quote_ident('online')} "
            f"FROM {quote_ident('device_status')} WHERE time > now() - {STATUS_LOOKBACK} "
            f"GROUP BY {quote_ident('device')}"
        )
        influx = self.influx()
        try:
            series = influx.query("; ".join(statements), epoch="ms")
        except SinkError as exc:
            if not _no_database(influx, exc):
                raise
            series = []  # nothing written yet
        latest: dict[str, tuple[int, dict[str, Any]]] = {}
        said: dict[str, tuple[int, bool]] = {}
        for s in series:
            device = (s.get("tags") or {}).get("device")
            if not device or not s.get("values"):
                continue
            row = dict(zip(s["columns"], s["values"][0], strict=True))
            if s.get("name") == "device_status":
                if row.get("online") is not None:
                    said[device] = (int(row["time"]), bool(row["online"]))
            elif device not in latest or row["time"] > latest[device][0]:
                latest[device] = (int(row["time"]), row)
        out: dict[str, DeviceState] = {}
        for d in self.campus.devices.values():
            seen_ms, row = latest.get(d.id, (None, {}))
            said_ms, said_online = said.get(d.id, (None, None))
            values = {m: _number(row.get(m)) for m in d.metrics} if row else {}
            out[d.id] = DeviceState(
                status=device_status(d, now_ms, seen_ms, said_ms, said_online),
                last_seen_ms=seen_ms,
                values=values,
                said_ms=said_ms,
                said_online=said_online,
            )
        return out

    def _problems(self) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
        """Open tickets and firing alerts, counted by building and severity."""
        open_states = [s.value for s in OPEN_STATES]
        with self.store().session() as s:
            tickets = s.execute(
                select(Ticket.building, Ticket.severity, func.count())
                .where(Ticket.state.in_(open_states))
                .group_by(Ticket.building, Ticket.severity)
            ).all()
            alerts = s.execute(
                select(AlertRecord.building, AlertRecord.severity, func.count())
                .where(AlertRecord.state == "firing")
                .group_by(AlertRecord.building, AlertRecord.severity)
            ).all()
        return _by_building(tickets), _by_building(alerts)

    def _summarise(
        self,
        now: datetime,
        devices: Mapping[str, DeviceState],
        telemetry_ok: bool,
        tickets: Mapping[str, Mapping[str, int]],
        alerts: Mapping[str, Mapping[str, int]],
    ) -> CampusOut:
        buildings = []
        for b in self.campus.buildings.values():
            own = [devices[d.id] for d in self.campus.devices_in(b.id)]
            down = sum(1 for d in own if d.status in ("offline", "stale"))
            t, a = tickets.get(b.id, {}), alerts.get(b.id, {})
            severities = set(t) | set(a)
            worst = min(severities, key=SEVERITIES.index) if severities else None
            if severities & SERIOUS:
                state: BuildingStatus = "fault"
            elif telemetry_ok and own and down == len(own):
                state = "offline"
            elif severities or (telemetry_ok and down):
                state = "warning"
            else:
                state = "ok"
            buildings.append(
                BuildingState(
                    id=b.id,
                    name=b.name,
                    type=b.type.value,
                    lat=b.lat,
                    lon=b.lon,
                    floors=b.floors,
                    state=state,
                    devices=len(own),
                    devices_offline=down if telemetry_ok else None,
                    open_tickets=sum(t.values()),
                    worst_severity=worst,
                    firing_alerts=sum(a.values()),
                    power_kw=self._flow(devices, self._mains.get((b.id, "power"), []), "power_kw"),
                    water_lpm=self._flow(devices, self._mains.get((b.id, "water"), []), "flow_lpm"),
                )
            )
        roots = [d for d in self.campus.devices.values() if d.parent is None]
        by_state: dict[str, int] = {}
        for bs in buildings:
            by_state[bs.state] = by_state.get(bs.state, 0) + 1
        totals = CampusTotals(
            power_kw=self._flow(devices, [d for d in roots if d.kind == "power"], "power_kw"),
            water_lpm=self._flow(devices, [d for d in roots if d.kind == "water"], "flow_lpm"),
            devices=len(devices),
            devices_offline=sum(b.devices_offline or 0 for b in buildings)
            if telemetry_ok
            else None,
            open_tickets=sum(b.open_tickets for b in buildings),
            firing_alerts=sum(b.firing_alerts for b in buildings),
            buildings_by_state=by_state,
        )
        return CampusOut(
            name=self.campus.name,
            timezone=self.campus.timezone,
            as_of=now,
            telemetry="ok" if telemetry_ok else "unavailable",
            totals=totals,
            buildings=buildings,
        )

    @staticmethod
    def _flow(
        devices: Mapping[str, DeviceState], meters: list[Device], metric: str
    ) -> float | None:
        """The sum of ``metric`` now over the online ``meters``; None when none has it."""
        values = [
            v
            for m in meters
            if devices[m.id].status == "online"
            and (v := devices[m.id].values.get(metric)) is not None
        ]
        return round(sum(values), 3) if values else None


def device_status(
    device: Device,
    now_ms: int,
    seen_ms: int | None,
    said_ms: int | None,
    said_online: bool | None,
) -> DeviceStatus:
    """``online``, ``offline`` or ``stale`` (see the module doc)."""
    if said_online is False and said_ms is not None and (seen_ms is None or said_ms >= seen_ms):
        return "offline"
    if seen_ms is not None and now_ms - seen_ms <= STALE_INTERVALS * device.interval_s * 1000:
        return "online"
    return "stale"


def _main_meters(campus: Campus) -> dict[tuple[str, str], list[Device]]:
    """Each building's main meters by kind: its meters fed from outside it (or
    from nothing), leaving out a campus meter that feeds other buildings."""
    children = campus.children

    def campus_level(d: Device) -> bool:
        return any(c.building != d.building for c in children.get(d.id, []))

    out: dict[tuple[str, str], list[Device]] = {}
    for d in campus.devices.values():
        if d.kind not in ("power", "water") or campus_level(d):
            continue
        parent = campus.get(d.parent) if d.parent else None
        if parent is None or parent.building != d.building or campus_level(parent):
            out.setdefault((d.building, d.kind), []).append(d)
    return out


def _no_database(influx: InfluxClient, exc: SinkError) -> bool:
    """Whether ``exc`` means that the database does not exist yet. InfluxDB 1.6
    says so for one statement, but answers several with only "not executed"."""
    text = str(exc)
    if "database not found" in text:
        return True
    if "not executed" not in text:
        return False
    names = influx.query("SHOW DATABASES", database=False)
    return influx.database not in {row.get("name") for row in rows(names)}


def _by_building(counted: Any) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for building, severity, count in counted:
        out.setdefault(building, {})[severity] = int(count)
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def campus_state(request: Request) -> CampusState:
    """The app's shared campus state (``app.state.campus_state``)."""
    state: CampusState = request.app.state.campus_state
    return state
