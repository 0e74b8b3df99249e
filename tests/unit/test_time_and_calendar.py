"""Unit tests of ``campus/timeparse.py`` (times and durations given on the command
line) and ``campus/calendar.py`` (the academic calendar in config/calendar.yaml).

Time parsing: ``now``, relative times (``-1d``, ``-2h``, ``+30m``), ISO times with
an offset, naive ISO taken as UTC, helpful errors, and ``parse_duration``.
Calendar: term, exams, holidays, closures overriding a term, dates outside every
period, the campus time zone deciding the local date, and located errors for an
overlapping periods file.
"""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from campus.calendar import Period, load_calendar
from campus.errors import ConfigError
from campus.timeparse import parse_duration, parse_time

NOW = datetime(2026, 10, 20, 8, 30, tzinfo=UTC)


# ----------------------------------------------------------------- timeparse


@pytest.mark.parametrize("text", ["now", " now ", "now\n"])
def test_now(text):
    assert parse_time(text, NOW) is NOW


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("-1d", NOW - timedelta(days=1)),
        ("-2h", NOW - timedelta(hours=2)),
        ("+30m", NOW + timedelta(minutes=30)),
        ("-30m", NOW - timedelta(minutes=30)),
        ("-45s", NOW - timedelta(seconds=45)),
        ("+1w", NOW + timedelta(weeks=1)),
        ("-1.5h", NOW - timedelta(minutes=90)),
        ("+0m", NOW),
        ("  -1d  ", NOW - timedelta(days=1)),
    ],
)
def test_relative_times(text, expected):
    got = parse_time(text, NOW)
    assert got == expected
    assert got.tzinfo is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-09-01T08:00:00+08:00", datetime(2026, 9, 1, 0, 0, tzinfo=UTC)),
        ("2026-09-01T08:00:00Z", datetime(2026, 9, 1, 8, 0, tzinfo=UTC)),
        ("2026-09-01T00:00:00-05:00", datetime(2026, 9, 1, 5, 0, tzinfo=UTC)),
        ("2026-09-01T08:00:00.250+08:00", datetime(2026, 9, 1, 0, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_iso_times_with_offset_become_utc(text, expected):
    got = parse_time(text, NOW)
    assert got == expected
    assert got.utcoffset() == timedelta(0)
    assert got.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-09-01T08:00:00", datetime(2026, 9, 1, 8, 0, tzinfo=UTC)),
        ("2026-09-01 08:00", datetime(2026, 9, 1, 8, 0, tzinfo=UTC)),
        ("2026-09-01", datetime(2026, 9, 1, tzinfo=UTC)),
    ],
)
def test_naive_iso_is_taken_as_utc(text, expected):
    got = parse_time(text, NOW)
    assert got == expected
    assert got.tzinfo is UTC


@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "-1",
        "1d",
        "-1x",
        "- 1d",
        "--1d",
        "-1d2h",
        "",
        "2026-13-01T00:00:00Z",
        "now-1d",
        "+d",
    ],
)
def test_garbage_raises_a_helpful_error(text):
    with pytest.raises(ValueError) as info:
        parse_time(text, NOW)
    message = str(info.value)
    assert f"cannot read time {text!r}" in message
    assert "ISO time" in message and "'now'" in message and "-1d" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("1h", timedelta(hours=1)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("1.5h", timedelta(minutes=90)),
        (" 30s ", timedelta(seconds=30)),
        ("0s", timedelta(0)),
        ("1h30m", timedelta(minutes=90)),
        ("1d12h", timedelta(hours=36)),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "15", "m", "-5m", "+5m", "5 m", "5min", "1h 30m", "1h30", "1.h", "abc"]
)
def test_parse_duration_garbage(text):
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert f"cannot read duration {text!r}: use e.g. 30s, 15m, 1h, 1h30m, 7d" == str(info.value)


# ------------------------------------------------------------------ calendar


@pytest.mark.parametrize(
    ("day", "period", "closed"),
    [
        (date(2026, 9, 7), Period.term, False),  # first day of autumn term 2026
        (date(2026, 10, 20), Period.term, False),
        (date(2027, 1, 3), Period.term, False),  # last day of the term
        (date(2026, 10, 3), Period.holidays, True),  # National Day 2026, inside the term
        (date(2026, 10, 1), Period.holidays, True),
        (date(2026, 10, 7), Period.holidays, True),
        (date(2026, 10, 8), Period.term, False),  # the day after the closure
        (date(2027, 1, 4), Period.exams, False),
        (date(2027, 1, 10), Period.exams, False),
        (date(2027, 1, 17), Period.exams, False),
        (date(2027, 1, 18), Period.holidays, False),  # winter break 2027 begins
        (date(2027, 2, 1), Period.holidays, False),
        (date(2026, 7, 15), Period.holidays, False),  # summer break
        (date(2026, 6, 19), Period.holidays, True),  # Dragon Boat closure in spring term
        (date(2026, 5, 12), Period.term, False),
        (date(2023, 3, 1), Period.holidays, False),  # before every period
        (date(2030, 10, 20), Period.holidays, False),  # after every period
    ],
)
def test_calendar_days(calendar, day, period, closed):
    assert calendar.day(day) == (period, closed)


def test_period_is_a_string_enum():
    assert Period.term == "term" and Period("exams") is Period.exams


def test_calendar_timezone_is_shanghai(calendar):
    assert str(calendar.tz) == "Asia/Shanghai"


def test_timezone_decides_the_local_date(calendar):
    # 2026-09-06T17:00Z is 2026-09-07 01:00 in Shanghai: the first morning of term
    assert calendar.period_at(datetime(2026, 9, 6, 17, 0, tzinfo=UTC)) == Period.term
    # an hour earlier it is still 2026-09-06 (summer break) in Shanghai
    assert calendar.period_at(datetime(2026, 9, 6, 15, 59, tzinfo=UTC)) == Period.holidays
    # the same instant written in another offset is the same period
    pst = timezone(timedelta(hours=-7))
    assert calendar.period_at(datetime(2026, 9, 6, 10, 0, tzinfo=pst)) == Period.term


def test_period_at_end_of_exams_in_local_time(calendar):
    # 2027-01-17T16:30Z is 2027-01-18 00:30 in Shanghai: winter break
    assert calendar.period_at(datetime(2027, 1, 17, 15, 59, tzinfo=UTC)) == Period.exams
    assert calendar.period_at(datetime(2027, 1, 17, 16, 0, tzinfo=UTC)) == Period.holidays


def test_periods_in_the_shipped_file_do_not_overlap(calendar):
    periods = sorted(calendar.config.periods, key=lambda p: p.start)
    for a, b in itertools.pairwise(periods):
        assert a.end < b.start, (a.name, b.name)


CAL_HEAD = "# test calendar\ntimezone: Asia/Shanghai\nperiods:\n"


def test_overlapping_periods_raise_naming_the_line(tmp_path):
    p = tmp_path / "calendar.yaml"
    p.write_text(
        CAL_HEAD
        + "  - {name: autumn term, kind: term, start: 2026-09-07, end: 2027-01-03}\n"  # line 4
        + "  - {name: winter break, kind: holidays, start: 2027-01-18, end: 2027-02-21}\n"  # 5
        + "  - {name: autumn exams, kind: exams, start: 2027-01-01, end: 2027-01-17}\n"  # 6
    )
    with pytest.raises(ConfigError) as info:
        load_calendar(p)
    issues = info.value.issues
    assert [(i.file, i.line, i.field) for i in issues] == [(str(p), 6, "periods[2].start")]
    assert issues[0].message == "period 'autumn exams' overlaps 'autumn term'"
    assert str(info.value) == (
        f"{p}:6: periods[2].start: period 'autumn exams' overlaps 'autumn term'"
    )


def test_periods_sharing_a_day_overlap(tmp_path):
    p = tmp_path / "calendar.yaml"
    p.write_text(
        CAL_HEAD
        + "  - {name: a, kind: term, start: 2026-09-01, end: 2026-09-10}\n"
        + "  - {name: b, kind: exams, start: 2026-09-10, end: 2026-09-20}\n"
    )
    with pytest.raises(ConfigError, match=r":5: periods\[1\]\.start: period 'b' overlaps 'a'"):
        load_calendar(p)


def test_adjacent_periods_are_fine(tmp_path):
    p = tmp_path / "calendar.yaml"
    p.write_text(
        CAL_HEAD
        + "  - {name: a, kind: term, start: 2026-09-01, end: 2026-09-10}\n"
        + "  - {name: b, kind: exams, start: 2026-09-11, end: 2026-09-20}\n"
    )
    cal = load_calendar(p)
    assert cal.day(date(2026, 9, 10)) == (Period.term, False)
    assert cal.day(date(2026, 9, 11)) == (Period.exams, False)


def test_period_ending_before_it_starts(tmp_path):
    p = tmp_path / "calendar.yaml"
    p.write_text(CAL_HEAD + "  - {name: a, kind: term, start: 2026-09-10, end: 2026-09-01}\n")
    with pytest.raises(ConfigError) as info:
        load_calendar(p)
    (issue,) = info.value.issues
    assert (issue.line, issue.field) == (4, "periods[0]")
    assert "end 2026-09-01 is before start 2026-09-10" in issue.message


def test_unknown_period_kind(tmp_path):
    p = tmp_path / "calendar.yaml"
    p.write_text(CAL_HEAD + "  - {name: a, kind: vacation, start: 2026-09-01, end: 2026-09-10}\n")
    with pytest.raises(ConfigError) as info:
        load_calendar(p)
    (issue,) = info.value.issues
    assert (issue.line, issue.field) == (4, "periods[0].kind")
    assert "'term', 'exams' or 'holidays'" in issue.message
