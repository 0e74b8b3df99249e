"""Titles and bodies of ticket notices, in Simplified Chinese or English.

A technician reads these on a phone, often in a group chat among other alerts,
so the title carries what decides whether to drop everything (severity, ticket
number, what happened, where) and the body one fact per line: the place, the
equipment, the trade, who has it and by when it must be acknowledged or fixed.
The wording follows what a campus facilities office writes (工单, 紧急维修,
请在…前确认), not a word-for-word translation of the English.
"""

# The Chinese strings use full-width Chinese punctuation, as Chinese text should:
# ruff: noqa: RUF001

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from tickets.notify.base import EVENTS

LANGUAGES = ("zh", "en")

_SEVERITY = {
    "zh": {"P1": "紧急维修", "P2": "加急", "P3": "一般", "P4": "低优先"},
    "en": {"P1": "urgent", "P2": "high", "P3": "normal", "P4": "low"},
}
_TRADE = {
    "zh": {"plumbing": "给排水", "electrical": "电气", "hvac": "暖通空调", "general": "综合维修"},
    "en": {
        "plumbing": "plumbing",
        "electrical": "electrical",
        "hvac": "HVAC",
        "general": "general",
    },
}
_STATE = {
    "zh": {
        "open": "待处理",
        "opened": "待处理",
        "escalated": "已升级",
        "acknowledged": "已接单",
        "assigned": "已派单",
        "in_progress": "维修中",
        "resolved": "已修复",
        "closed": "已关闭",
        "reopened": "已重新打开",
    },
    "en": {"in_progress": "in progress"},
}
# What happened, as the title's verb.
_EVENT = {
    "zh": {
        "opened": "新报修",
        "escalated": "已升级",
        "acknowledged": "已接单",
        "assigned": "已派单",
        "resolved": "已修复",
        "closed": "已关闭",
        "reopened": "重新打开",
        "updated": "有更新",
    },
    "en": {
        "opened": "opened",
        "escalated": "escalated",
        "acknowledged": "acknowledged",
        "assigned": "assigned",
        "resolved": "resolved",
        "closed": "closed",
        "reopened": "reopened",
        "updated": "updated",
    },
}
# Events after which nobody has to act on the deadlines any more.
_DONE = {"resolved", "closed"}
# Events after which the acknowledgement deadline is past its use.
_ACKED = {"acknowledged", "assigned", "resolved", "closed", "updated"}


def _when(value: Any) -> str:
    """``2024-05-06 08:15`` from ISO text, in the offset it was written in
    (the ticket service writes campus local time); unparsable text as is."""
    if value is None:
        return ""
    text = str(value)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text
    return moment.strftime("%Y-%m-%d %H:%M")


def _lead_zh(event: str, t: Mapping[str, Any]) -> str:
    assignee = t.get("assignee")
    level = t.get("escalation_level") or 1
    leads: dict[str, str] = {
        "opened": "新报修工单，请尽快安排人员处理。",
        "escalated": f"工单已升级至第 {level} 级，请立即处理。",
        "acknowledged": f"工单已由{assignee}接单，正在处理。"
        if assignee
        else "工单已接单，正在处理。",
        "assigned": f"工单已派给{assignee}，请尽快到场处理。" if assignee else "工单已派单。",
        "resolved": "维修已完成，请报修人确认后关闭工单。",
        "closed": "工单已关闭，感谢配合。",
        "reopened": "故障仍未排除，工单已重新打开，请重新安排处理。",
        "updated": "工单信息已更新。",
    }
    return leads[event]


def _lead_en(event: str, t: Mapping[str, Any]) -> str:
    assignee = t.get("assignee")
    level = t.get("escalation_level") or 1
    leads: dict[str, str] = {
        "opened": "New repair ticket: please arrange for someone to attend.",
        "escalated": f"Escalated to level {level}: act now.",
        "acknowledged": (
            f"Acknowledged by {assignee}; work is under way."
            if assignee
            else "Acknowledged; work is under way."
        ),
        "assigned": f"Assigned to {assignee}; please attend." if assignee else "Assigned.",
        "resolved": "Repair done; to be closed once the reporter confirms.",
        "closed": "Ticket closed.",
        "reopened": "The fault is back: ticket reopened, please attend again.",
        "updated": "Ticket details updated.",
    }
    return leads[event]


def _render_zh(event: str, t: Mapping[str, Any]) -> tuple[str, str]:
    sev = str(t.get("severity", ""))
    sev_label = _SEVERITY["zh"].get(sev, "")
    place = str(t.get("building", ""))
    title = (
        f"【{sev} {sev_label}】工单 #{t['id']} {_EVENT['zh'][event]}：{place} {t.get('title', '')}"
    )
    lines = [_lead_zh(event, t), f"楼宇：{place}"]
    if t.get("device"):
        lines.append(f"设备：{t['device']}")
    trade = str(t.get("trade", ""))
    lines.append(f"专业：{_TRADE['zh'].get(trade, trade)}")
    lines.append(f"级别：{sev} {sev_label}".rstrip())
    state = str(t.get("state", ""))
    if state:
        lines.append(f"状态：{_STATE['zh'].get(state, state)}")
    lines.append(f"负责人：{t.get('assignee') or '未指派'}")
    if t.get("opened_at"):
        lines.append(f"报修时间：{_when(t['opened_at'])}")
    count = int(t.get("count") or 1)
    if count > 1:
        lines.append(f"同一故障已报警 {count} 次")
    if event not in _ACKED and t.get("ack_due"):
        lines.append(f"请在 {_when(t['ack_due'])} 前确认接单")
    if event not in _DONE and t.get("resolve_due"):
        lines.append(f"请在 {_when(t['resolve_due'])} 前修复")
    if t.get("url"):
        lines.append(f"工单详情：{t['url']}")
    return title, "\n".join(lines)


def _render_en(event: str, t: Mapping[str, Any]) -> tuple[str, str]:
    sev = str(t.get("severity", ""))
    sev_label = _SEVERITY["en"].get(sev, "")
    place = str(t.get("building", ""))
    title = (
        f"[{sev} {sev_label}] Ticket #{t['id']} {_EVENT['en'][event]}: "
        f"{place} - {t.get('title', '')}"
    )
    lines = [_lead_en(event, t), f"Building: {place}"]
    if t.get("device"):
        lines.append(f"Equipment: {t['device']}")
    trade = str(t.get("trade", ""))
    lines.append(f"Trade: {_TRADE['en'].get(trade, trade)}")
    lines.append(f"Severity: {sev} {sev_label}".rstrip())
    state = str(t.get("state", ""))
    if state:
        lines.append(f"State: {_STATE['en'].get(state, state)}")
    lines.append(f"Assignee: {t.get('assignee') or 'unassigned'}")
    if t.get("opened_at"):
        lines.append(f"Opened: {_when(t['opened_at'])}")
    count = int(t.get("count") or 1)
    if count > 1:
        lines.append(f"Reported {count} times")
    if event not in _ACKED and t.get("ack_due"):
        lines.append(f"Acknowledge by {_when(t['ack_due'])}")
    if event not in _DONE and t.get("resolve_due"):
        lines.append(f"Fix by {_when(t['resolve_due'])}")
    if t.get("url"):
        lines.append(f"Details: {t['url']}")
    return title, "\n".join(lines)


_RENDERERS: dict[str, Callable[[str, Mapping[str, Any]], tuple[str, str]]] = {
    "zh": _render_zh,
    "en": _render_en,
}


def render(event: str, ticket: Mapping[str, Any], language: str) -> tuple[str, str]:
    """(title, body) of the notice for ``event`` on ``ticket`` in ``language``.

    Raises ValueError for a language or event it has no wording for, rather
    than sending technicians a half-translated message.
    """
    renderer = _RENDERERS.get(language)
    if renderer is None:
        raise ValueError(f"unknown notice language {language!r}; allowed: {', '.join(LANGUAGES)}")
    if event not in EVENTS:
        raise ValueError(f"unknown ticket event {event!r}; allowed: {', '.join(EVENTS)}")
    return renderer(event, ticket)
