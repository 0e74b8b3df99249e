"""The data API against a real influxd holding two simulated hours of the demo
campus and a real SQLite ticket store: the campus state (a device that went
offline, one that fell silent, a building without telemetry, an open P1
ticket, firing alerts), buildings and devices, readings checked against pandas
on the very values written, the alerts the ticket service recorded and a
technician's view of them, bad input and InfluxQL injection in every parameter
that reaches a query, and InfluxDB away."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.state import CampusState
from campus.calendar import load_calendar
from campus.influx import InfluxClient, rows
from campus.lineprotocol import point
from campus.registry import load_campus
from campus.settings import Settings
from campus.stack import Influxd, free_port
from simulators.engine import CampusSimulator
from tests.accounts import add_accounts
from tests.conftest import CONFIG
from tickets.models import Role
from tickets.serve import TicketService
from tickets.service import TicketError, Tickets

from .procs import wait_for

pytestmark = pytest.mark.integration

HOURS = 2
OFFLINE = "wm-teach-1-f2"  # says "offline" 30 minutes ago and is silent since
SILENT = "pm-lab-1-f1"  # silent for 20 minutes without a word: stale
DARK = "pool"  # a whole building without telemetry for the last 30 minutes
QUIET = "library"  # nothing wrong there
P1_BUILDING = "teach-2"  # an open P1 ticket is raised there

USERS = {
    "office": (Role.viewer, None),
    "eng": (Role.engineer, None),
    "wang": (Role.technician, "tech-wang-jg"),  # plumbing, teaching area
    "liu": (Role.technician, "tech-liu-dm"),  # plumbing, dormitories
}
ATTACKS = [
    'x" OR 1=1 --',
    "'; DROP DATABASE {db}",
    '"; DROP DATABASE "{db}',
    "power_kw\nDROP DATABASE {db}",
    "pm-teach-1\r\n; DROP MEASUREMENT power",
    "a\\",
    "\\'; DROP DATABASE {db}; --",
    "pm-teach-1' OR '1'='1",
    'power_kw") FROM "power"; DROP DATABASE "{db}',
    "1m) fill(0); DROP DATABASE {db}; --",
    "-1h OR time > 0",
    "now() - 1h",
    "mean) ; DROP DATABASE {db}",
    "全部",
]


@dataclass
class World:
    client: TestClient
    settings: Settings
    influx: InfluxClient
    tokens: dict[str, str]
    written: dict[str, list[tuple[int, dict[str, float]]]]  # device -> (ts_ms, metrics)
    first_ms: int
    last_ms: int
    tickets: Tickets

    def get(self, who: str | None, path: str, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return self.client.get(path, headers=headers, params=params)

    def post(self, who: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        return self.client.post(path, headers=headers, json=body)

    def campus(self) -> dict[str, Any]:
        r = self.get("office", "/api/campus")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def building(self, building: str) -> dict[str, Any]:
        return next(b for b in self.campus()["buildings"] if b["id"] == building)

    def last(self, device: str, metric: str) -> float:
        return self.written[device][-1][1][metric]


def simulate(
    influx: InfluxClient,
) -> tuple[dict[str, list[tuple[int, dict[str, float]]]], int, int]:
    """Two hours of the whole demo campus up to now, minus the outages above."""
    campus = load_campus(CONFIG / "campus.yaml")
    sim = CampusSimulator(campus, load_calendar(CONFIG / "calendar.yaml"), seed=42)
    now = int(datetime.now(UTC).timestamp())
    first = sim.first_tick(now - HOURS * 3600)
    cut = {OFFLINE: now - 1800, SILENT: now - 1200}
    cut.update({d.id: now - 1800 for d in campus.devices_in(DARK)})
    written: dict[str, list[tuple[int, dict[str, float]]]] = {}
    lines: list[str] = []
    last = first
    for t in range(first, now, sim.step):
        for d, metrics in sim.readings_at(t):
            if t >= cut.get(d.id, now + 1):
                continue
            lines.append(point(d.kind, d.influx_tags(), metrics, t * 1000))
            written.setdefault(d.id, []).append((t * 1000, metrics))
            last = t
    dev = campus.devices[OFFLINE]
    said = {"building": dev.building, "kind": dev.kind, "device": dev.id}
    lines.append(point("device_status", said, {"online": 1.0, "status": "online"}, first * 1000))
    lines.append(
        point("device_status", said, {"online": 0.0, "status": "offline"}, (now - 1790) * 1000)
    )
    influx.create_database()
    for i in range(0, len(lines), 20_000):
        influx.write(lines[i : i + 20_000])
    return written, first * 1000, last * 1000


@pytest.fixture(scope="module")
def world(influxd: Influxd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    var = tmp_path_factory.mktemp("api-data")
    settings = Settings(
        influx_url=influxd.url,
        influx_db=f"api{uuid.uuid4().hex[:8]}",
        var_dir=var,
        config_dir=CONFIG,
    )
    influx = InfluxClient.from_settings(settings)
    written, first_ms, last_ms = simulate(influx)
    app = create_app(settings)
    with TestClient(app) as client:
        tickets: Tickets = app.state.tickets
        tokens = add_accounts(tickets.store, USERS)
        state: CampusState = app.state.campus_state
        state.max_age_s = 0.1  # changes show within a poll or two
        yield World(client, settings, influx, tokens, written, first_ms, last_ms, tickets)
    influx.close()


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def frame(world: World, device: str, metric: str, start_ms: int, end_ms: int) -> pd.Series:
    """What was written for ``device``'s ``metric`` in [start, end), by time."""
    pts = [(t, m[metric]) for t, m in world.written[device] if start_ms <= t < end_ms]
    index = pd.to_datetime([t for t, _ in pts], unit="ms", utc=True)
    return pd.Series([v for _, v in pts], index=index, dtype="float64")


def bucket_ms(index: pd.DatetimeIndex, interval: str, tz: str | None = None) -> list[int]:
    if tz is not None:
        index = index.tz_convert(tz)
    return [int(ts.timestamp() * 1000) for ts in index.floor(interval)]


# ------------------------------------------------------------------ campus state


def test_campus_state_shows_devices_down_and_the_campus_totals(world: World) -> None:
    data = world.campus()
    assert data["telemetry"] == "ok" and data["name"].startswith("Riverside")
    assert len(data["buildings"]) == 24
    by_id = {b["id"]: b for b in data["buildings"]}
    teach1 = by_id["teach-1"]
    assert (teach1["state"], teach1["devices"], teach1["devices_offline"]) == ("warning", 15, 1)
    assert by_id["lab-1"]["state"] == "warning" and by_id["lab-1"]["devices_offline"] == 1
    pool = by_id[DARK]
    assert (pool["state"], pool["devices_offline"]) == ("offline", pool["devices"])
    assert pool["power_kw"] is None
    quiet = by_id[QUIET]
    assert (quiet["state"], quiet["devices_offline"], quiet["open_tickets"]) == ("ok", 0, 0)
    assert quiet["worst_severity"] is None and quiet["firing_alerts"] == 0
    # what the main meters said last, as written
    assert quiet["power_kw"] == pytest.approx(world.last("pm-library", "power_kw"))
    assert quiet["water_lpm"] == pytest.approx(world.last("wm-library", "flow_lpm"))
    totals = data["totals"]
    assert totals["power_kw"] == pytest.approx(world.last("pm-campus-main", "power_kw"))
    assert totals["water_lpm"] == pytest.approx(world.last("wm-campus-main", "flow_lpm"))
    assert totals["devices"] == 855
    assert totals["devices_offline"] == 2 + pool["devices"]
    assert sum(totals["buildings_by_state"].values()) == 24


def test_campus_state_shows_an_open_p1_ticket(world: World) -> None:
    body = {"building": P1_BUILDING, "trade": "plumbing", "severity": "P1", "title": "pipe burst"}
    r = world.post("eng", "/api/tickets", body)
    assert r.status_code == 201, r.text
    low = {"building": P1_BUILDING, "trade": "general", "severity": "P4", "title": "door"}
    assert world.post("eng", "/api/tickets", low).status_code == 201

    def shown() -> dict[str, Any] | None:
        b = world.building(P1_BUILDING)
        return b if b["open_tickets"] == 2 else None

    b = wait_for(shown, 10, 0.05)
    assert b is not None, world.building(P1_BUILDING)
    assert (b["state"], b["worst_severity"], b["devices_offline"]) == ("fault", "P1", 0)
    detail = world.get("office", f"/api/buildings/{P1_BUILDING}").json()
    assert detail["tickets"]["open"] == 2 and detail["tickets"]["by_severity"] == {"P1": 1, "P4": 1}
    assert [t["severity"] for t in detail["tickets"]["items"]] == ["P1", "P4"]
    # a technician of another trade sees the state, but not the other team's tickets
    wang = world.get("wang", f"/api/buildings/{P1_BUILDING}").json()
    assert wang["state"] == "fault"
    assert [t["title"] for t in wang["tickets"]["items"]] == ["pipe burst"]


def test_a_device_that_said_offline_and_one_that_fell_silent(world: World) -> None:
    gone = world.get("office", f"/api/devices/{OFFLINE}").json()
    assert (gone["status"], gone["status_said"]) == ("offline", "offline")
    assert gone["values"]["flow_lpm"] == pytest.approx(world.last(OFFLINE, "flow_lpm"))
    assert gone["last_seen"] is not None
    assert datetime.fromisoformat(gone["last_seen"]) == datetime.fromtimestamp(
        world.written[OFFLINE][-1][0] / 1000, UTC
    )
    silent = world.get("office", f"/api/devices/{SILENT}").json()
    assert (silent["status"], silent["status_said"]) == ("stale", None)
    assert silent["metrics"]["power_kw"] == {"unit": "kW", "min": 0, "max": 20000, "counter": False}
    live = world.get("office", "/api/devices/pm-teach-1").json()
    assert live["status"] == "online" and live["parent"] == "pm-campus-main"
    assert live["values"] == pytest.approx(world.written["pm-teach-1"][-1][1])
    down = world.get("office", "/api/devices", status="offline").json()
    assert [d["id"] for d in down] == [OFFLINE]


# ------------------------------------------------------------- buildings, devices


def test_buildings_and_devices_list_what_the_registry_holds(world: World) -> None:
    campus = load_campus(CONFIG / "campus.yaml")
    listed = world.get("office", "/api/buildings").json()
    assert [b["id"] for b in listed] == list(campus.buildings)
    one = world.get("liu", "/api/buildings/teach-1").json()
    assert [d["id"] for d in one["device_list"]] == [d.id for d in campus.devices_in("teach-1")]
    ahu = next(d for d in one["device_list"] if d["id"] == "ahu-teach-1-1")
    assert ahu["values"] == pytest.approx(world.written["ahu-teach-1-1"][-1][1])
    dorms = world.get("office", "/api/devices", building="dorm-1", kind="dorm").json()
    want = sorted(d.id for d in campus.devices_in("dorm-1") if d.kind == "dorm")
    assert [d["id"] for d in dorms] == want and all(d["status"] == "online" for d in dorms)
    assert len(world.get("office", "/api/devices").json()) == 855


@pytest.mark.parametrize(
    ("path", "params", "status", "names"),
    [
        ("/api/buildings/nowhere", {}, 404, "nowhere"),
        ("/api/devices/pm-nowhere", {}, 404, "pm-nowhere"),
        ("/api/buildings/" + "a" * 65, {}, 422, "building_id"),
        ("/api/devices/bad%20id", {}, 422, "device_id"),
        ("/api/devices", {"building": "nowhere"}, 422, "building"),
        ("/api/devices", {"kind": "gas"}, 422, "kind"),
        ("/api/devices", {"status": "asleep"}, 422, "status"),
        ("/api/alerts", {"state": "burning"}, 422, "state"),
        ("/api/alerts", {"severity": "P9"}, 422, "severity"),
        ("/api/alerts", {"building": "nowhere"}, 422, "building"),
        ("/api/alerts", {"limit": "0"}, 422, "limit"),
    ],
)
def test_unknown_ids_are_404_and_bad_ones_422_naming_them(
    world: World, path: str, params: dict[str, str], status: int, names: str
) -> None:
    r = world.get("office", path, **params)
    assert r.status_code == status, r.text
    assert names in json.dumps(r.json()["detail"])


def test_every_data_route_needs_a_token(world: World) -> None:
    for path in ("/api/campus", "/api/buildings", "/api/buildings/teach-1", "/api/devices"):
        assert world.get(None, path).status_code == 401
    assert world.get(None, "/api/devices/pm-teach-1").status_code == 401
    assert world.get(None, "/api/alerts").status_code == 401
    assert (
        world.get(None, "/api/readings", device="pm-teach-1", metric="power_kw").status_code == 401
    )


# --------------------------------------------------------------------- readings


@pytest.mark.parametrize("agg", ["mean", "min", "max", "sum", "last", "count"])
def test_a_device_s_readings_match_pandas_on_the_values_written(world: World, agg: str) -> None:
    start, end = world.first_ms + 7 * 60_000, world.last_ms - 5 * 60_000
    r = world.get(
        "office",
        "/api/readings",
        device="pm-teach-1",
        metric="power_kw",
        start=iso(start),
        end=iso(end),
        agg=agg,
        interval="10m",
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["device"], got["unit"], got["interval"], got["interval_s"]) == (
        "pm-teach-1",
        "kW",
        "10m",
        600,
    )
    s = frame(world, "pm-teach-1", "power_kw", start, end)
    grouped = s.groupby(bucket_ms(s.index, "10min"))
    want = getattr(grouped, agg)() if agg != "last" else grouped.last()
    [series] = got["series"]
    assert [p[0] for p in series["points"]] == list(want.index)
    assert [p[1] for p in series["points"]] == pytest.approx(list(want.values), rel=1e-9)


def test_a_building_s_readings_come_per_device_and_days_are_local(world: World) -> None:
    start, end = world.first_ms, world.last_ms + 1
    r = world.get(
        "office",
        "/api/readings",
        building="dorm-1",
        metric="temp_c",
        start=iso(start),
        end=iso(end),
        interval="1d",
    )
    assert r.status_code == 200, r.text
    got = r.json()
    campus = load_campus(CONFIG / "campus.yaml")
    dorms = sorted(d.id for d in campus.devices_in("dorm-1") if "temp_c" in d.metrics)
    assert [s["device"] for s in got["series"]] == dorms and got["building"] == "dorm-1"
    for series in got["series"][:5]:
        s = frame(world, series["device"], "temp_c", start, end)
        want = s.groupby(bucket_ms(s.index, "1D", "Asia/Shanghai")).mean()
        assert [p[0] for p in series["points"]] == list(want.index)
        assert [p[1] for p in series["points"]] == pytest.approx(list(want.values), rel=1e-9)
    # power_kw in a teaching building: the meters and the air handlers, or one kind
    both = world.get("office", "/api/readings", building="teach-1", metric="power_kw").json()
    kinds = {s["kind"] for s in both["series"]}
    assert kinds == {"power", "hvac"} and all(s["points"] for s in both["series"])
    only = world.get(
        "office", "/api/readings", building="teach-1", metric="power_kw", kind="hvac"
    ).json()
    assert [s["device"] for s in only["series"]] == [
        "ahu-teach-1-1",
        "ahu-teach-1-2",
        "ahu-teach-1-3",
    ]


def test_the_interval_is_chosen_and_bounded_and_csv_matches_json(world: World) -> None:
    one = world.get("office", "/api/readings", device="pm-teach-1", metric="power_kw").json()
    assert one["interval"] == "1m"  # a day at the meter's own pace: 1440 points
    week = world.get(
        "office", "/api/readings", building="dorm-1", metric="temp_c", start="-7d"
    ).json()
    n = len(week["series"])
    assert week["interval_s"] * 10_000 >= 7 * 86_400 * n  # at most 10 000 points in all
    assert sum(len(s["points"]) for s in week["series"]) <= 10_000
    csv = world.get(
        "office",
        "/api/readings",
        device="pm-teach-1",
        metric="power_kw",
        start="-1h",
        interval="5m",
        format="csv",
    )
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert lines[0] == "device,time,ts_ms,power_kw"
    js = world.get(
        "office",
        "/api/readings",
        device="pm-teach-1",
        metric="power_kw",
        start="-1h",
        interval="5m",
    ).json()
    pts = js["series"][0]["points"]
    assert [(int(r.split(",")[2]), float(r.split(",")[3])) for r in lines[1:]] == [
        (t, v) for t, v in pts
    ]


@pytest.mark.parametrize(
    ("params", "status", "says"),
    [
        ({"metric": "power_kw"}, 422, "device: give exactly one"),
        ({"device": "pm-teach-1", "building": "teach-1", "metric": "power_kw"}, 422, "exactly one"),
        ({"device": "pm-gone", "metric": "power_kw"}, 404, "device: no device 'pm-gone'"),
        ({"building": "atlantis", "metric": "power_kw"}, 404, "building: no building 'atlantis'"),
        ({"device": "pm-teach-1", "metric": "temp_c"}, 422, "metric: 'temp_c' is not a metric"),
        ({"building": "teach-1", "metric": "co2_ppm"}, 422, "metric: no device of building"),
        ({"building": "teach-1", "metric": "power_kw", "kind": "gas"}, 422, "kind: unknown kind"),
        ({"device": "pm-teach-1", "metric": "power_kw", "kind": "hvac"}, 422, "kind: device"),
        ({"device": "pm-teach-1", "metric": "power_kw", "start": "yesterday"}, 422, "start:"),
        (
            {"device": "pm-teach-1", "metric": "power_kw", "end": "-1h", "start": "-30m"},
            422,
            "start: must be before end",
        ),
        ({"device": "pm-teach-1", "metric": "power_kw", "end": "9999-01-01"}, 422, "end:"),
        ({"device": "pm-teach-1", "metric": "power_kw", "start": "-9999999999999d"}, 422, "start:"),
        ({"device": "pm-teach-1", "metric": "power_kw", "interval": "fortnight"}, 422, "interval:"),
        ({"device": "pm-teach-1", "metric": "power_kw", "interval": "0s"}, 422, "interval:"),
        ({"device": "pm-teach-1", "metric": "power_kw", "interval": "1.5s"}, 422, "interval:"),
        ({"device": "pm-teach-1", "metric": "power_kw", "interval": "30d"}, 422, "interval:"),
        (
            {"device": "pm-teach-1", "metric": "power_kw", "interval": "1s", "start": "-7d"},
            422,
            "interval: 1s over this range gives 604800 points",
        ),
        (
            {"building": "dorm-1", "metric": "temp_c", "start": "-20000d"},
            422,
            "start: the range is too long",
        ),
        ({"device": "pm-teach-1", "metric": "power_kw", "agg": "median"}, 422, "agg"),
        ({"device": "pm-teach-1", "metric": "power_kw", "format": "xml"}, 422, "format"),
    ],
)
def test_bad_readings_requests_name_the_field(
    world: World, params: dict[str, str], status: int, says: str
) -> None:
    r = world.get("office", "/api/readings", **params)
    assert r.status_code == status, r.text
    assert says in json.dumps(r.json()["detail"]).replace('\\"', '"')


def test_influxql_injection_in_every_parameter_is_refused(world: World) -> None:
    db = world.settings.influx_db
    before = world.influx.count("power")
    base = {"device": "pm-teach-1", "metric": "power_kw", "start": "-1h", "interval": "5m"}
    asked = 0
    for attack in (a.format(db=db) for a in ATTACKS):
        for field in ("device", "metric", "start", "end", "agg", "interval", "format"):
            r = world.get("office", "/api/readings", **{**base, field: attack})
            assert 400 <= r.status_code < 500, (field, attack, r.status_code, r.text)
            asked += 1
        for field in ("building", "kind"):
            params = {"building": "teach-1", "metric": "power_kw", field: attack}
            r = world.get("office", "/api/readings", **params)
            assert 400 <= r.status_code < 500, (field, attack, r.status_code, r.text)
        for path, field in (
            ("/api/devices", "building"),
            ("/api/devices", "kind"),
            ("/api/alerts", "building"),
            ("/api/alerts", "device"),
        ):
            r = world.get("office", path, **{field: attack})
            assert 400 <= r.status_code < 500, (path, field, attack, r.text)
        for path in ("/api/buildings/", "/api/devices/"):
            r = world.client.get(
                path + attack.replace("\\", "%5C").replace("\n", "%0A").replace("\r", "%0D"),
                headers={"Authorization": f"Bearer {world.tokens['office']}"},
            )
            assert 400 <= r.status_code < 500, (path, attack, r.text)
    assert asked == 7 * len(ATTACKS)
    dbs = rows(world.influx.query("SHOW DATABASES", database=False))
    assert db in {d["name"] for d in dbs}
    assert world.influx.count("power") == before > 0
    assert world.get("office", "/api/readings", **base).status_code == 200


# ----------------------------------------------------------------------- alerts


def alert_doc(
    rule: str, device: str, building: str, trade: str, severity: str, state: str, ts_ms: int
) -> bytes:
    return json.dumps(
        {
            "state": state,
            "rule": rule,
            "device": device,
            "building": building,
            "kind": "water",
            "metric": "flow_lpm",
            "value": 42.5,
            "severity": severity,
            "trade": trade,
            "ts_ms": ts_ms,
            "since_ms": ts_ms - 300_000,
            "title": f"{rule} on {device}",
            "text": "flow 42.5 L/min at night",
            "runbook": "close the valve",
            "dedup_key": f"{rule}:{device}",
            "plot": "var/anomaly/x.png",
        }
    ).encode()


def test_alerts_are_recorded_by_the_ticket_service_and_scoped(world: World) -> None:
    svc = TicketService(world.settings, world.tickets, client_id=f"t-{uuid.uuid4().hex[:6]}")
    t0 = world.last_ms
    academic = svc.handle(
        alert_doc("leak", "wm-teach-3", "teach-3", "plumbing", "P2", "firing", t0)
    )
    living = svc.handle(alert_doc("leak", "wm-dorm-2", "dorm-2", "plumbing", "P3", "firing", t0))
    power = svc.handle(alert_doc("trip", "pm-teach-4", "teach-4", "electrical", "P1", "firing", t0))
    assert None not in (academic, living, power)
    assert (
        svc.handle(
            alert_doc("leak", "wm-dorm-2", "dorm-2", "plumbing", "P3", "resolved", t0 + 60_000)
        )
        == living
    )
    # an older document delivered again changes nothing
    world.tickets.record_alert(
        json.loads(alert_doc("leak", "wm-dorm-2", "dorm-2", "plumbing", "P3", "firing", t0))
    )

    def keys(who: str, **params: Any) -> list[str]:
        r = world.get(who, "/api/alerts", **params)
        assert r.status_code == 200, r.text
        return [a["dedup_key"] for a in r.json()["items"]]

    firing = world.get("eng", "/api/alerts").json()
    assert firing["total"] == 2
    by_key = {a["dedup_key"]: a for a in firing["items"]}
    leak = by_key["leak:wm-teach-3"]
    assert (leak["ticket_id"], leak["severity"], leak["value"], leak["state"]) == (
        academic,
        "P2",
        42.5,
        "firing",
    )
    assert leak["fired_at"] == iso(t0).replace("+00:00", "Z")
    assert leak["detail"]["runbook"] == "close the valve" and leak["detail"]["plot"]
    assert keys("eng", state="resolved") == ["leak:wm-dorm-2"]
    resolved = world.get("eng", "/api/alerts", state="resolved").json()["items"][0]
    assert resolved["ticket_id"] == living and resolved["changed_at"].startswith(
        iso(t0 + 60_000)[:19]
    )
    assert sorted(keys("eng", state="all")) == [
        "leak:wm-dorm-2",
        "leak:wm-teach-3",
        "trip:pm-teach-4",
    ]
    assert keys("eng", state="all", severity="P1") == ["trip:pm-teach-4"]
    assert keys("eng", state="all", building="dorm-2") == ["leak:wm-dorm-2"]
    page = world.get("eng", "/api/alerts", state="all", limit=1, offset=1).json()
    assert (page["total"], len(page["items"])) == (3, 1)
    # each plumber sees their own area only; the office sees all
    assert keys("wang", state="all") == ["leak:wm-teach-3"]
    assert keys("liu", state="all") == ["leak:wm-dorm-2"]
    assert len(keys("office", state="all")) == 3
    # a ticket assigned to a technician brings its alert into their view
    assert world.post("eng", f"/api/tickets/{power}/acknowledge").status_code == 200
    r = world.post("eng", f"/api/tickets/{power}/assign", {"technician": "tech-wang-jg"})
    assert r.status_code == 200, r.text
    assert sorted(keys("wang", state="all")) == ["leak:wm-teach-3", "trip:pm-teach-4"]
    # and the campus state counts the firing ones
    b = wait_for(lambda: (x := world.building("teach-4"))["firing_alerts"] == 1 and x, 10, 0.05)
    assert b and b["state"] == "fault" and b["worst_severity"] == "P1"
    detail = world.get("wang", "/api/buildings/teach-3").json()
    assert [a["dedup_key"] for a in detail["alerts"]] == ["leak:wm-teach-3"]
    assert world.get("liu", "/api/buildings/teach-3").json()["alerts"] == []
    # the ticket shows what its alert saw, and a plot of its meter from InfluxDB
    ticket = world.get("wang", f"/api/tickets/{academic}").json()
    assert [(e["rule"], e["value"]) for e in ticket["evidence"]] == [("leak", 42.5)]
    assert ticket["evidence"][0]["detail"]["runbook"] == "close the valve"
    plot = world.get("wang", ticket["plot"])
    assert plot.status_code == 200 and plot.content.startswith(b"\x89PNG")
    assert world.get("liu", ticket["plot"]).status_code == 404  # not theirs to see


def test_record_alert_keeps_the_latest_state(world: World) -> None:
    t = world.tickets
    doc = json.loads(alert_doc("odd", "wm-gym", "gym", "plumbing", "P4", "firing", 1_000_000))
    t.record_alert({**doc, "state": "resolved", "ts_ms": 1_000_000 + 5})  # cleared before seen
    t.record_alert(doc)  # the firing, delivered late: the clearing stands
    got = world.get("eng", "/api/alerts", state="all", building="gym").json()["items"]
    assert [(a["state"], a["ticket_id"]) for a in got] == [("resolved", None)]
    t.record_alert({**doc, "ts_ms": 2_000_000})  # fires again: a new firing
    t.record_alert({**doc, "ts_ms": 3_000_000, "severity": "P3"})  # escalated: same firing
    [a] = world.get("eng", "/api/alerts", building="gym").json()["items"]
    assert (a["state"], a["severity"]) == ("firing", "P3")
    assert a["fired_at"] == iso(2_000_000).replace("+00:00", "Z")
    for bad in ({**doc, "state": "weird"}, {**doc, "ts_ms": "soon"}, {"state": "firing"}):
        with pytest.raises(TicketError, match="alert"):
            t.record_alert(bad)
    t.record_alert({"state": "resolved", "dedup_key": "never:seen", "ts_ms": 5})  # says too little
    assert world.get("eng", "/api/alerts", state="all", building="gym").json()["total"] == 1


# ------------------------------------------------------------------ InfluxDB away


def test_without_influxdb_the_state_says_so_and_readings_answer_503(
    world: World, tmp_path: Path
) -> None:
    settings = Settings(
        influx_url=f"http://127.0.0.1:{free_port()}",
        influx_db="nothing",
        var_dir=tmp_path,
        config_dir=CONFIG,
    )
    body = {"building": "admin-2", "trade": "electrical", "severity": "P2", "title": "no power"}
    assert world.post("eng", "/api/tickets", body).status_code == 201
    with TestClient(create_app(settings, world.tickets)) as client:
        headers = {"Authorization": f"Bearer {world.tokens['office']}"}
        data = client.get("/api/campus", headers=headers).json()
        assert data["telemetry"] == "unavailable" and data["totals"]["devices_offline"] is None
        by_id = {b["id"]: b for b in data["buildings"]}
        assert by_id["admin-2"]["state"] == "fault"  # the tickets still count
        assert by_id[QUIET]["state"] == "ok" and by_id[QUIET]["devices_offline"] is None
        dev = client.get("/api/devices/pm-teach-1", headers=headers).json()
        assert dev["status"] == "unknown"
        r = client.get(
            "/api/readings", headers=headers, params={"device": "pm-teach-1", "metric": "power_kw"}
        )
        assert r.status_code == 503 and r.headers["Retry-After"]
        assert "InfluxDB" in r.json()["detail"]


def test_a_database_never_written_is_no_data_not_an_error(world: World, tmp_path: Path) -> None:
    settings = Settings(
        influx_url=world.settings.influx_url,
        influx_db=f"empty{uuid.uuid4().hex[:6]}",
        var_dir=tmp_path,
        config_dir=CONFIG,
    )
    with TestClient(create_app(settings, world.tickets)) as client:
        headers = {"Authorization": f"Bearer {world.tokens['office']}"}
        data = client.get("/api/campus", headers=headers).json()
        assert data["telemetry"] == "ok" and data["totals"]["devices_offline"] == 855
        assert data["totals"]["power_kw"] is None
        r = client.get(
            "/api/readings", headers=headers, params={"device": "pm-teach-1", "metric": "power_kw"}
        )
        assert r.status_code == 200 and r.json()["series"] == [
            {"device": "pm-teach-1", "kind": "power", "points": []}
        ]
