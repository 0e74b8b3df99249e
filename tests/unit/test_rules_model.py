"""Unit tests of ``rules/model.py``: the rule language and what its mistakes get.

The shipped ``config/rules.yaml`` loads and uses every kind. Then one test per
kind of mistake a rule writer makes, written inline and loaded with
``load_rules_text`` against the demo campus; each asserts the exact line, the
field text (``rule 'burst-pipe': params.above``) and the message, so a vaguer
or misplaced error fails here.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from campus.errors import ConfigError, ConfigIssue
from rules.kinds import KINDS
from rules.model import Rule, Severity, load_rules, load_rules_text
from tests.conftest import CONFIG

FILE = "test-rules.yaml"

# One valid rule, field by field (values are raw YAML); tests override fields.
BASE = {
    "id": "burst-pipe",
    "kind": "threshold",
    "select": '{kind: water, device: "wm-*-f*"}',
    "metric": "flow_lpm",
    "params": "{above: 250}",
    "severity": "P1",
    "trade": "plumbing",
    "title": '"Burst pipe suspected: {device} at {value:.0f} L/min"',
}


def rule_yaml(**fields: str | None) -> str:
    """The lines of one rule (``- id: ...``): BASE with ``fields`` replaced,
    removed (None) or added at the end; ``for_`` is written ``for``."""
    merged: dict[str, str | None] = {**BASE, **fields}
    out = []
    for key, value in merged.items():
        if value is None:
            continue
        name = "for" if key == "for_" else key
        out.append(f"    {name}: {value}" if out else f"  - {name}: {value}")
    return "\n".join(out) + "\n"


def rules_yaml(*rules: str) -> str:
    return "rules:\n" + "".join(rules)


def lines_of(text: str, needle: str) -> list[int]:
    """The 1-based lines of ``text`` holding ``needle``."""
    return [i for i, line in enumerate(text.splitlines(), 1) if needle in line]


def line_of(text: str, needle: str) -> int:
    """The line of the only line of ``text`` holding ``needle``."""
    hits = lines_of(text, needle)
    assert len(hits) == 1, (needle, hits)
    return hits[0]


def load(text: str, campus) -> list[Rule]:
    return load_rules_text(text, FILE, campus)


def issues(text: str, campus) -> list[ConfigIssue]:
    with pytest.raises(ConfigError) as info:
        load(text, campus)
    return info.value.issues


def issue(line: int, field: str, message: str) -> ConfigIssue:
    return ConfigIssue(FILE, line, field, message)


# ------------------------------------------------------------ shipped rules


@pytest.fixture(scope="module")
def shipped(campus) -> list[Rule]:
    return load_rules(CONFIG / "rules.yaml", campus)


def test_shipped_rules_load(shipped):
    ids = [r.id for r in shipped]
    assert len(ids) >= 20
    assert len(set(ids)) == len(ids)
    burst = next(r for r in shipped if r.id == "water-burst")
    assert burst.for_ == timedelta(minutes=3)
    assert burst.clear_for == timedelta(minutes=10)
    assert burst.clear == {"above": 180}
    assert burst.severity is Severity.P1
    overheating = next(r for r in shipped if r.id == "dorm-overheating")
    assert overheating.escalate is not None
    assert overheating.escalate.after == timedelta(hours=1)
    assert overheating.escalate.to is Severity.P1


def test_every_kind_is_used_by_a_shipped_rule(shipped):
    assert {r.kind for r in shipped} == set(KINDS)


def test_the_base_rule_of_these_tests_is_valid(campus):
    (rule,) = load(rules_yaml(rule_yaml()), campus)
    assert rule.id == "burst-pipe"
    assert rule.select.device == ("wm-*-f*",)
    assert rule.params == {"above": 250}
    assert rule.for_ == timedelta(0)
    assert rule.enabled


def test_empty_file_has_no_rules(campus):
    assert load("", campus) == []
    assert load("rules: []\n", campus) == []


# ------------------------------------------------------------------ mistakes


def test_unknown_kind_lists_the_known_kinds(campus):
    text = rules_yaml(rule_yaml(kind="thresold"))
    known = (
        "anomaly, balance, composite, counter, expression, flatline, night_flow, offline, "
        "rate, stale, threshold"
    )
    assert issues(text, campus) == [
        issue(
            line_of(text, "kind: thresold"),
            "rule 'burst-pipe': kind",
            f"unknown kind 'thresold' (known: {known})",
        )
    ]


def test_unknown_key_in_a_rule(campus):
    text = rules_yaml(rule_yaml(colour="red"))
    assert issues(text, campus) == [
        issue(
            line_of(text, "colour: red"),
            "rule 'burst-pipe': colour",
            "Extra inputs are not permitted",
        )
    ]


def test_unknown_param_of_the_kind(campus):
    text = rules_yaml(rule_yaml(params="{above: 250, over: 3}"))
    found = issues(text, campus)
    assert (
        issue(
            line_of(text, "over: 3"),
            "rule 'burst-pipe': params.over",
            "Extra inputs are not permitted",
        )
        in found
    )


def test_a_params_mistake_is_reported_once(campus):
    text = rules_yaml(rule_yaml(params="{above: 250, over: 3}"))
    assert [i.field for i in issues(text, campus)] == ["rule 'burst-pipe': params.over"]


def test_a_mistake_in_clear_is_reported_under_clear(campus):
    text = rules_yaml(rule_yaml(clear="{abov: 180}"))
    assert issues(text, campus) == [
        issue(
            line_of(text, "clear: {abov: 180}"),
            "rule 'burst-pipe': clear.abov",
            "Extra inputs are not permitted",
        )
    ]


def test_threshold_without_above_or_below(campus):
    text = rules_yaml(rule_yaml(params="{}"))
    found = issues(text, campus)
    assert (
        issue(
            line_of(text, "params: {}"),
            "rule 'burst-pipe': params",
            "Value error, give above, below or both",
        )
        in found
    )


def test_rate_without_a_window(campus):
    text = rules_yaml(rule_yaml(kind="rate", metric="pressure_kpa", params="{fall: 60}"))
    found = issues(text, campus)
    assert (
        issue(
            line_of(text, "params: {fall: 60}"),
            "rule 'burst-pipe': params.window",
            "Field required",
        )
        in found
    )


def test_bad_duration(campus):
    text = rules_yaml(rule_yaml(for_="15 minutes"))
    assert issues(text, campus) == [
        issue(
            line_of(text, "for: 15 minutes"),
            "rule 'burst-pipe': for",
            "Value error, cannot read duration '15 minutes': use e.g. 30s, 15m, 1h, 1h30m, 7d",
        )
    ]


def test_bad_duration_in_a_kind_param(campus):
    text = rules_yaml(rule_yaml(kind="flatline", params="{window: 2 hours}"))
    found = issues(text, campus)
    assert (
        issue(
            line_of(text, "window: 2 hours"),
            "rule 'burst-pipe': params.window",
            "Value error, cannot read duration '2 hours': use e.g. 30s, 15m, 1h, 1h30m, 7d",
        )
        in found
    )


def test_bad_severity(campus):
    text = rules_yaml(rule_yaml(severity="P5"))
    assert issues(text, campus) == [
        issue(
            line_of(text, "severity: P5"),
            "rule 'burst-pipe': severity",
            "Input should be 'P1', 'P2', 'P3' or 'P4'",
        )
    ]


@pytest.mark.parametrize("to", ["P3", "P2"])
def test_escalate_to_must_be_more_urgent(campus, to):
    text = rules_yaml(rule_yaml(severity="P2", escalate=f"{{after: 1h, to: {to}}}"))
    # A check across two fields: reported on the rule, the message names both.
    assert issues(text, campus) == [
        issue(
            line_of(text, "- id: burst-pipe"),
            "rule 'burst-pipe'",
            f"Value error, escalate.to {to} must be more urgent than severity P2",
        )
    ]


def test_escalate_to_more_urgent_loads(campus):
    (rule,) = load(rules_yaml(rule_yaml(severity="P2", escalate="{after: 1h, to: P1}")), campus)
    assert rule.escalate is not None
    assert rule.escalate.to is Severity.P1


def test_escalate_bad_after(campus):
    text = rules_yaml(rule_yaml(severity="P2", escalate="{after: soon, to: P1}"))
    assert issues(text, campus) == [
        issue(
            line_of(text, "escalate:"),
            "rule 'burst-pipe': escalate.after",
            "Value error, cannot read duration 'soon': use e.g. 30s, 15m, 1h, 1h30m, 7d",
        )
    ]


def test_template_with_unknown_field(campus):
    text = rules_yaml(rule_yaml(title='"Leak at {device} on {storey}"'))
    known = (
        "building, detail, device, floor, kind, metric, room, rule, severity, since, trade, value"
    )
    assert issues(text, campus) == [
        issue(
            line_of(text, "title:"),
            "rule 'burst-pipe': title",
            "Value error, template 'Leak at {device} on {storey}' uses ['storey']; "
            f"known: {known}",
        )
    ]


def test_template_with_unnamed_field(campus):
    text = rules_yaml(rule_yaml(text='"at {} L/min"'))
    assert issues(text, campus) == [
        issue(
            line_of(text, "text:"),
            "rule 'burst-pipe': text",
            "Value error, template 'at {} L/min': name every field, e.g. {device}",
        )
    ]


def test_dedup_key_template_is_checked(campus):
    text = rules_yaml(rule_yaml(dedup_key='"{rule}:{devise}"'))
    (found,) = issues(text, campus)
    assert (found.line, found.field) == (
        line_of(text, "dedup_key:"),
        "rule 'burst-pipe': dedup_key",
    )
    assert "uses ['devise']" in found.message


def test_duplicate_id_names_the_first(campus):
    text = rules_yaml(
        rule_yaml(),
        rule_yaml(
            id="pressure-drop", kind="rate", metric="pressure_kpa", params="{window: 10m, fall: 60}"
        ),
        rule_yaml(params="{above: 300}"),
    )
    assert issues(text, campus) == [
        issue(
            lines_of(text, "- id: burst-pipe")[1],
            "rule 'burst-pipe': id",
            "duplicate id (first at rules[0])",
        )
    ]


def test_selector_selecting_no_device(campus):
    text = rules_yaml(rule_yaml(select='{kind: water, building: "lab-*9"}'))
    assert issues(text, campus) == [
        issue(
            line_of(text, "select:"), "rule 'burst-pipe': select", "selects no device of the campus"
        )
    ]


def test_selector_with_an_empty_list(campus):
    text = rules_yaml(rule_yaml(select="{kind: water, device: []}"))
    assert issues(text, campus) == [
        issue(
            line_of(text, "select:"),
            "rule 'burst-pipe': select.device",
            "Value error, an empty list selects nothing; leave the field out to select all",
        )
    ]


def test_metric_no_selected_device_has(campus):
    text = rules_yaml(rule_yaml(metric="temp_c"))
    assert issues(text, campus) == [
        issue(
            line_of(text, "metric: temp_c"),
            "rule 'burst-pipe': metric",
            "no selected device has metric 'temp_c'",
        )
    ]


def test_threshold_without_a_metric(campus):
    text = rules_yaml(rule_yaml(metric=None))
    assert issues(text, campus) == [
        issue(
            line_of(text, "- id: burst-pipe"),
            "rule 'burst-pipe': metric",
            "a threshold rule needs a metric",
        )
    ]


# --------------------------------------------------------------- expression


def expression_rule(expr: str) -> str:
    return rules_yaml(
        rule_yaml(
            id="mixed-air",
            kind="expression",
            select="{model: ahu}",
            metric=None,
            params=f"\n      expr: {expr}",
            severity="P3",
            trade="hvac",
            title='"{device}: {detail}"',
        )
    )


def test_expression_g36_mixed_air_loads(campus):
    (rule,) = load(
        expression_rule('"mixed_temp_c < min(return_temp_c, outdoor_temp_c) - 1"'), campus
    )
    assert rule.params["expr"] == "mixed_temp_c < min(return_temp_c, outdoor_temp_c) - 1"


def test_expression_name_that_is_not_a_metric(campus):
    text = expression_rule('"mixed_temp_c < outside_temp_c - 1"')
    assert issues(text, campus) == [
        issue(
            line_of(text, "expr:"),
            "rule 'mixed-air': params.expr",
            "'outside_temp_c' is not a metric of any selected device",
        )
    ]


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("mixed_temp_c.__class__ > 0", "only arithmetic, comparisons and and/or/not"),
        ("mixed_temp_c.real > 0", "only arithmetic, comparisons and and/or/not"),
        ("[mixed_temp_c][0] > 0", "only arithmetic, comparisons and and/or/not"),
        ("__import__('os') > 0", "functions are abs, min, max, round"),
        ("sum([mixed_temp_c]) > 0", "functions are abs, min, max, round"),
    ],
)
def test_expression_forbidden_constructs(campus, expr, message):
    text = expression_rule(f'"{expr}"')
    found = issues(text, campus)
    assert found[0] == issue(
        line_of(text, "expr:"),
        "rule 'mixed-air': params.expr",
        f"Value error, expression {expr!r}: {message}",
    )


def test_expression_syntax_error(campus):
    text = expression_rule('"mixed_temp_c <"')
    found = issues(text, campus)
    assert found[0] == issue(
        line_of(text, "expr:"),
        "rule 'mixed-air': params.expr",
        "Value error, expression 'mixed_temp_c <': invalid syntax",
    )


# ---------------------------------------------------------------- composite

HOT = rule_yaml(
    id="room-hot",
    select="{kind: dorm}",
    metric="temp_c",
    params="{above: 30}",
    severity="P3",
    trade="hvac",
    title='"{room} hot"',
)


def composite_rule(refs: str) -> str:
    return rule_yaml(
        id="hot-and-stuffy",
        kind="composite",
        select="{kind: dorm}",
        metric=None,
        params=f"{{op: all, rules: {refs}}}",
        severity="P2",
        trade="hvac",
        title='"{room} hot and stuffy"',
    )


def test_composite_of_known_rules_loads(campus):
    rules = load(rules_yaml(HOT, composite_rule("[room-hot]")), campus)
    assert [r.id for r in rules] == ["room-hot", "hot-and-stuffy"]


def test_composite_refers_to_an_unknown_rule_and_to_itself(campus):
    text = rules_yaml(HOT, composite_rule("[room-hot, room-stuffy, hot-and-stuffy]"))
    line = line_of(text, "rules: [room-hot")
    assert issues(text, campus) == [
        issue(line, "rule 'hot-and-stuffy': params.rules", "no rule with id 'room-stuffy'"),
        issue(line, "rule 'hot-and-stuffy': params.rules", "refers to itself"),
    ]


def test_composite_may_refer_to_a_rule_written_after_it(campus):
    rules = load(rules_yaml(composite_rule("[room-hot]"), HOT), campus)
    assert [r.id for r in rules] == ["hot-and-stuffy", "room-hot"]


# ---------------------------------------------------- maintenance and schedule


def maintenance_rule(start: str, end: str) -> str:
    return rules_yaml(
        rule_yaml(
            maintenance=f"\n      - {{start: {start!r}, end: {end!r}, "
            "devices: [wm-teach-1-*], reason: valves}"
        )
    )


def test_maintenance_window_loads(campus):
    (rule,) = load(maintenance_rule("2026-12-01T08:00+08:00", "2026-12-01T12:00+08:00"), campus)
    (m,) = rule.maintenance
    assert m.end - m.start == timedelta(hours=4)
    assert m.devices == ["wm-teach-1-*"]


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (
            "2026-12-01T08:00",
            "2026-12-01T12:00",
            "Value error, start and end need a time zone offset, e.g. 2026-12-01T08:00+08:00",
        ),
        (
            "2026-12-01T08:00+08:00",
            "2026-12-01T12:00",
            "Value error, start and end need a time zone offset, e.g. 2026-12-01T08:00+08:00",
        ),
        (
            "2026-12-01T12:00+08:00",
            "2026-12-01T08:00+08:00",
            "Value error, end must come after start",
        ),
        (
            "2026-12-01T08:00+08:00",
            "2026-12-01T08:00+08:00",
            "Value error, end must come after start",
        ),
    ],
)
def test_maintenance_mistakes(campus, start, end, message):
    text = maintenance_rule(start, end)
    assert issues(text, campus) == [
        issue(line_of(text, "- {start:"), "rule 'burst-pipe': maintenance[0]", message)
    ]


def test_maintenance_must_name_what_it_covers(campus):
    text = rules_yaml(
        rule_yaml(
            maintenance="\n      - {start: '2026-12-01T08:00+08:00', end: '2026-12-01T12:00+08:00'}"
        )
    )
    assert issues(text, campus) == [
        issue(
            line_of(text, "- {start:"),
            "rule 'burst-pipe': maintenance[0]",
            "Value error, name the devices or buildings the window covers",
        )
    ]


def test_schedule_loads(campus):
    text = rules_yaml(
        rule_yaml(
            schedule='{hours: ["22:00-06:00", "12:00-13:30"], days: [Monday, sat], '
            "periods: [term, exams]}"
        )
    )
    (rule,) = load(text, campus)
    assert rule.schedule is not None
    assert [(str(h.start), str(h.end)) for h in rule.schedule.hours] == [
        ("22:00:00", "06:00:00"),
        ("12:00:00", "13:30:00"),
    ]
    assert rule.schedule.days == ["mon", "sat"]


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        ("'22-06'", "Value error, hours '22-06': use HH:MM-HH:MM, e.g. 22:00-06:00"),
        (
            "'10:00 to 12:00'",
            "Value error, hours '10:00 to 12:00': use HH:MM-HH:MM, e.g. 22:00-06:00",
        ),
        ("['22:00-06:00', '25:00-26:00']", "Value error, hours '25:00-26:00': not a time of day"),
        ("'09:60-10:00'", "Value error, hours '09:60-10:00': not a time of day"),
    ],
)
def test_bad_hours(campus, hours, message):
    text = rules_yaml(rule_yaml(schedule=f"{{hours: {hours}}}"))
    assert issues(text, campus) == [
        issue(line_of(text, "schedule:"), "rule 'burst-pipe': schedule.hours", message)
    ]


def test_bad_day_name(campus):
    text = rules_yaml(rule_yaml(schedule="{days: [mon, fryday]}"))
    assert issues(text, campus) == [
        issue(
            line_of(text, "schedule:"),
            "rule 'burst-pipe': schedule.days",
            "Value error, day 'fryday': use mon, tue, wed, thu, fri, sat, sun",
        )
    ]


def test_bad_period(campus):
    text = rules_yaml(rule_yaml(schedule="{periods: [term, vacation]}"))
    assert issues(text, campus) == [
        issue(
            line_of(text, "schedule:"),
            "rule 'burst-pipe': schedule.periods[1]",
            "Input should be 'term', 'exams' or 'holidays'",
        )
    ]


# --------------------------------------------------------- the file as a whole


def test_yaml_syntax_error_reports_the_line(campus):
    text = rules_yaml(rule_yaml(metric="flow_lpm: oops"))
    assert issues(text, campus) == [
        issue(
            line_of(text, "metric: flow_lpm: oops"),
            "",
            "YAML syntax: mapping values are not allowed in this context",
        )
    ]


def test_a_rules_file_holds_only_rules(campus):
    text = "rule:\n" + rule_yaml()
    (found,) = issues(text, campus)
    assert found.message == "a rules file holds one key: rules"


def test_several_mistakes_are_all_reported(campus):
    text = rules_yaml(
        rule_yaml(for_="15 minutes"),
        rule_yaml(id="pressure-drop", kind="rat", metric="pressure_kpa"),
        rule_yaml(id="burst-pipe-2", severity="urgent"),
        rule_yaml(id="temp", metric="temp_c"),
        composite_rule("[no-such-rule]"),
    )
    found = issues(text, campus)
    assert [(i.line, i.field) for i in found] == [
        (line_of(text, "for: 15 minutes"), "rule 'burst-pipe': for"),
        (line_of(text, "kind: rat"), "rule 'pressure-drop': kind"),
        (line_of(text, "severity: urgent"), "rule 'burst-pipe-2': severity"),
        (line_of(text, "metric: temp_c"), "rule 'temp': metric"),
        (line_of(text, "rules: [no-such-rule]"), "rule 'hot-and-stuffy': params.rules"),
    ]
    text_of_error = str(ConfigError(found))
    assert (
        f"{FILE}:{line_of(text, 'kind: rat')}: rule 'pressure-drop': kind: unknown kind 'rat'"
        in text_of_error
    )


def test_load_rules_names_the_file(tmp_path, campus):
    path = tmp_path / "rules.yaml"
    text = rules_yaml(rule_yaml(severity="P0"))
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_rules(path, campus)
    assert info.value.issues == [
        ConfigIssue(
            str(path),
            line_of(text, "severity: P0"),
            "rule 'burst-pipe': severity",
            "Input should be 'P1', 'P2', 'P3' or 'P4'",
        )
    ]
