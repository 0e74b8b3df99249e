"""The campus boards as code: what `campus dashboards build` produces.

* ``build_all()`` yields the seven boards of the contract, each valid against
  Grafana's dashboard JSON schema (and each panel's options against its
  plugin's schema where one exists), with unique panel ids;
* every ``$variable`` a query uses is defined on its board, every target is a
  raw InfluxQL target on the provisioned datasource, with only the contract's keys;
* campus totals never add a sub-meter to its parent, and long-range panels
  read the retention policy ``$rp`` chooses;
* the committed JSON equals what the code builds, and ``--check`` fails when it
  does not;
* the provisioning files name the same datasource, folder and path.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft7Validator

from dashboards.build import BOARDS, build_all, build_command, load_context, render
from tests.conftest import SHARED

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "config"
GENERATED = ROOT / "dashboards" / "generated"
PROVISIONING = ROOT / "dashboards" / "provisioning"
SCHEMAS = Path(
    os.environ.get("CAMPUS_GRAFANA_SCHEMAS")
    or SHARED / "grafana" / "schemas" / "foundation-sdk-main"
)

UIDS = {
    "campus-overview",
    "campus-building",
    "campus-energy",
    "campus-water",
    "campus-hvac",
    "campus-dorms",
    "campus-tickets",
}
TARGET_KEYS = {"refId", "datasource", "query", "rawQuery", "resultFormat", "alias", "hide"}
ANNOTATION_KEYS = TARGET_KEYS | {"fromAnnotations", "textColumn", "tagsColumn"}
#: Names Grafana itself expands: macros, series aliases, link fields, the All value.
BUILTIN = re.compile(r"^(timeFilter|__\w+|tag_\w+|col|m)$")
VARIABLE = re.compile(r"\$\{?(\w+)")


@pytest.fixture(scope="module")
def boards() -> dict[str, dict[str, Any]]:
    return build_all(CONFIG)


def panels_of(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows and the panels inside collapsed rows included."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries_of(board: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, target) of every panel target and annotation target."""
    for panel in panels_of(board):
        for target in panel.get("targets", []):
            yield panel["title"], target
    for annotation in board["annotations"].get("list", []):
        yield annotation["name"], annotation["target"]


def test_build_all_yields_the_seven_boards(boards: dict[str, dict[str, Any]]) -> None:
    assert set(boards) == UIDS
    for uid, board in boards.items():
        assert board["uid"] == uid
        assert board["title"] and board["timezone"] == "Asia/Shanghai"
        assert sum(1 for p in panels_of(board) if p["type"] != "row") >= 4, uid


def test_panel_ids_are_unique_on_each_board(boards: dict[str, dict[str, Any]]) -> None:
    for uid, board in boards.items():
        ids = [p["id"] for p in panels_of(board)]
        assert len(ids) == len(set(ids)), uid
        assert all(isinstance(i, int) for i in ids)


def test_every_variable_used_is_defined(boards: dict[str, dict[str, Any]]) -> None:
    for uid, board in boards.items():
        defined = {v["name"] for v in board["templating"].get("list", [])}
        texts = [t["query"] for _, t in queries_of(board)]
        texts += [v.get("query", "") for v in board["templating"].get("list", [])]
        texts += [p.get("title", "") for p in panels_of(board)]
        used = {name for text in texts for name in VARIABLE.findall(text)}
        undefined = {name for name in used if not BUILTIN.match(name)} - defined
        assert not undefined, f"{uid} uses undefined variables {sorted(undefined)}"


def test_targets_are_raw_influxql_on_the_provisioned_datasource(
    boards: dict[str, dict[str, Any]],
) -> None:
    provisioned = yaml.safe_load((PROVISIONING / "datasources" / "campus.yaml").read_text())
    ds = provisioned["datasources"][0]
    expected = {"type": ds["type"], "uid": ds["uid"]}
    count = 0
    for uid, board in boards.items():
        for where, target in queries_of(board):
            allowed = ANNOTATION_KEYS if target.get("fromAnnotations") else TARGET_KEYS
            assert set(target) <= allowed, f"{uid} / {where}: {set(target) - allowed}"
            assert target["datasource"] == expected, f"{uid} / {where}"
            assert target["rawQuery"] is True
            assert target["resultFormat"] in ("time_series", "table")
            assert target["query"].startswith(("SELECT ", "SHOW ")), f"{uid} / {where}"
            assert "$__timeFilter" not in target["query"]
            count += 1
        for var in board["templating"].get("list", []):
            if var["type"] == "query":
                assert var["datasource"] == expected, f"{uid} variable {var['name']}"
    assert count > 60


def test_refids_are_unique_within_each_panel(boards: dict[str, dict[str, Any]]) -> None:
    for uid, board in boards.items():
        for panel in panels_of(board):
            refs = [t["refId"] for t in panel.get("targets", [])]
            assert len(refs) == len(set(refs)), f"{uid} / {panel['title']}"


def test_boards_match_grafanas_dashboard_schema(boards: dict[str, dict[str, Any]]) -> None:
    validator = Draft7Validator(json.loads((SCHEMAS / "dashboard.jsonschema.json").read_text()))
    for uid, board in boards.items():
        errors = [
            f"{list(e.absolute_path)}: {e.message[:120]}" for e in validator.iter_errors(board)
        ]
        assert not errors, f"{uid}: {errors[:3]}"


def test_panel_options_match_their_plugin_schema(boards: dict[str, dict[str, Any]]) -> None:
    validators: dict[str, Draft7Validator] = {}
    for path in SCHEMAS.glob("*.jsonschema.json"):
        schema = json.loads(path.read_text())
        if "Options" in schema.get("definitions", {}):
            plugin = path.name.removesuffix(".jsonschema.json")
            validators[plugin] = Draft7Validator({**schema, "$ref": "#/definitions/Options"})
    checked = set()
    for uid, board in boards.items():
        for panel in panels_of(board):
            plugin = panel["type"].replace("-", "")  # state-timeline: statetimeline.jsonschema
            validator = validators.get(plugin)
            if validator is None or "options" not in panel:
                continue
            errors = [e.message[:120] for e in validator.iter_errors(panel["options"])]
            assert not errors, f"{uid} / {panel['title']}: {errors[:3]}"
            checked.add(plugin)
    assert {"timeseries", "stat", "table", "geomap", "statetimeline"} <= checked


def test_campus_totals_never_add_a_sub_meter_to_its_parent() -> None:
    ctx = load_context(CONFIG)
    assert ctx.total_meters("power") == ["pm-campus-main"]
    assert ctx.total_meters("water") == ["wm-campus-main"]
    mains = ctx.building_meters("power")
    assert len(mains) == len(ctx.campus.buildings)
    devices = ctx.campus.devices
    assert all(devices[m].parent == "pm-campus-main" for m in mains)
    assert len({devices[m].building for m in mains}) == len(mains)


def test_long_range_panels_read_the_chosen_rollup(boards: dict[str, dict[str, Any]]) -> None:
    for uid in ("campus-energy", "campus-water"):
        board = boards[uid]
        rp = [v for v in board["templating"]["list"] if v["name"] == "rp"]
        assert rp and rp[0]["hide"] == 2 and rp[0]["refresh"] == 2  # hidden, on time change
        per_day = [t["query"] for _, t in queries_of(board) if "GROUP BY time(1d)" in t["query"]]
        assert per_day
        assert all('FROM "$rp".' in q and "tz('Asia/Shanghai')" in q for q in per_day)
    live = [t["query"] for _, t in queries_of(boards["campus-hvac"]) if "$__interval" in t["query"]]
    assert live and all("GROUP BY time($__interval)" in q for q in live)


def test_overview_links_to_the_building_board(boards: dict[str, dict[str, Any]]) -> None:
    links = [
        link["url"]
        for panel in panels_of(boards["campus-overview"])
        for link in panel.get("fieldConfig", {}).get("defaults", {}).get("links", [])
    ]
    assert links and all(u.startswith("/d/campus-building?var-building=") for u in links)


def test_generated_files_equal_the_build(boards: dict[str, dict[str, Any]]) -> None:
    on_disk = {p.stem for p in GENERATED.glob("*.json")}
    assert on_disk == set(BOARDS)
    for uid, board in boards.items():
        text = (GENERATED / f"{uid}.json").read_text(encoding="utf-8")
        assert text == render(board), f"{uid}.json is stale: run `campus dashboards build`"
        assert text.endswith("}\n") and text.startswith('{\n  "annotations"')


def test_build_writes_and_check_detects_a_stale_file(tmp_path: Path) -> None:
    runner = CliRunner(env={"CAMPUS_CONFIG_DIR": str(CONFIG)})
    built = runner.invoke(build_command, ["--out", str(tmp_path)])
    assert built.exit_code == 0, built.output
    assert built.output.count("wrote ") == len(BOARDS)
    first = (tmp_path / "campus-energy.json").read_bytes()
    again = runner.invoke(build_command, ["--out", str(tmp_path)])
    assert again.exit_code == 0 and (tmp_path / "campus-energy.json").read_bytes() == first
    assert runner.invoke(build_command, ["--out", str(tmp_path), "--check"]).exit_code == 0
    (tmp_path / "campus-water.json").write_text("{}\n")
    stale = runner.invoke(build_command, ["--out", str(tmp_path), "--check"])
    assert stale.exit_code == 1
    assert "campus-water.json" in stale.output and "Traceback" not in stale.output


def test_provisioning_names_the_folder_path_and_influxql_datasource() -> None:
    ds = yaml.safe_load((PROVISIONING / "datasources" / "campus.yaml").read_text())
    source = ds["datasources"][0]
    assert source["uid"] == "campus-influxdb" and source["type"] == "influxdb"
    assert source["jsonData"]["version"] == "InfluxQL"
    assert source["url"] == "${CAMPUS_INFLUX_URL}"
    assert source["jsonData"]["dbName"] == "${CAMPUS_INFLUX_DB}"
    assert "$" in source["user"] and "$" in source["secureJsonData"]["password"]
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "campus.yaml").read_text())
    provider = providers["providers"][0]
    assert (provider["folder"], provider["folderUid"]) == ("Campus", "campus")
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/campus"
