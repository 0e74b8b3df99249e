"""Public notices: the wording occupants read in both languages, which tickets
become notices, and the privacy filter (no names, ids, phone numbers or e-mail
addresses ever reach a notice)."""

# The Chinese strings use full-width Chinese punctuation, as Chinese text should:
# ruff: noqa: RUF001

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api.i18n import STRINGS, Words
from api.notices import Private, building_states, floor_text, notices
from campus.registry import Campus
from tickets.models import Ticket

NOW = datetime(2024, 5, 6, 6, 0, tzinfo=UTC)  # 14:00 in Shanghai
PRIVATE = Private(
    names=["王建国", "Wang Jianguo", "Acme Pumps Ltd"],
    ids=["tech-wang-jg", "dorm-3-r402", "wangjg@fm.riverside.example.cn"],
)
LEAKY = (
    "王建国 (tech-wang-jg, +86 139 0000 0101, wangjg@fm.riverside.example.cn) "
    "checked dorm-3-r402; call 021-5555-1234"
)


def ticket(**kw: Any) -> Ticket:
    fields: dict[str, Any] = {
        "id": 1,
        "state": "open",
        "severity": "P2",
        "building": "dorm-3",
        "trade": "plumbing",
        "device": None,
        "title": LEAKY,
        "description": LEAKY,
        "first_seen": NOW - timedelta(hours=1),
        "resolve_due": NOW + timedelta(hours=2),  # 16:00 in Shanghai
        "internal": False,
        "public_note": None,
        "technician_id": "tech-wang-jg",
    }
    fields.update(kw)
    return Ticket(**fields)


def test_the_example_notice_in_both_languages(campus: Campus) -> None:
    tickets = [
        ticket(id=1, device="dorm-3-r201", state="in_progress"),
        ticket(id=2, device="dorm-3-r305", state="in_progress"),
        ticket(id=3, device="dorm-3-r402", state="assigned"),
    ]
    tickets[2].state = "in_progress"
    zh = notices(tickets, campus, "zh", NOW, PRIVATE)
    en = notices(tickets, campus, "en", NOW, PRIVATE)
    assert len(zh) == len(en) == 1  # one building, one trade: one notice
    assert zh[0].text == "3号宿舍楼2-4层停水，维修人员已到场，预计16:00恢复"
    assert en[0].text == (
        "Water off in Dormitory 3, floors 2-4, repair crew on site, expected back 16:00"
    )
    assert en[0].floors == (2, 3, 4) and en[0].progress == "on_site"


@pytest.mark.parametrize(
    ("state", "zh", "en"),
    [
        ("open", "已报修", "reported"),
        ("acknowledged", "已安排维修人员", "repair crew assigned"),
        ("assigned", "已安排维修人员", "repair crew assigned"),
        ("in_progress", "维修人员已到场", "repair crew on site"),
        ("resolved", "已修复，正在确认", "fixed, being checked"),
    ],
)
def test_each_state_has_its_phrase(campus: Campus, state: str, zh: str, en: str) -> None:
    one = [ticket(state=state, severity="P3", trade="hvac", building="teach-1")]
    assert zh in notices(one, campus, "zh", NOW)[0].text
    text = notices(one, campus, "en", NOW)[0].text
    assert text.startswith("Heating/cooling problem in Teaching Building 1, " + en), text
    if state == "resolved":  # fixed: no time to wait for
        assert "expected" not in text


def test_the_least_advanced_ticket_and_the_latest_time_speak_for_a_group(
    campus: Campus,
) -> None:
    group = [
        ticket(id=1, state="in_progress", resolve_due=NOW + timedelta(hours=1)),
        ticket(id=2, state="open", resolve_due=NOW + timedelta(days=1, hours=3)),
        ticket(id=3, state="open", resolve_due=NOW - timedelta(hours=1)),  # overdue: ignored
    ]
    (n,) = notices(group, campus, "en", NOW)
    assert n.text == "Water off in Dormitory 3, reported, expected back 7 May 17:00"
    (n,) = notices(group, campus, "zh", NOW)
    assert n.text == "3号宿舍楼停水，已报修，预计5月7日 17:00恢复"


def test_internal_closed_and_unknown_tickets_are_not_public(campus: Campus) -> None:
    hidden = [
        ticket(internal=True),
        ticket(state="closed"),
        ticket(building="not-a-building"),
    ]
    assert notices(hidden, campus, "zh", NOW) == []
    assert building_states(hidden[:2]) == {}


def test_building_states_are_the_worst_severity_not_yet_fixed() -> None:
    states = building_states(
        [
            ticket(building="dorm-1", severity="P4"),
            ticket(building="dorm-1", severity="P1"),
            ticket(building="dorm-2", severity="P3"),
            ticket(building="dorm-4", severity="P1", state="resolved"),
            ticket(building="dorm-5", severity="P1", internal=True),
        ]
    )
    assert states == {"dorm-1": "fault", "dorm-2": "warning"}


def test_no_name_id_phone_or_email_reaches_a_notice(campus: Campus) -> None:
    """S6: the derived notice is made of the registry's building name, floors,
    trade, state and time only; a staff note is scrubbed."""
    tickets = [
        ticket(id=1, device="dorm-3-r402"),
        ticket(id=2, building="teach-1", trade="electrical", public_note=LEAKY),
    ]
    secrets = ["王建国", "tech-wang-jg", "dorm-3-r402", "139", "wangjg@", "5555", "@"]
    for lang in ("zh", "en"):
        texts = [n.text for n in notices(tickets, campus, lang, NOW, PRIVATE)]
        assert len(texts) == 2
        for text in texts:
            for secret in secrets:
                assert secret not in text, (lang, secret, text)
    note = next(n for n in notices(tickets, campus, "en", NOW, PRIVATE) if n.staff_written)
    assert note.text.startswith("*** (***, ***, ***) checked ***")


def test_a_note_with_private_data_is_found_out() -> None:
    assert PRIVATE.problems("Water back by 16:00, floors 2-4") == []
    assert PRIVATE.problems("call 13812345678") == ["a phone number"]
    assert PRIVATE.problems("mail a@b.cn") == ["an e-mail address"]
    assert PRIVATE.problems("wang jianguo is on it") == ["a person's name or id, or a device id"]
    assert PRIVATE.problems("see DORM-3-R402") != []
    assert PRIVATE.scrub("预计2024-05-06 16:00恢复") == "预计2024-05-06 16:00恢复"  # dates stay


def test_floors_read_naturally() -> None:
    zh, en = Words("zh"), Words("en")
    assert floor_text(zh, []) == "" and floor_text(en, []) == ""
    assert floor_text(zh, [3]) == "3层" and floor_text(en, [3]) == "floor 3"
    assert floor_text(zh, [2, 3, 4]) == "2-4层" and floor_text(en, [2, 3, 4]) == "floors 2-4"
    assert floor_text(zh, [1, 3]) == "1、3层" and floor_text(en, [1, 3]) == "floors 1, 3"
    assert floor_text(zh, [-1]) == "地下1层" and floor_text(en, [-1, 1]) == "floors B1, 1"


def test_every_language_has_every_string() -> None:
    assert set(STRINGS["zh"]) == set(STRINGS["en"])
    for table in STRINGS.values():
        assert all(value.strip() or key == "sentence_end" for key, value in table.items())
