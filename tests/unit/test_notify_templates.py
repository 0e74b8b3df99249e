"""Notice wording: what a technician must read in each language, nothing left
untranslated or printed as None, deadlines only while they still matter."""

# ruff: noqa: RUF001

from __future__ import annotations

import pytest

from tickets.notify.base import EVENTS
from tickets.notify.templates import render

TICKET = {
    "id": 1042,
    "severity": "P1",
    "building": "图书馆",
    "device": "AHU-3",
    "trade": "hvac",
    "title": "送风机停转",
    "state": "open",
    "assignee": None,
    "count": 3,
    "opened_at": "2024-05-06T08:00:00+08:00",
    "ack_due": "2024-05-06T08:15:00+08:00",
    "resolve_due": "2024-05-06T12:00:00+08:00",
    "escalation_level": 2,
    "url": "https://ops.example.edu/t/1042",
}


def test_chinese_new_ticket_reads_like_a_facilities_office():
    title, body = render("opened", TICKET, "zh")
    assert title == "【P1 紧急维修】工单 #1042 新报修：图书馆 送风机停转"
    lines = body.splitlines()
    assert lines[0] == "新报修工单，请尽快安排人员处理。"
    assert "设备：AHU-3" in lines
    assert "专业：暖通空调" in lines
    assert "负责人：未指派" in lines
    assert "同一故障已报警 3 次" in lines
    assert "请在 2024-05-06 08:15 前确认接单" in lines
    assert "请在 2024-05-06 12:00 前修复" in lines
    assert "工单详情：https://ops.example.edu/t/1042" in lines


def test_english_new_ticket():
    title, body = render("opened", TICKET, "en")
    assert title == "[P1 urgent] Ticket #1042 opened: 图书馆 - 送风机停转"
    lines = body.splitlines()
    assert "Trade: HVAC" in lines
    assert "Assignee: unassigned" in lines
    assert "Acknowledge by 2024-05-06 08:15" in lines
    assert "Fix by 2024-05-06 12:00" in lines
    assert "Reported 3 times" in lines


def test_escalation_names_the_level():
    title, body = render("escalated", TICKET, "zh")
    assert "已升级" in title
    assert body.splitlines()[0] == "工单已升级至第 2 级，请立即处理。"
    _, body_en = render("escalated", TICKET, "en")
    assert body_en.splitlines()[0] == "Escalated to level 2: act now."


def test_assignment_names_the_technician_and_drops_the_ack_deadline():
    ticket = TICKET | {"assignee": "王师傅", "state": "assigned"}
    title, body = render("assigned", ticket, "zh")
    assert "已派单" in title
    assert "工单已派给王师傅，请尽快到场处理。" in body
    assert "负责人：王师傅" in body
    assert "状态：已派单" in body
    assert "确认接单" not in body  # already in hand
    assert "请在 2024-05-06 12:00 前修复" in body


@pytest.mark.parametrize("event", ["resolved", "closed"])
def test_finished_tickets_carry_no_deadlines(event):
    for language in ("zh", "en"):
        _, body = render(event, TICKET | {"state": event}, language)
        assert "08:15" not in body and "12:00" not in body


def test_missing_optional_fields_leave_no_none_or_empty_lines():
    ticket = TICKET | {
        "device": None,
        "assignee": None,
        "url": None,
        "ack_due": None,
        "resolve_due": None,
        "count": 1,
    }
    for language in ("zh", "en"):
        title, body = render("opened", ticket, language)
        assert "None" not in title + body
        assert all(line.strip() for line in body.splitlines())
    _, body = render("opened", ticket, "zh")
    assert "设备" not in body and "报警" not in body and "前确认" not in body


def test_unparsable_time_is_shown_as_given():
    _, body = render("opened", TICKET | {"ack_due": "tomorrow 9am"}, "en")
    assert "Acknowledge by tomorrow 9am" in body


@pytest.mark.parametrize("language", ["zh", "en"])
def test_every_event_has_its_own_title(language):
    titles = {render(event, TICKET, language)[0] for event in EVENTS}
    assert len(titles) == len(EVENTS)


def test_chinese_notice_has_no_english_labels():
    title, body = render("reopened", TICKET | {"trade": "plumbing", "severity": "P2"}, "zh")
    text = title + body
    assert "给排水" in text and "加急" in text and "重新打开" in text
    for word in ("plumbing", "Ticket", "Building", "reopened", "P2 high"):
        assert word not in text


def test_unknown_language_is_refused_naming_the_allowed_ones():
    with pytest.raises(ValueError, match="zh, en"):
        render("opened", TICKET, "fr")


def test_unknown_event_is_refused():
    with pytest.raises(ValueError, match="escalated"):
        render("exploded", TICKET, "zh")
