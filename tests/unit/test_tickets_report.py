"""Assessment reports from a real SQLite store with hand-made tickets, whose
figures are worked out by hand below."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from campus.cli import main
from tickets.db import open_store
from tickets.models import Source, Ticket
from tickets.report import build_report, write_report
from tickets.service import Alert, Tickets

# Monday 2026-11-02 09:00 Shanghai
T0 = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def ticket(t: Tickets, clock: Clock, n: int, sev: str, ack: float | None, who: str) -> int:
    """Ticket ``n`` opened ``n`` hours after T0 with its SLA deadlines, acknowledged
    after ``ack`` minutes and given to ``who``."""
    clock.now = opened = T0 + timedelta(hours=n)
    alert = Alert(
        dedup_key=f"k{n}",
        source=Source.manual,
        severity=sev,
        building="dorm-1",
        trade="plumbing",
        title=f"t{n}",
        at=opened,
    )
    tid = t.raise_alert(alert).ticket_id
    ack_due, resolve_due = {"P1": (15, 240), "P2": (60, 1440)}[sev]
    with t.store.session() as s:
        row = s.get(Ticket, tid)
        assert row is not None
        row.ack_due = opened + timedelta(minutes=ack_due)
        row.resolve_due = opened + timedelta(minutes=resolve_due)
    if ack is not None:
        clock.now = opened + timedelta(minutes=ack)
        t.acknowledge(tid, "x")
        if who == "acme":
            t.assign(tid, "x", contractor="acme")
        else:
            t.assign(tid, "x", technician=who)
    return tid


def resolve_at(t: Tickets, clock: Clock, tid: int, n: int, hours: float) -> None:
    clock.now = T0 + timedelta(hours=n + hours)
    t.resolve(tid, "x")


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[str, Tickets]:
    """Three tickets for Wang (team-water), one never answered, one for Acme:

    #1 P1 ack 10 min, resolved after 2 h: both deadlines met
    #2 P1 ack 30 min, resolved after 6 h, reopened 7 h after opening and
       acknowledged again a minute later (the later answer counts), not resolved
       again: both deadlines missed
    #3 P2 ack 20 min, resolved after 3 h: both met
    #4 P1 never acknowledged: acknowledge deadline missed, resolve missed
    #5 P1 Acme: ack 5 min, resolved after 1 h: both met
    """
    url = f"sqlite:///{tmp_path / 'r.db'}"
    clock = Clock()
    t = Tickets(open_store(url), clock=clock)
    t.upsert_people(
        teams=[{"id": "team-water", "name": "Water", "trade": "plumbing"}],
        technicians=[{"id": "tech-wang", "name": "王建国", "team": "team-water"}],
        contractors=[{"id": "acme", "name": "Acme", "trades": ["plumbing"]}],
    )
    resolve_at(t, clock, ticket(t, clock, 1, "P1", 10, "tech-wang"), 1, 2)
    two = ticket(t, clock, 2, "P1", 30, "tech-wang")
    resolve_at(t, clock, two, 2, 6)
    clock.now = T0 + timedelta(hours=9)
    t.reopen(two, "x", "leaks again")
    clock.now = T0 + timedelta(hours=9, minutes=1)
    t.acknowledge(two, "x")
    resolve_at(t, clock, ticket(t, clock, 3, "P2", 20, "tech-wang"), 3, 3)
    ticket(t, clock, 4, "P1", None, "")
    resolve_at(t, clock, ticket(t, clock, 5, "P1", 5, "acme"), 5, 1)
    return url, t


def test_figures_per_technician_team_and_contractor(seeded, tmp_path: Path) -> None:
    _, t = seeded
    now = T0 + timedelta(days=2)
    report = build_report(t.store, T0, T0 + timedelta(days=7), now, "week", "Asia/Shanghai")
    wang = report.tables["technician"].set_index("technician").loc["tech-wang"]
    assert wang["tickets"] == 3
    # acknowledged after 10, 421 (the answer after reopening) and 20 minutes
    assert wang["ack_median_min"] == 20.0
    assert wang["ack_p90_min"] == pytest.approx(20 + 0.8 * (421 - 20), abs=0.1)
    assert wang["resolve_median_h"] == 2.5  # 2 h and 3 h; #2 is open again
    assert wang["ack_sla_pct"] == pytest.approx(100 * 2 / 3, abs=0.1)
    assert wang["resolve_sla_pct"] == pytest.approx(100 * 2 / 3, abs=0.1)
    assert wang["reopen_pct"] == pytest.approx(100 / 3, abs=0.1)
    # #4 (never answered) and #5 (a contractor's) have no technician
    nobody = report.tables["technician"].set_index("technician").loc["unassigned"]
    assert (nobody["tickets"], nobody["ack_sla_pct"]) == (2, 50.0)
    acme = report.tables["contractor"].set_index("contractor").loc["acme"]
    assert (acme["tickets"], acme["ack_median_min"], acme["resolve_sla_pct"]) == (1, 5.0, 100.0)
    team = report.tables["team"].set_index("team").loc["team-water"]
    assert team["tickets"] == 3
    assert set(report.tables["team"]["period"]) == {"2026-11-02"}  # the week's Monday

    paths = write_report(report, tmp_path / "out")
    assert sorted(p.name for p in paths) == [
        "report-contractor.csv",
        "report-team.csv",
        "report-technician.csv",
        "report.html",
        "report.md",
    ]
    rows = list(csv.DictReader((tmp_path / "out" / "report-technician.csv").open()))
    assert {r["technician"] for r in rows} == {"tech-wang", "unassigned"}
    html = (tmp_path / "out" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3
    assert "| tech-wang |" in (tmp_path / "out" / "report.md").read_text()


def test_the_command_writes_the_files(seeded, tmp_path: Path, monkeypatch) -> None:
    url, _ = seeded
    monkeypatch.setenv("CAMPUS_DB_URL", url)
    out = tmp_path / "rep"
    result = CliRunner().invoke(
        main,
        [
            "report",
            "--since",
            "2026-11-01T00:00:00+08:00",
            "--until",
            "2026-12-01T00:00:00+08:00",
            "--by",
            "month",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "report.md").exists() and "report.html" in result.output
    rows = list(csv.DictReader((out / "report-team.csv").open()))
    assert [r["period"] for r in rows] == ["2026-11-01", "2026-11-01"]
    bad = CliRunner().invoke(main, ["report", "--since", "now", "--until", "-1d"])
    assert bad.exit_code == 2 and "is not after" in bad.output
