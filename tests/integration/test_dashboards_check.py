"""``campus dashboards check`` against a real influxd holding a simulated day.

The day (24 hours, a reading every five minutes) covers the central plant, an
administration building, a teaching building and a dormitory with all their
devices, every meter of the metering tree, ticket events and device status
changes, on a database set up as ``campus db init`` does (retention policies,
building positions, rollup choice) with the rollups backfilled: enough for
every panel of every board to show data. The check must pass on the boards the
build makes, fail naming the panel on each kind of broken board, and draw one
non-blank preview per board.
"""

from __future__ import annotations

import copy
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

from campus import rollups
from campus.calendar import load_calendar
from campus.influx import InfluxClient
from campus.lineprotocol import point
from campus.registry import Campus, load_campus
from campus.stack import Influxd
from dashboards.check import check_command
from simulators.engine import CampusSimulator
from tests.conftest import CONFIG, SHARED

pytestmark = pytest.mark.integration

BUILDINGS = ("plant", "admin-1", "teach-1", "dorm-1")
SCHEMAS = Path(
    os.environ.get("CAMPUS_GRAFANA_SCHEMAS") or SHARED / "grafana/schemas/foundation-sdk-main"
)
DS_UID = "campus-influxdb"


@dataclass
class Day:
    """The simulated day's database."""

    url: str
    db: str


def _init_database(client: InfluxClient, campus: Campus) -> None:
    """What ``campus db init`` does: policies, continuous queries, building positions."""
    rollups.apply(client, campus, rollups.parse_retention("90d"), rollups.parse_retention("INF"))


def _backfill(client: InfluxClient, campus: Campus) -> None:
    """What ``campus db init --backfill`` does: the hourly and daily rollups of the day."""
    kinds = rollups.kind_rollups(campus)
    span = rollups.raw_span(client, kinds)
    assert span is not None
    offset = rollups.day_offset_ms(campus.timezone)
    for step in rollups.rollup_statements(client.database, kinds, *span, offset):
        rollups.run_step(client, step)


def _readings(campus: Campus, now: int) -> list[str]:
    """A day of every device of BUILDINGS and of every meter of the metering tree
    (the simulator adds the meters a parent meter sums, so each one balances)."""
    mains = {d.id for d in campus if d.tags.get("role") == "building_main"}
    only = {d.id for b in BUILDINGS for d in campus.devices_in(b)} | mains
    sim = CampusSimulator(campus, load_calendar(CONFIG / "calendar.yaml"), seed=7, only=only)
    lines = []
    step = 300  # every fifth minute: a day with data in every panel, written quickly
    for t in range(now // step * step - 86_400, now, step):
        for d, metrics in sim.readings_at(t):
            lines.append(point(d.kind, d.influx_tags(), metrics, t * 1000))
    return lines


def _tickets(now: int) -> list[str]:
    """Twelve tickets over the day: most acknowledged and closed, some breached, two open."""
    lines = []
    events = ("opened", "acknowledged", "assigned", "resolved", "closed")
    for i in range(12):
        building = BUILDINGS[i % len(BUILDINGS)]
        severity = f"P{i % 4 + 1}"
        opened = now - 86_000 + i * 6_500
        steps = events[:2] if i % 6 == 5 else events
        for j, event in enumerate(steps):
            at = opened + j * (600 + 300 * i)
            tags = {
                "building": building,
                "severity": severity,
                "trade": "hvac",
                "event": event,
                "ticket": str(100 + i),
            }
            fields: dict[str, float | str] = {
                "ticket_id": float(100 + i),
                "state": event,
                "title": f"ticket {100 + i} in {building}",
                "text": f"{event} by the duty team",
                "age_s": float(at - opened),
                "ack_breached": 1.0 if i % 4 == 0 else 0.0,
                "resolve_breached": 1.0 if i % 5 == 0 else 0.0,
            }
            lines.append(point("tickets", tags, fields, at * 1000))
    return lines


def _device_status(campus: Campus, now: int) -> list[str]:
    """Every device said "online" a day ago; the first water meter and dorm sensor went offline."""
    lines = []
    devices = [d for b in BUILDINGS for d in campus.devices_in(b)]
    gone = {next(d.id for d in devices if d.kind == kind) for kind in ("water", "dorm")}
    for d in devices:
        tags = {"building": d.building, "kind": d.kind, "device": d.id}
        up: dict[str, float | str] = {"online": 1.0, "status": "online"}
        lines.append(point("device_status", tags, up, (now - 86_000) * 1000))
        if d.id in gone:
            down: dict[str, float | str] = {"online": 0.0, "status": "offline"}
            lines.append(point("device_status", tags, down, (now - 3_600) * 1000))
    return lines


@pytest.fixture(scope="module")
def day(influxd: Influxd) -> Day:
    client = InfluxClient(influxd.url, f"dash{uuid.uuid4().hex[:8]}", timeout=60)
    campus = load_campus(CONFIG / "campus.yaml")
    _init_database(client, campus)
    now = int(time.time())
    lines = _readings(campus, now) + _tickets(now) + _device_status(campus, now)
    for i in range(0, len(lines), 20_000):
        client.write(lines[i : i + 20_000])
    _backfill(client, campus)
    client.close()
    return Day(influxd.url, client.database)


def run_check(day: Day, *args: str) -> Result:
    """``campus dashboards check`` against the simulated day."""
    return CliRunner().invoke(
        check_command, ["--influx-url", day.url, "--db", day.db, *args], catch_exceptions=False
    )


# -------------------------------------------------------- the real boards


@pytest.fixture(scope="module")
def checked(day: Day, tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Path, Path]:
    """One check (with previews) of every board the build makes."""
    from dashboards.build import build_all

    boards = tmp_path_factory.mktemp("boards")
    for uid, board in build_all().items():
        (boards / f"{uid}.json").write_text(json.dumps(board, indent=2, sort_keys=True) + "\n")
    previews = tmp_path_factory.mktemp("previews")
    args = ["--dir", str(boards), "--preview", str(previews), "--json", "--schemas", str(SCHEMAS)]
    return run_check(day, *args), boards, previews


def test_every_generated_board_passes_with_data_in_every_panel(checked: Any) -> None:
    result, boards, _ = checked
    doc = json.loads(result.output)
    bad = [o for b in doc["boards"] for o in b["outcomes"] if o["status"] in ("error", "empty")]
    assert bad == [], "\n".join(
        f"{o['board']} {o['item']}: {o['status']} {o['message']}" for o in bad
    )
    assert result.exit_code == 0
    assert doc["summary"]["errors"] == 0 and doc["summary"]["empty"] == 0
    assert doc["summary"]["boards"] == len(list(boards.glob("*.json"))) >= 7
    assert doc["summary"]["ok"] == doc["summary"]["panels"] > 0


@pytest.mark.parametrize("building", BUILDINGS)
def test_the_building_board_shows_what_each_building_has_and_only_that(
    checked: Any, day: Day, building: str, tmp_path: Path
) -> None:
    """Drilled into any building, every panel shown has data: a kind's row
    repeats only where the building has that kind, an air handler's row once
    per air handler."""
    _, boards, _ = checked
    only = tmp_path / "building"
    only.mkdir()
    (only / "campus-building.json").write_bytes((boards / "campus-building.json").read_bytes())
    result = run_check(day, "--dir", str(only), "--var", f"building={building}", "--json")
    doc = json.loads(result.stdout[result.stdout.index("{") :])
    (board,) = [b for b in doc["boards"] if b["uid"] == "campus-building"]
    bad = [o for o in board["outcomes"] if o["status"] in ("error", "empty")]
    assert bad == [], [f"{o['item']}: {o['message']}" for o in bad]
    campus = load_campus(CONFIG / "campus.yaml")
    here = {d.kind for d in campus.devices_in(building)}
    ahus = sorted(d.id for d in campus.devices_in(building) if d.model == "ahu")
    shown = {
        o["item"].split()[1]: o["message"]
        for o in board["outcomes"]
        if o["item"].startswith("variable ") and o["item"].endswith("_here")
    }
    for kind in campus.kinds:
        assert ("no values" not in shown[f"{kind}_here"]) == (kind in here), (kind, shown)
    ahu_var = next(o for o in board["outcomes"] if o["item"] == "variable ahu")
    assert ahu_var["message"].startswith(f"{len(ahus)} values" if ahus else "no values")


def test_preview_draws_one_non_blank_png_per_board(checked: Any) -> None:
    import matplotlib.image as mpimg

    _, boards, previews = checked
    uids = sorted(p.stem for p in boards.glob("*.json"))
    assert sorted(p.stem for p in previews.glob("*.png")) == uids
    for png in previews.glob("*.png"):
        pixels = np.asarray(mpimg.imread(png))[..., :3]
        assert pixels.shape[0] > 200 and pixels.shape[1] > 600, png.name
        assert float(pixels.std()) > 0.05, f"{png.name} looks blank"
        assert png.stat().st_size <= 150_000, f"{png.name} is {png.stat().st_size} bytes"


# ------------------------------------------------------ hand-written boards


def _target(query: str, ref: str = "A", fmt: str = "time_series") -> dict[str, Any]:
    return {
        "refId": ref,
        "datasource": {"type": "influxdb", "uid": DS_UID},
        "query": query,
        "rawQuery": True,
        "resultFormat": fmt,
    }


def _panel(pid: int, kind: str, title: str, *targets: dict[str, Any], y: int = 0) -> dict[str, Any]:
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "datasource": {"type": "influxdb", "uid": DS_UID},
        "gridPos": {"x": (pid % 2) * 12, "y": y, "w": 12, "h": 8},
        "targets": list(targets),
        "options": {},
        "fieldConfig": {"defaults": {}, "overrides": []},
    }


BOARD: dict[str, Any] = {
    "uid": "test-board",
    "title": "Power of $building",
    "schemaVersion": 41,
    "time": {"from": "now-24h", "to": "now"},
    "templating": {
        "list": [
            {
                "type": "query",
                "name": "building",
                "multi": True,
                "includeAll": True,
                "datasource": {"type": "influxdb", "uid": DS_UID},
                "query": 'SHOW TAG VALUES FROM "hvac" WITH KEY = "building"',
                "refresh": 1,
            },
            {
                "type": "query",
                "name": "device",
                "datasource": {"type": "influxdb", "uid": DS_UID},
                "query": 'SHOW TAG VALUES FROM "power" WITH KEY = "device"'
                ' WHERE "building" =~ /^$building$/',
            },
            {"type": "custom", "name": "rp", "query": "autogen", "hide": 2},
        ]
    },
    "annotations": {
        "list": [
            {
                "name": "Tickets",
                "enable": True,
                "datasource": {"type": "influxdb", "uid": DS_UID},
                "target": _target(
                    'SELECT "title" FROM "tickets" WHERE $timeFilter', "Anno", "table"
                ),
            }
        ]
    },
    "panels": [
        _panel(
            1,
            "timeseries",
            "Power by building",
            _target(
                'SELECT mean("power_kw") FROM "$rp"."power" WHERE "building" =~ /^$building$/ '
                'AND $timeFilter GROUP BY time($__interval), "building" fill(null)'
            ),
        ),
        _panel(
            2,
            "stat",
            "Device $device now",
            _target(
                'SELECT last("power_kw") FROM "power" WHERE "device" = \'$device\' AND $timeFilter'
            ),
        ),
        {
            "id": 3,
            "type": "row",
            "title": "Details",
            "collapsed": True,
            "gridPos": {"x": 0, "y": 8, "w": 24, "h": 1},
            "panels": [
                _panel(
                    4,
                    "table",
                    "Open tickets",
                    _target(
                        'SELECT last("state") AS "state" FROM "tickets" WHERE $timeFilter '
                        'GROUP BY "ticket"',
                        fmt="table",
                    ),
                    y=9,
                ),
            ],
        },
        {
            **_panel(
                5,
                "stat",
                "Power of $building",
                _target(
                    'SELECT last("power_kw") FROM "power" WHERE "building" = \'$building\''
                    " AND $timeFilter"
                ),
                y=17,
            ),
            "repeat": "building",
        },
    ],
}


@pytest.fixture
def provisioning(tmp_path: Path) -> Path:
    folder = tmp_path / "provisioning" / "datasources"
    folder.mkdir(parents=True)
    (folder / "campus.yaml").write_text(
        "apiVersion: 1\ndatasources:\n"
        f"  - name: Campus\n    type: influxdb\n    uid: {DS_UID}\n    url: $CAMPUS_INFLUX_URL\n"
        "    jsonData: {dbName: $CAMPUS_INFLUX_DB, timeInterval: 10s}\n"
    )
    return folder.parent


def check_one(day: Day, tmp_path: Path, provisioning: Path, board: dict[str, Any]) -> Result:
    folder = tmp_path / "one"
    folder.mkdir(exist_ok=True)
    (folder / "board.json").write_text(json.dumps(board))
    return run_check(day, "--dir", str(folder), "--provisioning", str(provisioning))


def test_a_good_hand_written_board_passes(day: Day, tmp_path: Path, provisioning: Path) -> None:
    result = check_one(day, tmp_path, provisioning, BOARD)
    assert result.exit_code == 0, result.output
    assert 'test-board  panel 1 "Power by building"  ok' in result.output
    assert 'test-board  panel 4 "Open tickets"  ok' in result.output
    assert 'test-board  panel 5 "Power of $building"  ok  4 series, 4 rows' in result.output
    assert "test-board  variable building  ok  4 values, using All" in result.output
    assert 'annotation "Tickets"  ok' in result.output
    assert "notice: schema check skipped" in result.stderr


def _broken(change: str) -> dict[str, Any]:
    board = copy.deepcopy(BOARD)
    panel = board["panels"][0]
    if change == "query":
        panel["targets"][0]["query"] = 'SELECT mean("power_kw" FROM "power" WHERE $timeFilter'
    elif change == "variable":
        panel["targets"][0]["query"] += " AND \"room\" = '$room'"
    elif change == "id":
        board["panels"][2]["panels"][0]["id"] = 1
    elif change == "datasource":
        panel["targets"][0]["datasource"]["uid"] = "influx-typo"
    elif change == "empty":
        panel["targets"][0]["query"] = (
            'SELECT mean("power_kw") FROM "power" WHERE "building" = \'nowhere\' AND $timeFilter'
        )
    elif change == "repeat":
        panel["repeat"] = "building"
        panel["targets"][0]["query"] = (
            'SELECT mean("temp_c") FROM "dorm" WHERE "building" =~ /^$building$/ AND $timeFilter'
        )
    return board


POWER = 'panel 1 "Power by building"'


@pytest.mark.parametrize(
    ("change", "item", "status", "message"),
    [
        ("query", POWER, "error", "A: query failed (400): error parsing query"),
        ("variable", POWER, "error", "query A uses $room, which is not defined on the board"),
        ("id", 'panel 1 "Open tickets"', "error", f"duplicate panel id 1 (also {POWER})"),
        ("datasource", f"{POWER} target A", "error", "uid 'influx-typo' is not provisioned"),
        ("empty", POWER, "empty", "every query returned no rows"),
        (
            "repeat",
            POWER,
            "empty",
            "no rows for building=admin-1; building=plant; building=teach-1",
        ),
    ],
)
def test_a_broken_board_fails_naming_the_panel(
    day: Day, tmp_path: Path, provisioning: Path, change: str, item: str, status: str, message: str
) -> None:
    result = check_one(day, tmp_path, provisioning, _broken(change))
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.startswith(f"test-board  {item}  ")]
    assert lines and lines[0].startswith(f"test-board  {item}  {status}  "), result.output
    assert message in lines[0]
    assert "1 boards, 4 panels" in result.output.splitlines()[-1]


def test_schema_and_sdk_problems_name_the_panel(checked: Any, tmp_path: Path) -> None:
    _, boards, _ = checked
    board = json.loads((boards / "campus-energy.json").read_text())
    panel = next(p for p in board["panels"] if p["type"] == "timeseries")
    panel["options"]["legend"]["displayMode"] = "bogus"
    panel["legendMode"] = "table"
    (tmp_path / "campus-energy.json").write_text(json.dumps(board))
    result = CliRunner().invoke(
        check_command, ["--dir", str(tmp_path), "--schemas", str(SCHEMAS), "--no-queries"]
    )
    assert result.exit_code == 1
    label = f'campus-energy  panel {panel["id"]} "{panel["title"]}"  error'
    assert f"{label}  schema: options/legend/displayMode: 'bogus' is not one of" in result.output
    assert f"{label}  SDK: /panels/" in result.output
    assert "/legendMode: not a field of the SDK's model" in result.output


def test_bad_input_gets_one_line_errors(day: Day, tmp_path: Path, provisioning: Path) -> None:
    missing = run_check(day, "--dir", str(tmp_path / "nowhere"))
    assert missing.exit_code == 1
    assert "Error: no board directory" in missing.output
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.json").write_text("{not json")
    bad = run_check(day, "--dir", str(tmp_path / "bad"))
    assert "x.json: not a JSON board" in bad.output and bad.exit_code == 1
    folder = tmp_path / "ok"
    folder.mkdir()
    (folder / "b.json").write_text(json.dumps(BOARD))
    away = CliRunner().invoke(
        check_command, ["--dir", str(folder), "--influx-url", "http://127.0.0.1:9", "--db", "x"]
    )
    assert away.exit_code == 1
    assert "InfluxDB at http://127.0.0.1:9 is unreachable" in away.output
    assert "Traceback" not in missing.output + bad.output + away.output
