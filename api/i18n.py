"""The words of the public pages, the technician page and the public notices,
in Simplified Chinese and English: one table of strings per language, and the
templates look every word up in it (no page exists twice).

Which language a visitor gets: ``?lang=zh|en`` when given (kept in a ``lang``
cookie for the next pages), else the cookie, else the campus default
(``CAMPUS_LANGUAGE``). The Chinese wording is what a Chinese campus writes on
its notice boards (停水, 维修人员已到场, 预计16:00恢复), not a word-for-word
translation of the English.
"""

# The Chinese strings use full-width Chinese punctuation, as Chinese text should:
# ruff: noqa: RUF001

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

if TYPE_CHECKING:  # the command line (campus qr) loads this without the web stack
    from fastapi import Request, Response

LANGUAGES = ("zh", "en")
COOKIE = "lang"
COOKIE_MAX_AGE_S = 365 * 86400
HTML_LANG = {"zh": "zh-Hans", "en": "en"}

STRINGS: dict[str, dict[str, str]] = {
    "zh": {
        "language_name": "中文",
        "switch_to": "English",
        "board_title": "校园设施运行状态",
        "board_intro": "各楼宇水、电、空调等设施的实时运行状态和维修公告。",
        "map_title": "校园地图",
        "legend": "图例",
        "state_ok": "正常",
        "state_warning": "有异常",
        "state_fault": "故障维修中",
        "buildings": "楼宇",
        "notices": "维修公告",
        "no_notices": "目前没有维修公告，各项设施运行正常。",
        "updated_at": "更新时间",
        "report_problem": "报告问题",
        "report_problem_hint": "发现设施问题？匿名告诉我们。",
        "trade_plumbing_major": "停水",
        "trade_plumbing_minor": "供水异常",
        "trade_electrical_major": "停电",
        "trade_electrical_minor": "供电异常",
        "trade_hvac_major": "空调/供暖停用",
        "trade_hvac_minor": "空调/供暖异常",
        "trade_general_major": "设施故障",
        "trade_general_minor": "设施维修",
        "status_open": "已报修",
        "status_assigned": "已安排维修人员",
        "status_on_site": "维修人员已到场",
        "status_checking": "已修复，正在确认",
        "expected": "预计{time}恢复",
        "expected_day": "预计{day} {time}恢复",
        "notice_since": "开始于",
        # floors: one, a range, a list
        "floor_one": "{n}层",
        "floor_range": "{a}-{b}层",
        "floor_list": "{list}层",
        "floor_basement": "地下{n}",
        "list_sep": "、",
        "sentence_sep": "，",
        "sentence_end": "",
        # technician page
        "ticket": "工单",
        "what": "故障",
        "where": "位置",
        "building": "楼宇",
        "floor": "楼层",
        "room": "房间",
        "device": "设备",
        "since": "发生时间",
        "severity": "级别",
        "state": "状态",
        "ack_due": "确认期限",
        "resolve_due": "修复期限",
        "overdue": "已超时",
        "evidence": "数据曲线",
        "no_evidence": "暂无数据曲线。",
        "plot_alt": "设备最近24小时的读数",
        "acknowledge": "接单",
        "start": "出发 / 开始维修",
        "resolve": "已修复",
        "notes": "备注",
        "add_note": "添加备注",
        "note_placeholder": "现场情况、所需配件……",
        "resolve_note": "修复说明（可选）",
        "done_acknowledge": "已接单。",
        "done_start": "已记录：正在前往 / 开始维修。",
        "done_resolve": "已记录修复，等待数据确认后关闭工单。",
        "done_note": "备注已添加。",
        "refused": "无法执行：{reason}",
        "refused_state": "工单当前状态为“{state}”，不能进行这一步。",
        "empty_note": "备注不能为空。",
        "link_bad": "链接无效",
        "link_bad_text": "这个工单链接无效或已被修改。请打开最新的报警消息中的链接，或联系值班室。",
        "link_expired": "链接已过期",
        "link_expired_text": "这个工单链接已过期。请打开最新的报警消息中的链接，或联系值班室。",
        "link_other": "链接不属于此工单",
        "link_other_text": "这个链接是另一张工单的。请从报警消息中打开对应的链接。",
        "ticket_missing": "工单不存在",
        "ticket_missing_text": "找不到这张工单。",
        "not_found": "页面不存在",
        "history": "处理记录",
        "sev_P1": "P1 紧急维修",
        "sev_P2": "P2 加急",
        "sev_P3": "P3 一般",
        "sev_P4": "P4 低优先",
        "st_open": "待处理",
        "st_acknowledged": "已接单",
        "st_assigned": "已派单",
        "st_in_progress": "维修中",
        "st_resolved": "已修复（待确认）",
        "st_closed": "已关闭",
        "tr_plumbing": "给排水",
        "tr_electrical": "电气",
        "tr_hvac": "暖通空调",
        "tr_general": "综合维修",
        # feedback pages
        "feedback_title": "匿名反馈",
        "feedback_intro": "告诉我们设施的问题，我们会尽快处理。无需登录。",
        "privacy_promise": "我们不记录您的IP地址或任何能识别您的信息。联系方式可以不填；"
        "如填写，只用于回复您这件事。",
        "category": "问题类别",
        "choose": "请选择",
        "text": "问题描述",
        "text_placeholder": "例如：3-402房间很冷，暖气不热",
        "photo": "照片（可选）",
        "contact": "联系方式（可选）",
        "contact_placeholder": "电话或邮箱，仅用于回复",
        "submit": "提交",
        "receipt_title": "已收到您的反馈",
        "receipt_text": "请保存下面的回执码，用它可以随时查看处理进度（无需账号）。",
        "receipt_token": "回执码",
        "follow_case": "查看处理进度",
        "case_title": "反馈处理进度",
        "case_status": "处理状态",
        "fb_received": "已收到，等待处理",
        "fb_linked": "已合并到维修工单",
        "fb_closed": "已处理完毕",
        "case_ticket_state": "维修进度",
        "case_missing": "找不到这个回执码对应的反馈。请检查回执码是否完整。",
        "rate_title": "维修已完成，您满意吗？",
        "rate_1": "很不满意",
        "rate_2": "不满意",
        "rate_3": "一般",
        "rate_4": "满意",
        "rate_5": "很满意",
        "rate_submit": "提交评价",
        "rated": "感谢您的评价：{n}/5",
        "submitted_at": "提交时间",
        "too_many": "提交太频繁，请稍后再试。",
        "feedback_unavailable": "反馈功能暂不可用，请稍后再试。",
        "form_error": "请检查：{reason}",
        # qr sheets
        "qr_caption": "扫码匿名反馈设施问题",
        "qr_room": "{room}房间",
    },
    "en": {
        "language_name": "English",
        "switch_to": "中文",
        "board_title": "Campus facilities status",
        "board_intro": "Live state of water, power and air conditioning in every building, "
        "and notices of repairs.",
        "map_title": "Campus map",
        "legend": "Legend",
        "state_ok": "Normal",
        "state_warning": "Problem reported",
        "state_fault": "Fault, under repair",
        "buildings": "Buildings",
        "notices": "Notices",
        "no_notices": "No notices at the moment: everything is running normally.",
        "updated_at": "Updated",
        "report_problem": "Report a problem",
        "report_problem_hint": "Something wrong with a building? Tell us anonymously.",
        "trade_plumbing_major": "Water off",
        "trade_plumbing_minor": "Water supply problem",
        "trade_electrical_major": "Power off",
        "trade_electrical_minor": "Power supply problem",
        "trade_hvac_major": "Heating/cooling off",
        "trade_hvac_minor": "Heating/cooling problem",
        "trade_general_major": "Facility fault",
        "trade_general_minor": "Repair work",
        "status_open": "reported",
        "status_assigned": "repair crew assigned",
        "status_on_site": "repair crew on site",
        "status_checking": "fixed, being checked",
        "expected": "expected back {time}",
        "expected_day": "expected back {day} {time}",
        "notice_since": "Since",
        "floor_one": "floor {n}",
        "floor_range": "floors {a}-{b}",
        "floor_list": "floors {list}",
        "floor_basement": "B{n}",
        "list_sep": ", ",
        "sentence_sep": ", ",
        "sentence_end": "",
        "ticket": "Ticket",
        "what": "What",
        "where": "Where",
        "building": "Building",
        "floor": "Floor",
        "room": "Room",
        "device": "Device",
        "since": "Since",
        "severity": "Severity",
        "state": "State",
        "ack_due": "Acknowledge by",
        "resolve_due": "Fix by",
        "overdue": "overdue",
        "evidence": "Readings",
        "no_evidence": "No readings to show.",
        "plot_alt": "The device's readings over the last 24 hours",
        "acknowledge": "Acknowledge",
        "start": "On my way",
        "resolve": "Resolved",
        "notes": "Notes",
        "add_note": "Add note",
        "note_placeholder": "What you found, parts needed...",
        "resolve_note": "What was done (optional)",
        "done_acknowledge": "Acknowledged.",
        "done_start": "Recorded: on your way / work started.",
        "done_resolve": "Recorded as resolved; the ticket closes once the readings confirm it.",
        "done_note": "Note added.",
        "refused": "Not done: {reason}",
        "refused_state": "The ticket is {state} now, which does not allow that.",
        "empty_note": "The note is empty.",
        "link_bad": "Link not valid",
        "link_bad_text": "This ticket link is not valid or has been altered. Open the link in "
        "your latest alert, or call the duty office.",
        "link_expired": "Link expired",
        "link_expired_text": "This ticket link has expired. Open the link in your latest "
        "alert, or call the duty office.",
        "link_other": "Link is for another ticket",
        "link_other_text": "This link belongs to a different ticket. Open the link from the "
        "alert about this one.",
        "ticket_missing": "No such ticket",
        "ticket_missing_text": "This ticket does not exist.",
        "not_found": "Page not found",
        "history": "History",
        "sev_P1": "P1 urgent",
        "sev_P2": "P2 high",
        "sev_P3": "P3 normal",
        "sev_P4": "P4 low",
        "st_open": "open",
        "st_acknowledged": "acknowledged",
        "st_assigned": "assigned",
        "st_in_progress": "in progress",
        "st_resolved": "resolved (being checked)",
        "st_closed": "closed",
        "tr_plumbing": "plumbing",
        "tr_electrical": "electrical",
        "tr_hvac": "HVAC",
        "tr_general": "general",
        "feedback_title": "Anonymous feedback",
        "feedback_intro": "Tell us what is wrong with a building and we will see to it. "
        "No account needed.",
        "privacy_promise": "We do not store your IP address or anything else that identifies "
        "you. Contact details are optional; if you give them, they are used only to answer "
        "you about this report.",
        "category": "Kind of problem",
        "choose": "Choose",
        "text": "What is wrong",
        "text_placeholder": "e.g. Room 3-402 is freezing, the radiator is cold",
        "photo": "Photo (optional)",
        "contact": "Contact (optional)",
        "contact_placeholder": "Phone or e-mail, only to answer you",
        "submit": "Send",
        "receipt_title": "Thank you, we have your report",
        "receipt_text": "Keep the receipt code below: with it you can follow the case at any "
        "time, without an account.",
        "receipt_token": "Receipt code",
        "follow_case": "Follow the case",
        "case_title": "Your report",
        "case_status": "Status",
        "fb_received": "received, waiting to be handled",
        "fb_linked": "joined to a repair ticket",
        "fb_closed": "dealt with",
        "case_ticket_state": "Repair",
        "case_missing": "No report has this receipt code. Check that the code is complete.",
        "rate_title": "The repair is done. Are you satisfied?",
        "rate_1": "Very unsatisfied",
        "rate_2": "Unsatisfied",
        "rate_3": "Neutral",
        "rate_4": "Satisfied",
        "rate_5": "Very satisfied",
        "rate_submit": "Send rating",
        "rated": "Thank you for your rating: {n}/5",
        "submitted_at": "Sent",
        "too_many": "Too many reports from here just now; please try again later.",
        "feedback_unavailable": "Feedback is not available just now; please try again later.",
        "form_error": "Please check: {reason}",
        "qr_caption": "Scan to report a facility problem anonymously",
        "qr_room": "Room {room}",
    },
}


class Words:
    """The strings of one language: ``words["key"]`` or ``words("key", n=3)``."""

    def __init__(self, lang: str) -> None:
        self.lang = lang if lang in STRINGS else LANGUAGES[0]
        self.table = STRINGS[self.lang]

    def __getitem__(self, key: str) -> str:
        return self.table.get(key, key)

    def __call__(self, key: str, **values: Any) -> str:
        return self[key].format(**values)

    def get(self, key: str, default: str = "") -> str:
        """The string for ``key``, or ``default`` when the table has none."""
        return self.table.get(key, default)


def valid(lang: str | None) -> str | None:
    """``lang`` when it is one of ours, else None."""
    return lang if lang in LANGUAGES else None


def choose(request: Request, default: str) -> str:
    """The visitor's language: ``?lang=``, else the ``lang`` cookie, else ``default``."""
    return (
        valid(request.query_params.get("lang"))
        or valid(request.cookies.get(COOKIE))
        or valid(default)
        or LANGUAGES[0]
    )


def keep(request: Request, response: Response, lang: str) -> None:
    """Remember a language chosen with ``?lang=`` in the ``lang`` cookie."""
    if valid(request.query_params.get("lang")) and request.cookies.get(COOKIE) != lang:
        response.set_cookie(
            COOKIE, lang, max_age=COOKIE_MAX_AGE_S, httponly=True, samesite="lax", path="/"
        )


def switch_url(request: Request, lang: str, here: str | None = None) -> str:
    """This page's address in the other language: ``here`` (the address a page
    answering a form shows again) or the request's, its query kept, ``lang`` replaced."""
    other = next(x for x in LANGUAGES if x != lang)
    if here is None:
        path, query = request.url.path, list(request.query_params.multi_items())
    else:
        parts = urlsplit(here)
        path, query = parts.path, parse_qsl(parts.query)
    query = [(k, v) for k, v in query if k != "lang"]
    query.append(("lang", other))
    return f"{path}?{urlencode(query)}"


def local_name(building: Any, lang: str) -> str:
    """A building's (or the campus's) name in ``lang``: the registry's name in
    that language when it gives one (``name_zh``), else its name."""
    localized = getattr(building, f"name_{lang}", None)
    if localized:
        return str(localized)
    return str(building.name)
