"""The publisher's pure parts: reading board files, version messages, error lines."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from grafana_client.client import GrafanaClientError

from dashboards.publish import (
    Board,
    comparable,
    connect,
    default_message,
    explain,
    public_url,
    read_board,
)


def _file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_board_file_must_be_a_dashboard_named_by_its_uid(tmp_path: Path) -> None:
    good = read_board(_file(tmp_path, "campus-a.json", '{"uid": "campus-a", "title": "A"}'))
    listed = read_board(_file(tmp_path, "campus-b.json", "[1, 2]"))
    renamed = read_board(_file(tmp_path, "campus-c.json", '{"uid": "other", "title": "C"}'))
    binary = tmp_path / "campus-d.json"
    binary.write_bytes(b"\xff\xfe{}")

    assert good == Board("campus-a", {"uid": "campus-a", "title": "A"})
    assert "not a dashboard model" in listed.problem and listed.dashboard is None
    assert "uid 'other' differs from the file name" in renamed.problem
    assert "not UTF-8 text" in read_board(binary).problem


def test_message_names_version_count_and_content() -> None:
    a = Board("campus-a", {"uid": "campus-a", "title": "A", "id": 3, "version": 7})
    a_again = Board("campus-a", {"uid": "campus-a", "title": "A"})
    a_renamed = Board("campus-a", {"uid": "campus-a", "title": "A2"})
    broken = Board("campus-b", None, "not valid JSON")

    message = default_message([a, broken])

    assert message.startswith("campus dashboards publish 0.1.0, 1 boards, content ")
    assert message == default_message([a_again])
    assert message != default_message([a_renamed])
    assert comparable(a.dashboard or {}) == {"uid": "campus-a", "title": "A"}


def test_password_never_printed() -> None:
    assert public_url("https://admin:pw@grafana.campus.edu:3000/g") == (
        "https://grafana.campus.edu:3000/g"
    )
    assert public_url("http://grafana:3000") == "http://grafana:3000"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (403, {"message": "permission denied"}, "403: permission denied): the service account"),
        (412, {"message": "taken", "status": "name-exists"}, "412 name-exists: another board"),
        (422, {"message": "invalid uid"}, "Grafana answered 422: invalid uid"),
    ],
)
def test_error_answers_become_one_line(status: int, body: dict, expected: str) -> None:
    line = explain(GrafanaClientError(status, body, json.dumps(body)), "http://u:p@grafana:3000")

    assert expected in line
    assert "\n" not in line and "u:p@" not in line


def test_url_prefix_and_credentials_reach_the_client() -> None:
    behind_proxy = connect("https://campus.example.edu/grafana/", "glsa_x")
    basic = connect("http://admin:pw@127.0.0.1:3000", None)

    assert behind_proxy.client.url == "https://campus.example.edu/grafana/api"
    assert basic.client.url == "http://127.0.0.1:3000/api"
    assert (basic.client.auth.username, basic.client.auth.password) == ("admin", "pw")
    with pytest.raises(click.UsageError, match="no credentials"):
        connect("http://127.0.0.1:3000", None)
