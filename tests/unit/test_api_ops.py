"""The engineers' and office's API over a real SQLite store and the shipped
configuration: rules (list, lint, scenario runs, who may), assessment reports
(JSON and CSV against ``build_report``), ``/metrics`` (labelled by route
template) and the live stream's fan-out to slow and scoped clients."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.routers import rules as rules_routes
from api.routers import stream
from campus.settings import Settings
from rules.cli import lint as lint_command
from tests.accounts import add_accounts
from tests.conftest import CONFIG
from tickets.cli import open_tickets
from tickets.models import Role, Source
from tickets.report import build_report
from tickets.service import Alert, Tickets, WorkScope

RULES_TEXT = (CONFIG / "rules.yaml").read_text(encoding="utf-8")
SMOKE = "params: {above: 0.5}\n    clear_for: 5m\n    severity: P1"
USERS = {
    "office": (Role.viewer, None),
    "eng": (Role.engineer, None),
    "root": (Role.admin, None),
    "wang": (Role.technician, "tech-wang-jg"),  # plumbing, teaching area
}
# a Monday morning (UTC) long past: the report tickets are alone in their weeks
T0 = datetime(2025, 3, 3, 1, 0, tzinfo=UTC)


class Api:
    """A client with one token per account."""

    def __init__(self, client: TestClient, tokens: dict[str, str], tickets: Tickets) -> None:
        self.client = client
        self.tokens = tokens
        self.tickets = tickets

    def __call__(self, who: str | None, method: str, path: str, **kw: object):  # type: ignore[no-untyped-def]
        headers = dict(kw.pop("headers", None) or {})  # type: ignore[call-overload]
        if who:
            headers["Authorization"] = f"Bearer {self.tokens[who]}"
        return self.client.request(method, path, headers=headers, **kw)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    var = tmp_path_factory.mktemp("ops")
    settings = Settings(var_dir=var, config_dir=CONFIG, mqtt_url="mqtt://127.0.0.1:9")
    tickets = open_tickets(settings)
    tokens = add_accounts(tickets.store, USERS)
    with TestClient(create_app(settings, tickets)) as client:
        yield Api(client, tokens, tickets)
    tickets.store.close()


# ------------------------------------------------------------------ rules


def test_every_role_reads_the_rules_as_the_engine_loads_them(api: Api) -> None:
    assert api(None, "GET", "/api/rules").status_code == 401
    r = api("wang", "GET", "/api/rules")
    assert r.status_code == 200, r.text
    body = r.json()
    rules = {x["id"]: x for x in body["rules"]}
    smoke = rules["dorm-smoke"]
    assert (smoke["kind"], smoke["severity"], smoke["trade"]) == ("threshold", "P1", "general")
    assert smoke["select"]["kind"] == ["dorm"] and smoke["metric"] == "smoke"
    assert smoke["params"] == {"above": 0.5} and smoke["clear_for_s"] == 300
    assert smoke["devices"] > 0  # every dorm room
    assert body["watching"] == sum(x["devices"] for x in body["rules"])


def _cli_lint(text: str, folder: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """What ``campus rules lint rules.yaml`` prints for ``text`` (exit code, output)."""
    (folder / "rules.yaml").write_text(text, encoding="utf-8")
    monkeypatch.chdir(folder)
    monkeypatch.setenv("CAMPUS_CONFIG_DIR", str(CONFIG))
    res = CliRunner().invoke(lint_command, ["rules.yaml"])
    return res.exit_code, res.output


def test_lint_answers_what_the_command_line_prints(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = api("eng", "POST", "/api/rules/lint", json={"yaml": RULES_TEXT})
    assert good.status_code == 200 and good.json()["ok"] is True, good.text
    code, out = _cli_lint(RULES_TEXT, tmp_path, monkeypatch)
    assert code == 0
    m = re.search(r"(\d+) rules \((\d+) disabled\), watching (\d+)", out)
    assert m is not None, out
    g = good.json()
    assert (g["rules"], g["disabled"], g["watching"]) == tuple(int(x) for x in m.groups())

    # a misspelt parameter and a bad severity, leading blank lines kept (line numbers)
    bad_text = "\n\n" + RULES_TEXT.replace(SMOKE, SMOKE.replace("above", "abvoe")).replace(
        "severity: P1", "severity: P9", 1
    )
    bad = api("root", "POST", "/api/rules/lint", json={"yaml": bad_text})
    assert bad.status_code == 200, bad.text
    b = bad.json()
    assert b["ok"] is False and b["rules"] == 0 and len(b["issues"]) >= 2
    code, out = _cli_lint(bad_text, tmp_path, monkeypatch)
    assert code == 1
    assert [i["text"] for i in b["issues"]] == out.strip().splitlines()
    abvoe = next(i for i in b["issues"] if "dorm-smoke" in i["field"])
    assert bad_text.splitlines()[abvoe["line"] - 1].strip().startswith("params:")

    syntax = api("eng", "POST", "/api/rules/lint", json={"yaml": "rules:\n  - id: [x\n"})
    issue = syntax.json()["issues"][0]
    assert syntax.json()["ok"] is False and issue["line"] == 3 and "YAML syntax" in issue["message"]


def test_lint_refuses_yaml_that_would_explode(api: Api) -> None:
    bomb = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        bomb.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
    t = time.monotonic()
    r = api("eng", "POST", "/api/rules/lint", json={"yaml": "\n".join(bomb)})  # 10^9 values
    assert time.monotonic() - t < 2
    assert r.status_code == 200 and r.json()["ok"] is False
    assert "aliases expanded" in r.json()["issues"][0]["message"]
    deep = api("eng", "POST", "/api/rules/lint", json={"yaml": "[" * 600 + "]" * 600})
    assert deep.status_code == 200 and "nested" in deep.json()["issues"][0]["message"]
    loop = api("eng", "POST", "/api/rules/lint", json={"yaml": "a: &a [*a]"})
    assert loop.status_code == 200 and "contains it" in loop.json()["issues"][0]["message"]


def test_lint_input_is_checked(api: Api) -> None:
    r = api(
        "eng", "POST", "/api/rules/lint", json={"yaml": "x" * (rules_routes.MAX_RULES_CHARS + 1)}
    )
    assert r.status_code == 422 and "yaml" in r.text
    r = api("eng", "POST", "/api/rules/lint", json={"yaml": "rules: []", "apply": True})
    assert r.status_code == 422 and "apply" in r.text
    assert api("eng", "POST", "/api/rules/lint", json={}).status_code == 422


def test_only_engineers_and_admins_lint_and_run(api: Api) -> None:
    for who in ("office", "wang"):
        r = api(who, "POST", "/api/rules/lint", json={"yaml": RULES_TEXT})
        assert r.status_code == 403, who
        assert api(who, "POST", "/api/rules/scenarios/smoke/run").status_code == 403, who
    assert api(None, "POST", "/api/rules/lint", json={"yaml": RULES_TEXT}).status_code == 401
    assert api(None, "POST", "/api/rules/scenarios/smoke/run").status_code == 401


def test_scenarios_are_listed_with_whether_they_run_here(api: Api) -> None:
    r = api("office", "GET", "/api/rules/scenarios")
    assert r.status_code == 200
    scenarios = {s["name"]: s for s in r.json()}
    assert scenarios["smoke"]["runnable"] is True and scenarios["smoke"]["error"] is None
    assert scenarios["smoke"]["expect"][0] == {
        "rule": "dorm-smoke",
        "device": "dorm-4-r203",
        "within_s": 360.0,
    }
    assert scenarios["ordinary-term-week"]["runnable"] is False  # 7 days: the command line's


def test_a_scenario_passes_with_the_rules_and_fails_with_broken_ones(api: Api) -> None:
    ok = api("eng", "POST", "/api/rules/scenarios/smoke/run")
    assert ok.status_code == 200, ok.text
    res = ok.json()
    assert res["passed"] is True and res["rules"] == "file" and res["readings"] > 0
    assert res["expected"][0]["rule"] == "dorm-smoke" and res["expected"][0]["ok"] is True

    broken = RULES_TEXT.replace(SMOKE, SMOKE.replace("0.5", "1.5"))  # smoke is 0 or 1
    r = api("eng", "POST", "/api/rules/scenarios/smoke/run", json={"yaml": broken})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["passed"] is False and res["rules"] == "posted"
    assert res["expected"][0]["ok"] is False and res["expected"][0]["why"] == "never fired"


def test_scenario_runs_refuse_what_cannot_run(api: Api) -> None:
    t = time.monotonic()
    r = api("eng", "POST", "/api/rules/scenarios/ordinary-term-week/run")
    assert r.status_code == 422 and "campus rules test --scenario" in r.json()["detail"]
    assert time.monotonic() - t < 2  # refused before it starts
    assert api("eng", "POST", "/api/rules/scenarios/no-such/run").status_code == 404
    r = api("eng", "POST", "/api/rules/scenarios/..%2Fsecret/run")
    assert r.status_code in (404, 405, 422)
    without = "rules: []\n"  # the scenario expects dorm-smoke
    r = api("eng", "POST", "/api/rules/scenarios/smoke/run", json={"yaml": without})
    assert r.status_code == 422 and r.json()["detail"].startswith("yaml:")
    r = api("eng", "POST", "/api/rules/scenarios/smoke/run", json={"yaml": "rules: [x"})
    assert r.status_code == 422 and "YAML syntax" in r.json()["detail"]


def test_a_run_is_stopped_at_its_time_limit_and_runs_one_at_a_time(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rules_routes, "RUN_TIMEOUT_S", 0.0)
    r = api("eng", "POST", "/api/rules/scenarios/smoke/run")
    assert r.status_code == 422 and "takes too long" in r.json()["detail"], r.text
    monkeypatch.undo()
    with rules_routes._running:  # another engineer's run under way
        r = api("eng", "POST", "/api/rules/scenarios/smoke/run")
        assert r.status_code == 429 and r.headers["retry-after"]
    assert api("eng", "POST", "/api/rules/scenarios/smoke/run").json()["passed"] is True


# ---------------------------------------------------------------- reports


def _work(svc: Tickets, start: datetime, key: str, tech: str, ack_min: int, fix_h: float) -> None:
    """A ticket opened at ``start``, acknowledged and fixed by ``tech`` after the given times."""
    svc.clock = lambda: start
    raised = svc.raise_alert(
        Alert(key, Source.manual, "P2", "teach-1", "plumbing", "Leak in the basement", start)
    )
    svc.clock = lambda: start + timedelta(minutes=ack_min)
    svc.acknowledge(raised.ticket_id, tech)
    svc.assign(raised.ticket_id, tech, technician=tech)
    svc.clock = lambda: start + timedelta(hours=fix_h)
    svc.resolve(raised.ticket_id, tech, "fixed")


def test_reports_in_json_and_csv_agree_with_build_report(api: Api) -> None:
    svc = api.tickets
    clock = svc.clock
    try:
        _work(svc, T0, "report-1", "tech-wang-jg", 10, 2)
        _work(svc, T0 + timedelta(hours=3), "report-2", "tech-wang-jg", 30, 4)
        _work(svc, T0 + timedelta(days=1), "report-3", "tech-liu-dm", 20, 1)
        now = T0 + timedelta(days=20)
        svc.clock = lambda: now
        query = {"by": "team", "period": "week", "start": "2025-03-01", "end": "2025-03-15"}
        r = api("office", "GET", "/api/reports/assessment", params=query)
        assert r.status_code == 200, r.text
        doc = r.json()
        rows = {row["team"]: row for row in doc["rows"]}
        assert set(rows) == {"plumb-academic", "plumb-living"}
        assert rows["plumb-academic"]["tickets"] == 2
        assert rows["plumb-academic"]["ack_median_min"] == 20.0  # 10 and 30 minutes
        assert rows["plumb-living"]["resolve_median_h"] == 1.0
        assert rows["plumb-academic"]["period"] == "2025-03-03"  # the campus's Monday

        start, end = datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 3, 15, tzinfo=UTC)
        tz = doc["timezone"]
        assert tz == api.client.app.state.campus.timezone  # type: ignore[attr-defined]
        table = build_report(svc.store, start, end, now, "week", tz).tables["team"]
        assert doc["columns"] == list(table.columns)
        assert [[row[c] for c in doc["columns"]] for row in doc["rows"]] == [
            [None if v != v else v for v in rec] for rec in table.itertuples(index=False)
        ]

        as_csv = api("office", "GET", "/api/reports/assessment", params={**query, "format": "csv"})
        by_accept = api(
            "eng", "GET", "/api/reports/assessment", params=query, headers={"Accept": "text/csv"}
        )
        for c in (as_csv, by_accept):
            assert c.status_code == 200 and c.headers["content-type"].startswith("text/csv")
            assert (
                'filename="report-team-week-20250301-20250315.csv"'
                in (c.headers["content-disposition"])
            )
            parsed = list(csv.DictReader(io.StringIO(c.text)))
            assert [row["team"] for row in parsed] == [row["team"] for row in doc["rows"]]
            for got, want in zip(parsed, doc["rows"], strict=True):
                for col in doc["columns"]:
                    value = want[col]
                    assert got[col] == ("" if value is None else str(value)), col
    finally:
        svc.clock = clock


def test_reports_check_their_parameters_and_roles(api: Api) -> None:
    url = "/api/reports/assessment"
    assert api("wang", "GET", url).status_code == 403
    assert api(None, "GET", url).status_code == 401
    assert api("eng", "GET", url).status_code == 200
    for params, field in [
        ({"by": "building"}, "by"),
        ({"period": "day"}, "period"),
        ({"format": "xml"}, "format"),
        ({"start": "yesterday"}, "start"),
        ({"start": "-99999999999d"}, "start"),
        ({"start": "0001-01-01T00:00+14:00"}, "start"),
        ({"start": "2025-03-10", "end": "2025-03-01"}, "end"),
        ({"start": "2020-01-01", "end": "2025-01-01"}, "start"),
        ({"end": "now'; DROP TABLE tickets; --"}, "end"),
    ]:
        r = api("office", "GET", url, params=params)
        assert r.status_code == 422 and field in r.text, (params, r.text)


# ---------------------------------------------------------------- metrics


def _samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def test_metrics_count_requests_by_route_template(api: Api, tmp_path: Path) -> None:
    assert api("office", "GET", "/api/tickets/987654").status_code == 404
    assert api("office", "GET", "/api/rules").status_code == 200
    assert api("office", "BREW", "/api/rules").status_code == 405
    before = api(None, "GET", "/metrics")
    assert before.status_code == 200 and before.headers["content-type"].startswith("text/plain")
    api.tickets.raise_alert(
        Alert("metrics-p1", Source.manual, "P1", "dorm-2", "plumbing", "Burst pipe", T0)
    )
    text = api(None, "GET", "/metrics").text
    requests = _samples(text, "campus_api_requests_total")
    assert any(
        labels == {"route": "/api/tickets/{ticket_id}", "method": "GET", "status": "404"}
        and value >= 1
        for labels, value in requests
    ), requests
    assert any(
        labels["route"] == "/api/rules" and labels["status"] == "200" for labels, _ in requests
    )
    assert not any("987654" in labels["route"] for labels, _ in requests)
    assert any(
        labels == {"route": "/api/rules", "method": "other", "status": "405"}
        for labels, _ in requests
    )
    timed = _samples(text, "campus_api_request_seconds_count")
    assert any(labels == {"route": "/api/rules", "method": "GET"} for labels, _ in timed)
    p1 = [
        v for labels, v in _samples(text, "campus_api_tickets_open") if labels["severity"] == "P1"
    ]
    p1_before = [
        v
        for labels, v in _samples(before.text, "campus_api_tickets_open")
        if labels["severity"] == "P1"
    ]
    assert p1 == [p1_before[0] + 1]
    assert _samples(text, "campus_api_ticket_store_up") == [({}, 1.0)]
    assert _samples(text, "campus_api_stream_clients") == [({}, 0.0)]
    # another app in the same process has a registry of its own
    other = create_app(Settings(var_dir=tmp_path, config_dir=CONFIG))
    assert other.state.metrics.registry is not api.client.app.state.metrics.registry  # type: ignore[attr-defined]


# ------------------------------------------------------- stream fan-out


def _ticket_doc(key: str, building: str, trade: str, tech: str | None = None) -> dict[str, object]:
    data = {"id": 1, "building": building, "trade": trade, "technician_id": tech}
    return {"key": key, "building": building, "trade": trade, "severity": "P2", "data": data}


def test_the_stream_hub_filters_by_scope_and_drops_the_oldest_of_slow_clients(api: Api) -> None:
    async def go() -> None:
        hub = stream.Hub(api.client.app, Settings(config_dir=CONFIG))  # type: ignore[arg-type]
        everyone = stream.Subscriber(None)
        plumber = stream.Subscriber(WorkScope("tech-wang-jg", "plumbing", frozenset({"teach-1"})))
        hub.clients |= {everyone, plumber}
        hub.publish("ticket", _ticket_doc("k1", "teach-1", "plumbing"))
        hub.publish("ticket", _ticket_doc("k1", "teach-1", "plumbing"))  # a redelivery
        hub.publish("ticket", _ticket_doc("k2", "dorm-1", "plumbing"))  # another team's
        hub.publish("ticket", _ticket_doc("k3", "dorm-1", "hvac", "tech-wang-jg"))  # given to him
        hub.publish("alert", {"rule": "x", "building": "teach-1", "trade": "electrical"})
        assert everyone.queue.qsize() == 4 and hub.duplicates == 1
        got = [plumber.queue.get_nowait()[1] for _ in range(plumber.queue.qsize())]
        assert ['"k1"' in g for g in got] == [True, False] and '"k3"' in got[1]
        for i in range(stream.QUEUE_SIZE + 10):
            hub.publish("alert", {"n": i, "building": "teach-1", "trade": "plumbing"})
        assert everyone.queue.qsize() == stream.QUEUE_SIZE
        assert everyone.missed == 14 and hub.dropped == 14 + 10  # 4 queued before, 10 for him
        assert '"n":10' in everyone.queue.get_nowait()[1]  # the oldest went first

    asyncio.run(go())
