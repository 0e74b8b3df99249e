"""`campus dashboards publish` against a Grafana that checks Grafana's API contract.

The loopback server (tests/grafana_api.py) keeps real folders, dashboards and
versions and answers 400 to any request that breaks Grafana's HTTP API
contract (strict: unknown keys refused); every test asserts it recorded none.
When GRAFANA_URL (and GRAFANA_TOKEN) are set, the last test publishes the
generated boards to that real Grafana and reads them back.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result

from campus import __version__
from campus.cli import main
from campus.stack import free_port
from tests.grafana_api import GrafanaApiServer, error, load_contract

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "dashboards" / "generated"
BOARD_UIDS = (
    "campus-overview",
    "campus-building",
    "campus-energy",
    "campus-water",
    "campus-hvac",
    "campus-dorms",
    "campus-tickets",
)
TOKEN = "glsa_campus_test_token"
NO_ENV = {"GRAFANA_URL": None, "GRAFANA_TOKEN": None}


def board(uid: str, title: str, query: str = 'SELECT mean("power_kw") FROM "power"') -> dict:
    """A small board in the generated files' shape: one InfluxQL time series panel."""
    return {
        "uid": uid,
        "title": title,
        "tags": ["campus"],
        "editable": True,
        "schemaVersion": 41,
        "time": {"from": "now-24h", "to": "now"},
        "templating": {"list": []},
        "annotations": {"list": []},
        "panels": [
            {
                "id": 1,
                "type": "timeseries",
                "title": title,
                "gridPos": {"h": 8, "w": 12, "x": 0, "y": 0},
                "datasource": {"type": "influxdb", "uid": "campus-influxdb"},
                "targets": [
                    {
                        "refId": "A",
                        "datasource": {"type": "influxdb", "uid": "campus-influxdb"},
                        "query": f"{query} WHERE $timeFilter GROUP BY time($__interval)",
                        "rawQuery": True,
                        "resultFormat": "time_series",
                    }
                ],
            }
        ],
    }


def write(directory: Path, dashboard: dict) -> None:
    """Write a board file as `campus dashboards build` does."""
    text = json.dumps(dashboard, indent=2, sort_keys=True) + "\n"
    (directory / f"{dashboard['uid']}.json").write_text(text, encoding="utf-8")


@pytest.fixture
def boards(tmp_path: Path) -> Path:
    """A folder of three small boards."""
    directory = tmp_path / "generated"
    directory.mkdir()
    for uid, title in (("campus-a", "Campus A"), ("campus-b", "Campus B"), ("campus-c", "C")):
        write(directory, board(uid, title))
    return directory


@pytest.fixture
def grafana() -> Iterator[GrafanaApiServer]:
    """The loopback Grafana; fails the test if any request broke the contract."""
    with GrafanaApiServer(token=TOKEN) as server:
        yield server
    assert server.answer_violations == []


def publish(url: str, *args: str, token: str | None = TOKEN) -> Result:
    """Run `campus dashboards publish` through the campus CLI."""
    auth = ["--token", token] if token else []
    return CliRunner().invoke(
        main, ["dashboards", "publish", "--url", url, *auth, *args], env=NO_ENV
    )


def lines(result: Result, action: str) -> list[str]:
    """The board uids printed with this action."""
    found = [line.split() for line in result.output.splitlines()]
    return [words[1] for words in found if len(words) > 1 and words[0] == action]


def writes(server: GrafanaApiServer) -> list[str]:
    """The requests that change something in Grafana."""
    return [r for r in server.requests if not r.startswith("GET ")]


def test_publish_puts_every_board_in_the_campus_folder(
    grafana: GrafanaApiServer, boards: Path
) -> None:
    result = publish(grafana.url, "--dir", str(boards))

    assert result.exit_code == 0, result.output
    assert grafana.violations == []
    assert grafana.grafana.folders["campus"]["title"] == "Campus"
    assert sorted(lines(result, "created")) == ["campus-a", "campus-b", "campus-c"]
    assert "3 boards: 3 created" in result.output
    for path in boards.glob("*.json"):
        local = json.loads(path.read_text())
        stored = grafana.grafana.boards[local["uid"]]
        assert stored.folder_uid == "campus"
        assert {k: v for k, v in stored.dashboard.items() if k not in ("id", "version")} == local
        message = stored.versions[-1]["message"]
        assert message.startswith(f"campus dashboards publish {__version__}, 3 boards, content ")


def test_second_publish_changes_nothing(grafana: GrafanaApiServer, boards: Path) -> None:
    assert publish(grafana.url, "--dir", str(boards)).exit_code == 0
    grafana.requests.clear()

    again = publish(grafana.url, "--dir", str(boards))

    assert again.exit_code == 0, again.output
    assert sorted(lines(again, "unchanged")) == ["campus-a", "campus-b", "campus-c"]
    assert writes(grafana) == []
    assert [len(b.versions) for b in grafana.grafana.boards.values()] == [1, 1, 1]
    assert grafana.violations == []


def test_a_changed_board_is_the_only_one_updated(grafana: GrafanaApiServer, boards: Path) -> None:
    assert publish(grafana.url, "--dir", str(boards)).exit_code == 0
    write(boards, board("campus-b", "Campus B", 'SELECT max("power_kw") FROM "power"'))

    result = publish(grafana.url, "--dir", str(boards), "--message", "peak power on B")

    assert result.exit_code == 0, result.output
    assert lines(result, "updated") == ["campus-b"]
    assert sorted(lines(result, "unchanged")) == ["campus-a", "campus-c"]
    versions = {uid: b.versions for uid, b in grafana.grafana.boards.items()}
    assert [v["message"] for v in versions["campus-b"]][-1] == "peak power on B"
    assert {uid: len(v) for uid, v in versions.items()} == {
        "campus-a": 1,
        "campus-b": 2,
        "campus-c": 1,
    }
    assert 'max(\\"power_kw\\")' in json.dumps(grafana.grafana.boards["campus-b"].dashboard)
    assert grafana.violations == []


def test_dry_run_says_what_would_change_and_writes_nothing(
    grafana: GrafanaApiServer, boards: Path
) -> None:
    result = publish(grafana.url, "--dir", str(boards), "--dry-run")

    assert result.exit_code == 0, result.output
    assert "folder Campus (campus) would be created" in result.output
    assert result.output.count("would be created campus-") == 3
    assert "dry run: nothing written" in result.output
    assert writes(grafana) == []
    assert grafana.grafana.folders == {} and grafana.grafana.boards == {}
    assert grafana.violations == []


def test_folder_title_is_put_back(grafana: GrafanaApiServer, boards: Path) -> None:
    grafana.grafana.create_folder({"uid": "campus", "title": "Old name"})

    result = publish(grafana.url, "--dir", str(boards))

    assert result.exit_code == 0, result.output
    assert "renamed from 'Old name'" in result.output
    assert grafana.grafana.folders["campus"]["title"] == "Campus"
    assert grafana.violations == []


def test_folder_clash_is_one_clear_error(grafana: GrafanaApiServer, boards: Path) -> None:
    grafana.grafana.create_folder({"uid": "facilities", "title": "Campus"})

    result = publish(grafana.url, "--dir", str(boards))

    assert result.exit_code == 1
    assert "cannot create folder 'Campus' (uid campus)" in result.output
    assert "same name already exists" in result.output
    assert "Traceback" not in result.output
    assert grafana.grafana.boards == {}
    assert grafana.violations == []


def test_wrong_token_is_one_clear_error(grafana: GrafanaApiServer, boards: Path) -> None:
    result = publish(grafana.url, "--dir", str(boards), token="glsa_wrong")

    assert result.exit_code == 1
    assert "refused the credentials (401 Unauthorized)" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert grafana.grafana.folders == {} and grafana.grafana.boards == {}
    assert grafana.violations == []


def test_a_viewer_token_is_told_to_get_the_editor_role(boards: Path) -> None:
    with GrafanaApiServer(token=TOKEN, viewer_token="glsa_viewer") as server:
        result = publish(server.url, "--dir", str(boards), token="glsa_viewer")

    assert result.exit_code == 1
    assert "forbids this (403: You'll need additional permissions" in result.output
    assert "the service account needs the Editor role" in result.output
    assert server.grafana.folders == {}
    assert server.violations == []


def test_missing_credentials_are_a_usage_error(boards: Path) -> None:
    result = publish("http://127.0.0.1:9", "--dir", str(boards), token=None)

    assert result.exit_code == 2
    assert "no credentials" in result.output


def test_unreachable_grafana_is_one_clear_error(boards: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    result = publish(url, "--dir", str(boards))

    assert result.exit_code == 1
    assert f"cannot reach Grafana at {url}: Connection refused" in result.output
    assert "Traceback" not in result.output


def test_a_refused_board_does_not_stop_the_others(grafana: GrafanaApiServer, boards: Path) -> None:
    grafana.grafana.reject["campus-b"] = error(
        412, "The dashboard has been changed by someone else", "version-mismatch"
    )

    result = publish(grafana.url, "--dir", str(boards))

    assert result.exit_code == 1
    assert sorted(lines(result, "created")) == ["campus-a", "campus-c"]
    assert lines(result, "failed") == ["campus-b"]
    assert "412 version-mismatch: the board was changed in Grafana meanwhile" in result.output
    assert "3 boards: 2 created, 1 failed" in result.output
    assert sorted(grafana.grafana.boards) == ["campus-a", "campus-c"]
    assert grafana.violations == []


def test_a_provisioned_board_is_left_to_its_files(grafana: GrafanaApiServer, boards: Path) -> None:
    assert publish(grafana.url, "--dir", str(boards)).exit_code == 0
    grafana.grafana.boards["campus-a"].provisioned = True
    grafana.grafana.boards["campus-b"].provisioned = True
    write(boards, board("campus-a", "Campus A", 'SELECT last("power_kw") FROM "power"'))
    grafana.requests.clear()

    result = publish(grafana.url, "--dir", str(boards))

    assert result.exit_code == 1
    assert lines(result, "failed") == ["campus-a"]
    assert sorted(lines(result, "unchanged")) == ["campus-b", "campus-c"]
    assert "provisions the board from files" in result.output
    assert writes(grafana) == []
    assert grafana.violations == []


def test_a_broken_board_file_does_not_stop_the_others(
    grafana: GrafanaApiServer, boards: Path
) -> None:
    (boards / "campus-b.json").write_text('{"uid": "campus-b", "title": ', encoding="utf-8")

    result = publish(grafana.url, "--dir", str(boards))

    assert result.exit_code == 1
    assert lines(result, "failed") == ["campus-b"]
    assert "campus-b.json: not valid JSON (line 1:" in result.output
    assert sorted(grafana.grafana.boards) == ["campus-a", "campus-c"]
    assert grafana.violations == []


def test_basic_auth_in_the_url_and_no_password_printed(boards: Path) -> None:
    with GrafanaApiServer(token=TOKEN, basic=("admin", "s3cret")) as server:
        url = server.url.replace("http://", "http://admin:s3cret@")

        result = publish(url, "--dir", str(boards), token=None)

    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    assert sorted(server.grafana.boards) == ["campus-a", "campus-b", "campus-c"]
    assert server.violations == []


def _post(server: GrafanaApiServer, path: str, body: dict[str, Any]) -> httpx.Response:
    """A raw request to the loopback Grafana, as a buggy client would send it."""
    return httpx.post(
        f"{server.url}{path}", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
    )


def test_strict_contract_catches_a_mistyped_key(grafana: GrafanaApiServer) -> None:
    grafana.grafana.create_folder({"uid": "campus", "title": "Campus"})
    good = {"dashboard": board("campus-a", "A"), "folderUid": "campus", "overwrite": True}
    typo = {"dashboard": board("campus-b", "B"), "folderUID": "campus", "overwrite": True}

    assert _post(grafana, "/api/dashboards/db", good).status_code == 200
    refused = _post(grafana, "/api/dashboards/db", typo)
    unknown = _post(grafana, "/api/dashboards/save", good)

    assert refused.status_code == 400
    assert unknown.status_code == 400
    assert len(grafana.violations) == 2
    assert "'folderUID' was unexpected" in grafana.violations[0]
    assert "no such operation" in grafana.violations[1]
    assert sorted(grafana.grafana.boards) == ["campus-a"]
    grafana.violations.clear()


def test_contract_checker_flags_bad_dashboards_and_params() -> None:
    contract = load_contract()
    auth = {"Authorization": "Basic " + base64.b64encode(b"a:b").decode()}
    json_auth = {**auth, "Content-Type": "application/json"}
    bad_board = {"dashboard": {"uid": "x", "title": "X", "panels": "none"}, "folderUid": "campus"}

    _, on_board = contract.check_request(
        "POST", "/api/dashboards/db", json_auth, json.dumps(bad_board).encode()
    )
    _, on_query = contract.check_request("GET", "/api/folders?limit=many&colour=red", auth, b"")
    _, no_auth = contract.check_request("GET", "/api/folders/campus", {}, b"")

    assert any("'templating' is a required property" in p for p in on_board)
    assert any("dashboard.panels: 'none' is not of type 'array'" in p for p in on_board)
    assert any("limit='many' is not a integer" in p for p in on_query)
    assert any("'colour' is not in the contract" in p for p in on_query)
    assert any("no Authorization header" in p for p in no_auth)


def test_emulator_refuses_a_stale_version_without_overwrite(grafana: GrafanaApiServer) -> None:
    first = _post(grafana, "/api/dashboards/db", {"dashboard": board("campus-a", "A")})
    second = _post(grafana, "/api/dashboards/db", {"dashboard": board("campus-a", "A2")})

    assert first.json()["version"] == 1
    assert second.status_code == 412
    assert second.json()["status"] == "version-mismatch"
    assert grafana.violations == []


def test_generated_boards_publish_cleanly(grafana: GrafanaApiServer) -> None:
    """The committed boards pass the contract and the dashboard schema on the way in."""
    result = publish(grafana.url)

    assert result.exit_code == 0, result.output
    assert sorted(grafana.grafana.boards) == sorted(BOARD_UIDS)
    assert grafana.violations == []
    assert sorted(lines(publish(grafana.url), "unchanged")) == sorted(BOARD_UIDS)


@pytest.mark.skipif(
    not os.environ.get("GRAFANA_URL"),
    reason="set GRAFANA_URL (and GRAFANA_TOKEN) to publish to a real Grafana",
)
def test_publish_to_a_real_grafana() -> None:
    from dashboards.publish import comparable, connect

    url, token = os.environ["GRAFANA_URL"], os.environ.get("GRAFANA_TOKEN")
    env = {"GRAFANA_URL": url, "GRAFANA_TOKEN": token}
    runner = CliRunner()

    first = runner.invoke(main, ["dashboards", "publish"], env=env)
    again = runner.invoke(main, ["dashboards", "publish"], env=env)

    assert first.exit_code == 0, first.output
    assert again.exit_code == 0, again.output
    assert sorted(lines(again, "unchanged")) == sorted(BOARD_UIDS), again.output
    api = connect(url, token)
    assert api.folder.get_folder("campus")["title"] == "Campus"
    for uid in BOARD_UIDS:
        stored = api.dashboard.get_dashboard(uid)
        local = json.loads((GENERATED / f"{uid}.json").read_text())
        assert stored["meta"]["folderUid"] == "campus"
        assert comparable(stored["dashboard"]) == comparable(local)
        versions = api.dashboard_versions.get_dashboard_versions_by_uid(uid)
        versions = versions["versions"] if isinstance(versions, dict) else versions
        assert versions[0]["message"].startswith("campus dashboards publish")
