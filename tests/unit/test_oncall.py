"""Unit tests of ``tickets/oncall.py`` and the shipped ``config/oncall.yaml``.

The shipped file loads against the demo campus with every trade+building
covered and no primary missing over the academic year. Rotations hand off at
local wall-clock time (Asia/Shanghai, and Europe/Berlin across both DST
changes); an override and a holiday replace the primary; escalation deadlines
add up per level. Then one test per kind of mistake, each written as a small
file in tmp_path, asserting the exact field and line of the error.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from campus.errors import ConfigError, ConfigIssue
from rules.model import Severity, Trade, load_rules
from tests.conftest import CONFIG
from tickets.oncall import (
    Language,
    NoTeam,
    OnCall,
    Role,
    UnknownPerson,
    load_oncall,
)

SH = ZoneInfo("Asia/Shanghai")
BERLIN = ZoneInfo("Europe/Berlin")
BUILDINGS = ["b1", "b2"]


def ids(people: list) -> list[str]:
    return [p.id for p in people]


def line_of(text: str, needle: str) -> int:
    """The 1-based line of the only line of ``text`` holding ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits}"
    return hits[0]


# ------------------------------------------------------------ the shipped file


@pytest.fixture(scope="module")
def shipped(campus) -> OnCall:
    return load_oncall(CONFIG / "oncall.yaml", campus.buildings)


def test_shipped_config_covers_every_trade_and_building(shipped, campus):
    assert shipped.coverage(campus.buildings) == []
    assert shipped.config.timezone == "Asia/Shanghai"
    for building in campus.buildings:
        for trade in Trade:
            assert shipped.team_for(trade, building).trade == trade


def test_shipped_config_has_no_gaps_over_the_academic_year(shipped):
    start = datetime(2026, 8, 31, 8, 0, tzinfo=SH)
    assert shipped.gaps(start, start + timedelta(days=366)) == []


def test_shipped_config_serves_every_trade_the_rules_use(shipped, campus):
    rules = load_rules(CONFIG / "rules.yaml", campus)
    at = datetime(2026, 11, 3, 14, 0, tzinfo=SH)
    for rule in rules:
        chain = shipped.chain(rule.trade, "dorm-3", at)
        assert len(chain) == 3  # primary, secondary and supervisor all distinct


def test_shipped_config_content(shipped):
    assert shipped.sla("P1") == (timedelta(minutes=15), timedelta(hours=4))
    assert shipped.sla(Severity.P4) == (timedelta(days=1), timedelta(days=14))
    assert shipped.config.verify_clear == timedelta(minutes=15)
    languages = {t.language for t in shipped.config.technicians}
    assert languages == {Language.zh, Language.en}
    for trade in Trade:
        assert any(trade in c.trades for c in shipped.config.contractors)
    assert shipped.contractors_for("hvac", "plant")[0].id == "ctr-pujiang-me"
    assert shipped.contractor("ctr-hunuan").response == timedelta(hours=4)


def test_shipped_handoff_at_monday_0800_shanghai(shipped):
    # Monday 2026-09-14 08:00 in Shanghai is 00:00 UTC.
    before = datetime(2026, 9, 14, 7, 59, tzinfo=SH)
    after = datetime(2026, 9, 14, 8, 1, tzinfo=SH)
    assert ids(shipped.chain("plumbing", "dorm-3", before)) == [
        "tech-zhao-lei",
        "tech-huang-ht",
        "tech-liu-dm",
    ]
    assert ids(shipped.chain("plumbing", "dorm-3", after)) == [
        "tech-huang-ht",
        "tech-yang-fan",
        "tech-liu-dm",
    ]
    handoff_utc = datetime(2026, 9, 14, 0, 0, tzinfo=UTC)
    assert shipped.chain("plumbing", "dorm-3", handoff_utc)[0].id == "tech-huang-ht"
    assert (
        shipped.chain("plumbing", "dorm-3", handoff_utc - timedelta(seconds=1))[0].id
        == "tech-zhao-lei"
    )


def test_shipped_override_replaces_the_primary(shipped):
    # tech-yang-fan's week, but tech-zhao-lei stands in from Mon 08:00 to Wed 18:00.
    inside = datetime(2026, 12, 15, 3, 0, tzinfo=SH)
    roles = shipped.roles("plumbing", "canteen-1", inside)
    assert roles[Role.primary].id == "tech-zhao-lei"
    assert roles[Role.secondary].id == "tech-huang-ht"  # never the replaced tech-yang-fan
    assert ids(shipped.chain("plumbing", "dorm-1", datetime(2026, 12, 14, 8, 0, tzinfo=SH)))[0] == (
        "tech-zhao-lei"
    )
    end = datetime(2026, 12, 16, 18, 0, tzinfo=SH)
    assert shipped.chain("plumbing", "dorm-1", end - timedelta(minutes=1))[0].id == "tech-zhao-lei"
    assert ids(shipped.chain("plumbing", "dorm-1", end)) == [
        "tech-yang-fan",
        "tech-zhao-lei",
        "tech-liu-dm",
    ]
    # Other teams are untouched.
    assert shipped.chain("plumbing", "teach-1", inside)[0].id == "tech-li-zq"


def test_shipped_holiday_assignment(shipped):
    # National Day 2026: the rotation says tech-zhao-lei; the holiday list says tech-huang-ht.
    eve = datetime(2026, 9, 30, 23, 59, tzinfo=SH)
    first_day = datetime(2026, 10, 1, 0, 0, tzinfo=SH)
    assert shipped.chain("plumbing", "dorm-3", eve)[0].id == "tech-zhao-lei"
    assert ids(shipped.chain("plumbing", "dorm-3", first_day)) == [
        "tech-huang-ht",
        "tech-yang-fan",
        "tech-liu-dm",
    ]
    second_half = datetime(2026, 10, 7, 23, 59, tzinfo=SH)
    assert shipped.chain("plumbing", "dorm-3", second_half)[0].id == "tech-yang-fan"
    # 8 October: back to the rotation, now in the week of Monday 5 October.
    assert shipped.chain("plumbing", "dorm-3", second_half + timedelta(minutes=1))[0].id == (
        "tech-huang-ht"
    )
    spring = datetime(2027, 2, 6, 12, 0, tzinfo=SH)
    assert shipped.chain("hvac", "library", spring)[0].id == "tech-luo-jie"


def test_escalation_due_for_each_level(shipped):
    opened = datetime(2026, 11, 3, 22, 50, tzinfo=SH)
    assert shipped.escalation_due("P1", opened, 0) == opened + timedelta(minutes=15)
    assert shipped.escalation_due("P1", opened, 1) == opened + timedelta(minutes=30)
    assert shipped.escalation_due("P1", opened, 2) is None
    assert shipped.escalation_due("P1", opened, 7) is None
    assert shipped.escalation_due(Severity.P4, opened, 0) == opened + timedelta(days=1)
    assert shipped.escalation_due(Severity.P4, opened, 1) == opened + timedelta(days=2)
    due = shipped.escalation_due("P2", opened.astimezone(UTC), 0)
    assert due == opened + timedelta(hours=1)
    assert due is not None and due.utcoffset() == timedelta(hours=8)
    assert shipped.deadlines("P1", opened) == (
        opened + timedelta(minutes=15),
        opened + timedelta(hours=4),
    )
    with pytest.raises(ValueError, match="level -1"):
        shipped.escalation_due("P1", opened, -1)


def test_naive_times_and_unknown_people_are_refused(shipped):
    naive = datetime(2026, 11, 3, 12, 0)
    with pytest.raises(ValueError, match="no time zone"):
        shipped.chain("plumbing", "dorm-1", naive)
    with pytest.raises(ValueError, match="no time zone"):
        shipped.escalation_due("P1", naive, 0)
    with pytest.raises(ValueError, match="no time zone"):
        shipped.gaps(naive, naive + timedelta(days=1))
    with pytest.raises(UnknownPerson, match="no technician with id 'tech-nobody'"):
        shipped.technician("tech-nobody")
    with pytest.raises(KeyError):
        shipped.contractor("tech-wang-jg")
    with pytest.raises(NoTeam, match="no team covers plumbing in building 'mars-base'"):
        shipped.team_for("plumbing", "mars-base")
    with pytest.raises(ValueError, match="unknown trade 'carpentry'"):
        shipped.team_for("carpentry", "dorm-1")


# ------------------------------------------------------------ small inline files

# A valid file with one team per trade; tests edit it with str.replace.
BASE = """\
timezone: Asia/Shanghai
sla:
  P1: {acknowledge: 15m, resolve: 4h}
  P2: {acknowledge: 1h, resolve: 24h}
  P3: {acknowledge: 4h, resolve: 72h}
  P4: {acknowledge: 1d, resolve: 14d}
teams:
  - {id: pipes, name: Pipes, trade: plumbing, buildings: [b1, b2], supervisor: boss-p}
  - {id: sparks, name: Sparks, trade: electrical, buildings: "*", supervisor: boss-e}
  - {id: air, name: Air, trade: hvac, buildings: "*", supervisor: boss-e}
  - {id: fix, name: Fix, trade: general, buildings: "*", supervisor: boss-e}
technicians:
  - {id: boss-p, name: 王建国, team: pipes, email: wang@x.cn}
  - {id: p-li, name: 李志强, team: pipes, email: li@x.cn, language: en}
  - {id: p-zhang, name: 张伟, team: pipes, email: zhang@x.cn}
  - {id: p-chen, name: 陈晓东, team: pipes, email: chen@x.cn}
  - {id: boss-e, name: 周国平, team: sparks, email: zhou@x.cn}
  - {id: e-wu, name: 吴斌, team: sparks, email: wu@x.cn}
  - {id: a-gao, name: 高明, team: air, email: gao@x.cn}
  - {id: f-xie, name: 谢文, team: fix, email: xie@x.cn}
contractors:
  - {id: c-water, name: 申城给排水, trades: [plumbing], buildings: [b1], email: s@c.cn}
rotations:
  - {team: pipes, members: [p-li, p-zhang, p-chen], handoff: mon 08:00, start: 2026-08-31}
  - {team: sparks, members: [e-wu], handoff: mon 08:00, start: 2026-08-31}
  - {team: air, members: [a-gao], handoff: mon 08:00, start: 2026-08-31}
  - {team: fix, members: [f-xie], handoff: 08:00, every: 1d, start: 2026-08-31}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "oncall.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> OnCall:
    return load_oncall(write(tmp_path, text), BUILDINGS)


def issues(tmp_path: Path, text: str, buildings: list[str] | None = BUILDINGS) -> list[ConfigIssue]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_oncall(path, buildings)
    for issue in info.value.issues:
        assert issue.file == str(path)
    return info.value.issues


def the_issue(
    tmp_path: Path, text: str, field: str, needle: str, message: str, **kw: list[str] | None
) -> ConfigIssue:
    """The only issue of ``text``; it names ``field``, the line of ``needle`` and ``message``."""
    found = issues(tmp_path, text, **kw)
    assert len(found) == 1, [str(i) for i in found]
    issue = found[0]
    assert issue.field == field
    assert issue.line == line_of(text, needle)
    assert message in issue.message
    assert f"oncall.yaml:{issue.line}: {field}:" in str(issue)
    return issue


def test_base_is_valid(tmp_path):
    oc = load(tmp_path, BASE)
    at = datetime(2026, 9, 1, 12, 0, tzinfo=SH)
    assert ids(oc.chain("plumbing", "b1", at)) == ["p-li", "p-zhang", "boss-p"]
    # A one-member team has no secondary; the chain skips it.
    assert ids(oc.chain("electrical", "b2", at)) == ["e-wu", "boss-e"]
    assert oc.technician("p-li").language == Language.en
    assert oc.technician("p-zhang").language == Language.zh  # default_language


def test_daily_rotation_and_default_language(tmp_path):
    text = BASE.replace("timezone: Asia/Shanghai", "timezone: Asia/Shanghai\ndefault_language: en")
    oc = load(tmp_path, text)
    assert oc.technician("p-zhang").language == Language.en
    assert oc.turn("fix", datetime(2026, 9, 2, 7, 59, tzinfo=SH)) == 1
    assert oc.turn("fix", datetime(2026, 9, 2, 8, 0, tzinfo=SH)) == 2


def test_supervisor_standing_in_is_paged_once(tmp_path):
    text = BASE + (
        "overrides:\n"
        "  - {team: pipes, technician: boss-p, from: 2026-09-01 08:00, to: 2026-09-02 08:00}\n"
    )
    oc = load(tmp_path, text)
    at = datetime(2026, 9, 1, 9, 0, tzinfo=SH)
    assert ids(oc.chain("plumbing", "b2", at)) == ["boss-p", "p-zhang"]


def test_override_beats_holiday_beats_rotation(tmp_path):
    text = BASE + (
        "holidays:\n"
        "  - {name: 国庆节, start: 2026-10-01, end: 2026-10-07, on_call: {pipes: p-chen}}\n"
        "overrides:\n"
        "  - {team: pipes, technician: p-zhang, from: 2026-10-03 00:00, to: 2026-10-04 00:00}\n"
    )
    oc = load(tmp_path, text)
    # Week of 2026-09-28 is turn 4: p-zhang by rotation.
    assert oc.chain("plumbing", "b1", datetime(2026, 9, 30, 12, tzinfo=SH))[0].id == "p-zhang"
    assert ids(oc.chain("plumbing", "b1", datetime(2026, 10, 2, 12, tzinfo=SH))) == [
        "p-chen",
        "p-li",
        "boss-p",
    ]
    assert oc.chain("plumbing", "b1", datetime(2026, 10, 3, 12, tzinfo=SH))[0].id == "p-zhang"
    # 8 October is back on the rotation, in the week of Monday 5 October (turn 5).
    assert oc.chain("plumbing", "b1", datetime(2026, 10, 8, 0, tzinfo=SH))[0].id == "p-chen"
    # Holiday days are covered even for teams not listed (their rotation goes on).
    assert oc.gaps(datetime(2026, 9, 1, tzinfo=SH), datetime(2027, 9, 1, tzinfo=SH)) == []


def test_gaps_before_a_rotation_starts(tmp_path):
    oc = load(
        tmp_path,
        BASE.replace(
            "members: [e-wu], handoff: mon 08:00, start: 2026-08-31",
            "members: [e-wu], handoff: mon 08:00, start: 2026-09-14",
        ),
    )
    start = datetime(2026, 9, 1, tzinfo=SH)
    gaps = oc.gaps(start, start + timedelta(days=30))
    assert [(g.team, g.start, g.end) for g in gaps] == [
        ("sparks", start, datetime(2026, 9, 14, 8, 0, tzinfo=SH))
    ]
    # With no primary the supervisor is still paged.
    assert ids(oc.chain("electrical", "b1", start)) == ["boss-e"]


def test_fixed_escalation_wait(tmp_path):
    text = BASE + (
        "escalation:\n"
        "  - {notify: primary, wait: acknowledge}\n"
        "  - {notify: secondary, wait: 30m}\n"
        "  - {notify: supervisor}\n"
    )
    oc = load(tmp_path, text)
    opened = datetime(2026, 9, 1, 12, 0, tzinfo=SH)
    assert oc.escalation_due("P2", opened, 0) == opened + timedelta(hours=1)
    assert oc.escalation_due("P2", opened, 1) == opened + timedelta(hours=1, minutes=30)
    assert oc.escalation_due("P2", opened, 2) is None


# A Berlin rotation: the handoff stays at Monday 08:00 local across DST.
BERLIN_FILE = BASE.replace("timezone: Asia/Shanghai", "timezone: Europe/Berlin").replace(
    "handoff: mon 08:00, start: 2026-08-31}", "handoff: mon 08:00, start: 2026-03-02}", 1
)


@pytest.mark.parametrize(
    ("local", "utc_offset_h", "before", "after"),
    [
        # DST began Sun 2026-03-29: Mon 30 March 08:00 CEST is 06:00 UTC (turn 3 -> 4).
        (datetime(2026, 3, 30, 8, 0), 2, "p-li", "p-zhang"),
        # DST ended Sun 2026-10-25: Mon 26 October 08:00 CET is 07:00 UTC (turn 33 -> 34).
        (datetime(2026, 10, 26, 8, 0), 1, "p-li", "p-zhang"),
    ],
)
def test_rotation_follows_local_time_across_dst(tmp_path, local, utc_offset_h, before, after):
    oc = load(tmp_path, BERLIN_FILE)
    handoff = local.replace(tzinfo=BERLIN)
    assert handoff.utcoffset() == timedelta(hours=utc_offset_h)
    one = timedelta(minutes=1)
    assert oc.chain("plumbing", "b1", handoff - one)[0].id == before
    assert oc.chain("plumbing", "b1", handoff + one)[0].id == after
    # The same instants in UTC give the same answers.
    assert oc.chain("plumbing", "b1", (handoff + one).astimezone(UTC))[0].id == after
    # Counting 168-hour weeks from the first handoff (07:00 UTC in winter) would
    # be an hour late in summer and an hour early after the change back.
    assert oc.chain("plumbing", "b1", handoff + timedelta(minutes=30))[0].id == after
    assert oc.chain("plumbing", "b1", handoff - timedelta(minutes=30))[0].id == before


def test_berlin_escalation_is_elapsed_time(tmp_path):
    oc = load(tmp_path, BERLIN_FILE)
    opened = datetime(2026, 3, 28, 12, 0, tzinfo=BERLIN)  # a day before DST starts
    due = oc.escalation_due("P4", opened, 0)
    assert due is not None
    assert due.astimezone(UTC) - opened.astimezone(UTC) == timedelta(days=1)
    assert due.hour == 13  # 24 real hours later, read in CEST


# ------------------------------------------------------------ bad files


def test_unknown_technician_in_rotation(tmp_path):
    text = BASE.replace("members: [p-li, p-zhang, p-chen]", "members: [p-li, p-zhao, p-chen]")
    the_issue(tmp_path, text, "rotations[0].members[1]", "p-zhao", "no technician with id 'p-zhao'")


def test_unknown_team_of_technician(tmp_path):
    text = BASE.replace("team: sparks, email: wu@x.cn", "team: sparkz, email: wu@x.cn")
    found = issues(tmp_path, text)
    issue = next(i for i in found if i.field == "technicians[5].team")
    assert issue.line == line_of(text, "sparkz")
    assert "no team with id 'sparkz'" in issue.message
    # e-wu now is in no valid team, so the sparks rotation lists an outsider.
    assert {i.field for i in found} == {"technicians[5].team", "rotations[1].members[0]"}


def test_unknown_supervisor(tmp_path):
    text = BASE.replace("supervisor: boss-p}", "supervisor: boss-x}")
    the_issue(tmp_path, text, "teams[0].supervisor", "boss-x", "no technician with id 'boss-x'")


def test_technician_in_two_teams(tmp_path):
    text = BASE.replace(
        "  - {id: e-wu, name: 吴斌, team: sparks, email: wu@x.cn}\n",
        "  - {id: e-wu, name: 吴斌, team: sparks, email: wu@x.cn}\n"
        "  - {id: e-wu, name: 吴斌, team: air, email: wu@x.cn}\n",
    )
    the_issue(
        tmp_path,
        text,
        "technicians[6].team",
        "team: air, email: wu",
        "technician 'e-wu' is already in team 'sparks' (technicians[5]); "
        "a technician belongs to one team",
    )


def test_technician_given_a_list_of_teams(tmp_path):
    text = BASE.replace("team: sparks, email: wu@x.cn", "team: [sparks, air], email: wu@x.cn")
    the_issue(tmp_path, text, "technicians[5].team", "[sparks, air]", "belongs to exactly one team")


def test_team_without_members(tmp_path):
    text = BASE.replace(
        "  - {id: fix, name: Fix,",
        "  - {id: paint, name: Paint, trade: general, buildings: [b9], supervisor: boss-e}\n"
        "  - {id: fix, name: Fix,",
    )
    found = issues(tmp_path, text, buildings=None)
    no_members = [i for i in found if "no members" in i.message]
    assert len(no_members) == 1
    assert no_members[0].field == "teams[3].id"
    assert no_members[0].line == line_of(text, "id: paint")
    assert "team 'paint' has no members" in no_members[0].message


def test_rotation_member_not_in_team(tmp_path):
    text = BASE.replace("members: [p-li, p-zhang, p-chen]", "members: [p-li, e-wu, p-chen]")
    the_issue(
        tmp_path,
        text,
        "rotations[0].members[1]",
        "members: [p-li, e-wu",
        "'e-wu' is in team 'sparks', not 'pipes'",
    )


def test_unknown_building(tmp_path):
    text = BASE.replace("buildings: [b1, b2]", "buildings: [b1, b2, b7]")
    the_issue(tmp_path, text, "teams[0].buildings[2]", "b7", "unknown building id 'b7'")


def test_unknown_building_of_contractor(tmp_path):
    text = BASE.replace("buildings: [b1], email: s@c.cn", "buildings: [b3], email: s@c.cn")
    the_issue(tmp_path, text, "contractors[0].buildings[0]", "b3", "unknown building id 'b3'")


def test_overlapping_overrides(tmp_path):
    text = BASE + (
        "overrides:\n"
        "  - team: pipes\n"
        "    technician: p-chen\n"
        "    from: 2026-10-12 08:00\n"
        "    to: 2026-10-14 08:00\n"
        "  - team: pipes\n"
        "    technician: p-zhang\n"
        "    from: 2026-10-13 20:00\n"
        "    to: 2026-10-15 08:00\n"
        "  - {team: sparks, technician: boss-e, from: 2026-10-13 00:00, to: 2026-10-14 00:00}\n"
    )
    the_issue(
        tmp_path,
        text,
        "overrides[1].from",
        "from: 2026-10-13 20:00",
        "overlaps overrides[0] (p-chen, 2026-10-12 08:00:00 to 2026-10-14 08:00:00) "
        "for team 'pipes'",
    )


def test_override_to_not_after_from(tmp_path):
    text = BASE + (
        "overrides:\n"
        "  - team: pipes\n"
        "    technician: p-chen\n"
        "    from: 2026-10-12 08:00\n"
        "    to: 2026-10-12 08:00\n"
    )
    the_issue(
        tmp_path, text, "overrides[0].to", "to: 2026", "must be after from 2026-10-12 08:00:00"
    )


def test_override_with_an_offset_is_refused(tmp_path):
    text = BASE + (
        "overrides:\n"
        "  - team: pipes\n"
        "    technician: p-chen\n"
        "    from: 2026-10-12T08:00:00+08:00\n"
        "    to: 2026-10-13 08:00\n"
    )
    the_issue(tmp_path, text, "overrides[0].from", "from: 2026", "without an offset")


def test_override_by_another_trade(tmp_path):
    text = BASE + (
        "overrides:\n"
        "  - {team: pipes, technician: e-wu, from: 2026-10-12 08:00, to: 2026-10-13 08:00}\n"
    )
    the_issue(
        tmp_path,
        text,
        "overrides[0].technician",
        "technician: e-wu",
        "technician 'e-wu' is electrical (team 'sparks'); team 'pipes' needs plumbing",
    )


@pytest.mark.parametrize(
    ("old", "new", "field", "needle"),
    [
        ("{id: air, name: Air", "{id: pipes, name: Air", "teams[2].id", "name: Air"),
        ("{id: p-chen, name: 陈晓东", "{id: p-li, name: 陈晓东", "technicians[3].id", "陈晓东"),
        ("{id: c-water,", "{id: f-xie,", "contractors[0].id", "申城给排水"),
    ],
)
def test_duplicate_ids(tmp_path, old, new, field, needle):
    text = BASE.replace(old, new)
    found = issues(tmp_path, text)
    issue = next(i for i in found if i.field == field)
    assert issue.line == line_of(text, needle)
    assert "duplicate" in issue.message
    assert "(first at " in issue.message


def test_two_teams_cover_the_same_trade_and_building(tmp_path):
    text = (
        BASE.replace(
            "technicians:\n",
            "  - {id: pipes2, name: P2, trade: plumbing, buildings: [b2], supervisor: boss-p}\n"
            "technicians:\n  - {id: p2-he, name: 何伟, team: pipes2, email: he@x.cn}\n",
        )
        + "  - {team: pipes2, members: [p2-he], handoff: mon 08:00, start: 2026-08-31}\n"
    )
    the_issue(
        tmp_path,
        text,
        "teams[4].buildings",
        "id: pipes2",
        "teams 'pipes' (teams[0]) and 'pipes2' both cover plumbing in b2",
    )


def test_wildcard_team_overlaps_a_listed_one(tmp_path):
    text = BASE.replace(
        "  - {id: air, name: Air, trade: hvac,", "  - {id: air, name: Air, trade: electrical,"
    )
    found = issues(tmp_path, text)
    fields = {i.field: i for i in found}
    assert "every building" in fields["teams[2].buildings"].message
    assert fields["teams"].message == "no team covers hvac in b1, b2"


def test_trade_and_building_without_a_team(tmp_path):
    text = BASE.replace("buildings: [b1, b2]", "buildings: [b1]")
    # Located at the teams list (its first entry).
    the_issue(tmp_path, text, "teams", "{id: pipes,", "no team covers plumbing in b2")
    # coverage() answers the same question for any building list.
    oc = load_oncall(write(tmp_path, text))
    assert oc.coverage(["b1", "b2", "b3"], ["plumbing"]) == [
        (Trade.plumbing, "b2"),
        (Trade.plumbing, "b3"),
    ]


def test_acknowledge_not_before_resolve(tmp_path):
    text = BASE.replace("P2: {acknowledge: 1h, resolve: 24h}", "P2: {acknowledge: 1h, resolve: 1h}")
    found = issues(tmp_path, text)
    issue = next(i for i in found if i.field == "sla.P2.resolve")
    assert issue.line == line_of(text, "P2:")
    assert "P2: resolve (1h) must be longer than acknowledge (1h)" in issue.message


def test_less_urgent_severity_with_a_tighter_deadline(tmp_path):
    text = BASE.replace("P3: {acknowledge: 4h,", "P3: {acknowledge: 30m,")
    the_issue(
        tmp_path,
        text,
        "sla.P3.acknowledge",
        "P3:",
        "P3 acknowledge (30m) is shorter than P2's (1h)",
    )


def test_escalation_slower_than_resolve(tmp_path):
    text = BASE + (
        "escalation:\n"
        "  - {notify: primary, wait: acknowledge}\n"
        "  - {notify: secondary, wait: 4h}\n"
        "  - {notify: supervisor}\n"
    )
    the_issue(
        tmp_path,
        text,
        "escalation[1].wait",
        "wait: 4h",
        "for P1 the last step (supervisor) is paged after 4h15m, "
        "not before the resolve deadline (4h)",
    )


def test_escalation_shape_mistakes(tmp_path):
    text = BASE + (
        "escalation:\n"
        "  - {notify: secondary, wait: acknowledge}\n"
        "  - {notify: secondary}\n"
        "  - {notify: supervisor, wait: 1h}\n"
    )
    found = {i.field: i for i in issues(tmp_path, text)}
    assert set(found) == {
        "escalation[0].notify",
        "escalation[1].notify",
        "escalation[1]",
        "escalation[2].wait",
    }
    assert found["escalation[2].wait"].line == line_of(text, "wait: 1h")
    assert "starts with the primary" in found["escalation[0].notify"].message


def test_missing_severity_and_bad_values(tmp_path):
    text = (
        BASE.replace("  P4: {acknowledge: 1d, resolve: 14d}\n", "")
        .replace("timezone: Asia/Shanghai", "timezone: Asia/Shanghia")
        .replace("email: zhang@x.cn", "email: zhang-at-x.cn")
        .replace("handoff: 08:00, every: 1d", "handoff: 8:00, every: 1d")
    )
    found = {i.field: i for i in issues(tmp_path, text)}
    assert found["timezone"].line == 1
    assert "unknown time zone 'Asia/Shanghia'" in found["timezone"].message
    assert found["sla.P4"].line == line_of(text, "P1:")  # the sla mapping
    assert found["sla.P4"].message == "Field required"
    assert found["technicians[2].email"].line == line_of(text, "zhang-at-x.cn")
    assert found["rotations[3].handoff"].line == line_of(text, "handoff: 8:00")
    assert "two digits" in found["rotations[3].handoff"].message


def test_rotation_start_off_the_handoff_day(tmp_path):
    text = BASE.replace(
        "members: [e-wu], handoff: mon 08:00, start: 2026-08-31",
        "members: [e-wu], handoff: mon 08:00, start: 2026-09-01",
    )
    the_issue(
        tmp_path,
        text,
        "rotations[1].start",
        "2026-09-01",
        "start 2026-09-01 is a tue; the first handoff must fall on mon",
    )


def test_team_without_rotation(tmp_path):
    text = BASE.replace(
        "  - {team: air, members: [a-gao], handoff: mon 08:00, start: 2026-08-31}\n", ""
    )
    the_issue(tmp_path, text, "teams[2].id", "id: air", "team 'air' has no rotation")


def test_holiday_mistakes(tmp_path):
    text = BASE + (
        "holidays:\n"
        "  - name: 国庆节\n"
        "    start: 2026-10-01\n"
        "    end: 2026-10-07\n"
        "    on_call:\n"
        "      pipes: p-chen\n"
        "      sparkz: e-wu\n"
        "  - name: 校庆日\n"
        "    start: 2026-10-07\n"
        "    on_call:\n"
        "      pipes: p-li\n"
        "  - name: 运动会\n"
        "    start: 2026-12-02\n"
        "    end: 2026-12-01\n"
        "    on_call: {air: a-gao}\n"
    )
    found = {i.field: i for i in issues(tmp_path, text)}
    assert set(found) == {
        "holidays[0].on_call.sparkz",
        "holidays[1].on_call.pipes",
        "holidays[2].end",
    }
    assert found["holidays[0].on_call.sparkz"].line == line_of(text, "sparkz")
    assert found["holidays[1].on_call.pipes"].line == line_of(text, "pipes: p-li")
    assert "overlap" in found["holidays[1].on_call.pipes"].message
    assert found["holidays[2].end"].line == line_of(text, "end: 2026-12-01")


def test_every_mistake_is_reported_at_once(tmp_path):
    text = (
        BASE.replace("supervisor: boss-p}", "supervisor: boss-x}")
        .replace("buildings: [b1, b2]", "buildings: [b1, b2, b7]")
        .replace("members: [p-li, p-zhang, p-chen]", "members: [p-li, p-zhao, p-chen]")
        .replace("P3: {acknowledge: 4h, resolve: 72h}", "P3: {acknowledge: 4d, resolve: 72h}")
    )
    found = issues(tmp_path, text)
    assert {i.field for i in found} >= {
        "teams[0].supervisor",
        "teams[0].buildings[2]",
        "rotations[0].members[1]",
        "sla.P3.resolve",
    }
    lines = [i.line or 0 for i in found]
    assert lines == sorted(lines)
