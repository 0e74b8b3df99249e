"""``campus tickets`` on a real SQLite file: what a technician types and reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from campus.cli import main
from tickets.db import open_store
from tickets.models import Source
from tickets.service import Alert, Tickets


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'tickets.db'}"
    monkeypatch.setenv("CAMPUS_DB_URL", url)
    t = Tickets(open_store(url))
    t.upsert_people(
        teams=[{"id": "team-water", "name": "Water", "trade": "plumbing"}],
        technicians=[{"id": "tech-wang", "name": "王建国", "team": "team-water"}],
    )
    for key, sev in (("leak:wm-1", "P1"), ("leak:wm-2", "P3")):
        t.raise_alert(
            Alert(
                dedup_key=key,
                source=Source.rule,
                severity=sev,
                building="dorm-1",
                trade="plumbing",
                title=f"漏水 {key}",
                at=datetime.now(UTC),
                rule="leak",
            )
        )
    return url


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["tickets", *args])
    return result.exit_code, result.output


def test_list_filters_and_prints_json(db: str) -> None:
    code, out = run("list", "--json")
    assert code == 0
    assert [(t["id"], t["severity"]) for t in json.loads(out)] == [(2, "P3"), (1, "P1")]
    code, out = run("list", "--severity", "P1")
    assert code == 0 and "#1 P1 open" in out and "#2" not in out


def test_a_technician_works_a_ticket_through(db: str) -> None:
    assert run("ack", "1", "--by", "tech-wang")[0] == 0
    assert run("assign", "1", "--technician", "tech-wang", "--by", "li")[0] == 0
    assert run("start", "1", "--by", "tech-wang")[0] == 0
    code, out = run("resolve", "1", "--by", "tech-wang", "--note", "换了阀门", "--json")
    assert code == 0 and json.loads(out)["state"] == "resolved"
    assert run("comment", "1", "拍了照片", "--by", "tech-wang")[0] == 0
    code, out = run("show", "1", "--json")
    doc = json.loads(out)
    assert [e["action"] for e in doc["events"]] == [
        "open",
        "acknowledge",
        "assign",
        "start",
        "resolve",
    ]
    assert doc["events"][-1]["detail"] == {"note": "换了阀门"}
    assert doc["comments"][0]["text"] == "拍了照片"


def test_refusals_are_one_clear_line_and_a_failing_exit(db: str) -> None:
    code, out = run("assign", "1", "--technician", "tech-wang", "--by", "li")
    assert code == 1
    assert "cannot assign: it is open (acknowledge it first)" in out
    assert "Traceback" not in out
    run("ack", "1", "--by", "x")
    code, out = run("assign", "1", "--technician", "tech-nobody", "--by", "li")
    assert code == 1 and "unknown technician 'tech-nobody'" in out
    code, out = run("show", "42")
    assert code == 1 and "no ticket 42" in out
    code, out = run("resolve", "1", "--by", "x")
    assert code == 0
    code, out = run("close", "1", "--by", "x")
    assert code == 1 and "closes itself once the readings have stayed normal" in out


def test_the_people_of_oncall_yaml_can_be_assigned(db: str) -> None:
    """The shipped config/oncall.yaml is loaded into the store by every command."""
    run("ack", "2", "--by", "x")
    code, out = run("assign", "2", "--technician", "tech-wang-jg", "--by", "x", "--json")
    assert code == 0, out
    assert json.loads(out)["technician_id"] == "tech-wang-jg"
