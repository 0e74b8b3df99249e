"""``campus dashboards check``: prove the boards work without a Grafana server.

Each board in ``dashboards/generated/`` is checked four ways:

1. it decodes into grafana-foundation-sdk's model and encodes back unchanged
   (a field the SDK drops is a field Grafana does not know);
2. it validates against Grafana's dashboard and panel JSON schemas, when a
   folder of them is given (``--schemas``);
3. static checks: unique panel ids, every ``$variable`` defined, every
   datasource uid provisioned;
4. every variable, panel and annotation query runs against a real InfluxDB with
   Grafana's macros expanded (:mod:`dashboards.macros`); a query error or a
   panel whose every query returns no rows fails the check.

``--preview DIR`` then draws each board from the same results
(:mod:`dashboards.preview`).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from campus.errors import CampusError
from dashboards.macros import (
    MacroError,
    Selection,
    TimeContext,
    calculate_interval,
    choose,
    expand,
    parse_interval,
    parse_time,
    undefined_variables,
    used_variables,
)

HERE = Path(__file__).resolve().parent
BOARDS_DIR = HERE / "generated"
PROVISIONING_DIR = HERE / "provisioning"
SCHEMAS_ENV = "CAMPUS_GRAFANA_SCHEMAS"

#: Datasource uids Grafana itself provides (annotations, dashboard reuse, mixed).
BUILTIN_DATASOURCES = frozenset({"-- Grafana --", "grafana", "-- Dashboard --", "-- Mixed --"})
_MAX_SCHEMA_ERRORS = 10

Json = dict[str, Any]


@dataclass
class Outcome:
    """One line of the report: a board, a panel, a variable or an annotation."""

    board: str
    item: str
    status: str  # ok | empty | error (these two fail the check) | note
    message: str = ""
    rows: int = 0

    def line(self) -> str:
        """The human-readable line."""
        return f"{self.board}  {self.item}  {self.status}" + (
            f"  {self.message}" if self.message else ""
        )


@dataclass
class PanelData:
    """A panel and what its queries returned, for the preview."""

    panel: Json
    title: str = ""  # with the variables expanded, as Grafana shows it
    series: list[list[Json]] = field(default_factory=list)  # per target (and repetition)
    aliases: list[str] = field(default_factory=list)  # each target's ``alias``, same order


@dataclass
class BoardRun:
    """A checked board: its outcomes and the data behind each panel."""

    uid: str
    board: Json
    from_ms: int
    to_ms: int
    outcomes: list[Outcome] = field(default_factory=list)
    panels: list[PanelData] = field(default_factory=list)
    #: Titles of the board and its rows (by row id) with the variables expanded.
    titles: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------ loading


def load_boards(directory: Path) -> list[tuple[Path, Json]]:
    """Every ``*.json`` board in ``directory``, sorted by file name."""
    if not directory.is_dir():
        raise CampusError(f"no board directory {directory}: run `campus dashboards build` first")
    files = sorted(directory.glob("*.json"))
    if not files:
        raise CampusError(f"no boards (*.json) in {directory}")
    boards = []
    for path in files:
        try:
            board = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CampusError(f"{path}: not a JSON board: {exc}") from None
        if not isinstance(board, dict):
            raise CampusError(f"{path}: not a JSON board: the top level is not an object")
        boards.append((path, board))
    return boards


def load_datasources(provisioning: Path) -> dict[str, Json]:
    """Datasources by uid from Grafana's provisioning files ``datasources/*.yaml``."""
    import yaml

    found: dict[str, Json] = {}
    folder = provisioning / "datasources"
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise CampusError(f"{path}: cannot read provisioning file: {exc}") from None
        for ds in doc.get("datasources") or []:
            if isinstance(ds, dict) and ds.get("uid"):
                found[str(ds["uid"])] = ds
    if not found:
        raise CampusError(f"no datasource with a uid in {folder}/*.yaml (give --provisioning)")
    return found


@dataclass
class Schemas:
    """Grafana's dashboard schema and the per-panel-type schemas from one folder."""

    dashboard: Json
    panels: dict[str, Json]


def load_schemas(directory: Path) -> Schemas:
    """The schemas in ``directory``: the dashboard's and one per panel type."""
    main = directory / "dashboard.jsonschema.json"
    if not main.is_file():
        raise CampusError(f"no dashboard.jsonschema.json in {directory}")
    panels = {}
    for path in directory.glob("*.jsonschema.json"):
        kind = path.name.removesuffix(".jsonschema.json")
        schema = json.loads(path.read_text(encoding="utf-8"))
        if "Options" in schema.get("definitions", {}):
            panels[kind] = schema
    return Schemas(json.loads(main.read_text(encoding="utf-8")), panels)


# ------------------------------------------------------------ board walking


def all_panels(board: Json) -> Iterator[Json]:
    """Every panel of the board, rows and the panels inside collapsed rows included."""
    for panel in board.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []


def data_panels(board: Json) -> Iterator[Json]:
    """Panels that show data (not rows)."""
    return (p for p in all_panels(board) if p.get("type") != "row")


def panel_label(panel: Json) -> str:
    """``panel 3 "Title"``, as the report names a panel."""
    return f'panel {panel.get("id")} "{panel.get("title", "")}"'


def ds_uid(ds: object) -> str | None:
    """The uid of a datasource reference (object, legacy name string or none)."""
    if isinstance(ds, dict):
        uid = ds.get("uid")
        return str(uid) if uid is not None else None
    if isinstance(ds, str):
        return ds
    return None


def variables(board: Json) -> list[Json]:
    """The board's template variables."""
    return list((board.get("templating") or {}).get("list") or [])


def board_annotations(board: Json) -> list[Json]:
    """The board's annotation queries, without Grafana's built-in one."""
    out = []
    for a in (board.get("annotations") or {}).get("list") or []:
        if a.get("builtIn") or ds_uid(a.get("datasource")) in BUILTIN_DATASOURCES:
            continue
        out.append(a)
    return out


def variable_query(var: Json) -> str:
    """The query text of a variable (plain string or Grafana's ``{"query": ...}`` object)."""
    q = var.get("query", "")
    if isinstance(q, dict):
        q = q.get("query", "")
    return str(q or "")


def annotation_query(a: Json) -> str:
    """The InfluxQL of an annotation (``query`` or ``target.query``)."""
    target = a.get("target")
    if not isinstance(target, dict):
        target = {}
    return str(a.get("query") or target.get("query") or "")


# ----------------------------------------------------------- static checks


def sdk_problems(board: Json) -> list[tuple[str, str]]:
    """(item, message) for each field that does not survive a round trip through
    grafana-foundation-sdk's model: a field the SDK drops is one Grafana does not know."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from grafana_foundation_sdk.cog import plugins
        from grafana_foundation_sdk.cog.encoder import JSONEncoder
        from grafana_foundation_sdk.models.dashboard import Dashboard

        plugins.register_default_plugins()
        try:
            model = Dashboard.from_json(board)
            back = json.loads(json.dumps(model, cls=JSONEncoder))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return [("board", f"SDK cannot decode the board: {type(exc).__name__}: {exc}")]
    return [(_schema_item(board, path), msg) for path, msg in _lost(board, back, [])]


def _lost(orig: object, back: object, path: list[object]) -> Iterator[tuple[list[object], str]]:
    where = "/" + "/".join(map(str, path))
    if isinstance(orig, dict) and isinstance(back, dict):
        for key, value in orig.items():
            if key not in back:
                yield path, f"SDK: {where.rstrip('/')}/{key}: not a field of the SDK's model"
            else:
                yield from _lost(value, back[key], [*path, key])
    elif isinstance(orig, list) and isinstance(back, list) and len(orig) == len(back):
        for i, (a, b) in enumerate(zip(orig, back, strict=True)):
            yield from _lost(a, b, [*path, i])
    elif orig != back:
        yield path, f"SDK: {where}: {orig!r} decodes as {back!r}"


def schema_problems(board: Json, schemas: Schemas) -> list[tuple[str, str]]:
    """(item, message) for each place the board breaks Grafana's JSON schemas."""
    from jsonschema import Draft7Validator

    errors = list(Draft7Validator(schemas.dashboard).iter_errors(board))[:_MAX_SCHEMA_ERRORS]
    out = [(_schema_item(board, list(e.absolute_path)), _schema_message("", e)) for e in errors]
    for panel in data_panels(board):
        schema = schemas.panels.get(str(panel.get("type")))
        if schema is None:
            continue
        parts = [("options", panel.get("options") or {}, "Options")]
        custom = ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("custom")
        if custom is not None and "FieldConfig" in schema.get("definitions", {}):
            parts.append(("fieldConfig/defaults/custom", custom, "FieldConfig"))
        for where, doc, definition in parts:
            validator = Draft7Validator({**schema, "$ref": f"#/definitions/{definition}"})
            for e in list(validator.iter_errors(doc))[:_MAX_SCHEMA_ERRORS]:
                out.append((panel_label(panel), _schema_message(where, e)))
    return out


def _schema_item(board: Json, path: list[object]) -> str:
    """The panel a schema error sits in (``panels/3/...``, rows' panels too), else the board."""
    item, panels = "board", board.get("panels") or []
    while len(path) >= 2 and path[0] == "panels" and isinstance(path[1], int):
        if path[1] >= len(panels):
            break
        panel = panels[path[1]]
        item, panels, path = panel_label(panel), panel.get("panels") or [], path[2:]
    return item


def _schema_message(where: str, error: Any) -> str:
    """``schema: <path>: <message>``; for an ``anyOf``, its deepest sub-error (the branch
    that matched furthest, e.g. a panel rather than a row)."""
    while error.context:
        error = max(error.context, key=lambda e: len(e.absolute_path))
    at = "/".join(map(str, error.absolute_path))
    return f"schema: {where}/{at}: {_short(error.message)}"


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def duplicate_ids(board: Json) -> list[tuple[str, str]]:
    """Panels without an id or sharing one (rows and their children included)."""
    seen: dict[object, Json] = {}
    out = []
    for panel in all_panels(board):
        pid = panel.get("id")
        if pid is None:
            out.append((panel_label(panel), "panel has no id"))
        elif pid in seen:
            first = seen[pid]
            out.append(
                (panel_label(panel), f"duplicate panel id {pid} (also {panel_label(first)})")
            )
        else:
            seen[pid] = panel
    return out


def undefined_uses(board: Json) -> list[tuple[str, str]]:
    """Every ``$variable`` used in a query or title that the board does not define."""
    defined = {str(v.get("name")) for v in variables(board)}
    places: list[tuple[str, str, str]] = [("board", "title", str(board.get("title", "")))]
    for panel in all_panels(board):
        label = panel_label(panel)
        places.append((label, "title", str(panel.get("title", ""))))
        for t in panel.get("targets") or []:
            places.append((label, f"query {t.get('refId', '?')}", str(t.get("query", ""))))
    for v in variables(board):
        places.append((f"variable {v.get('name')}", "query", variable_query(v)))
    for a in board_annotations(board):
        places.append((f'annotation "{a.get("name")}"', "query", annotation_query(a)))
    out = []
    for item, where, text in places:
        for name in undefined_variables(text, defined):
            out.append((item, f"{where} uses ${name}, which is not defined on the board"))
    return out


def unknown_datasources(board: Json, provisioned: Mapping[str, Json]) -> list[tuple[str, str]]:
    """Every datasource uid (panel, target, variable, annotation) not in the provisioning files."""
    refs: list[tuple[str, object]] = []
    for panel in data_panels(board):
        label = panel_label(panel)
        refs.append((label, panel.get("datasource")))
        refs.extend(
            (f"{label} target {t.get('refId')}", t.get("datasource"))
            for t in panel.get("targets") or []
        )
    for v in variables(board):
        if v.get("type") == "query":
            refs.append((f"variable {v.get('name')}", v.get("datasource")))
    for a in board_annotations(board):
        refs.append((f'annotation "{a.get("name")}"', a.get("datasource")))
    out = []
    for item, ref in refs:
        uid = ds_uid(ref)
        if uid is None or uid in BUILTIN_DATASOURCES or uid in provisioned or uid.startswith("$"):
            continue
        known = ", ".join(sorted(provisioned)) or "none"
        out.append((item, f"datasource uid {uid!r} is not provisioned (known: {known})"))
    return out


# ----------------------------------------------------------- running queries


class Runner:
    """Runs a board's queries the way Grafana would, against one InfluxDB database."""

    def __init__(
        self,
        client: Any,
        provisioned: Mapping[str, Json],
        max_points: int,
        chosen: Mapping[str, list[str]] | None = None,
    ) -> None:
        self.client = client
        self.provisioned = provisioned
        self.max_points = max_points
        #: Values given on the command line (``--var name=value``), like Grafana's ``var-`` URL.
        self.chosen = dict(chosen or {})

    def run(self, run: BoardRun) -> None:
        """Resolve the variables, then run every panel and annotation query."""
        selections = self._resolve_variables(run)
        if selections is None:
            run.outcomes.append(
                Outcome(run.uid, "panels", "note", "not run: a variable has no value")
            )
            return
        run.titles["board"] = _title(str(run.board.get("title", "")), run, selections)
        for row in all_panels(run.board):
            if row.get("type") == "row":
                run.titles[str(row.get("id"))] = _title(str(row.get("title", "")), run, selections)
        for panel, repeat in repeated_panels(run.board):
            self._run_panel(run, panel, selections, repeat)
        for a in board_annotations(run.board):
            self._run_annotation(run, a, selections)

    # -- time and interval

    def _context(self, run: BoardRun, panel: Json | None = None, ds: object = None) -> TimeContext:
        panel = panel or {}
        low = 1
        min_interval = panel.get("interval") or self._ds_interval(ds)
        if min_interval:
            low = parse_interval(str(min_interval))
        points = int(panel.get("maxDataPoints") or self.max_points)
        interval = calculate_interval(run.from_ms, run.to_ms, points, low)
        return TimeContext(run.from_ms, run.to_ms, interval)

    def _ds_interval(self, ds: object) -> str | None:
        uid = ds_uid(ds)
        if uid is None or uid not in self.provisioned:
            return None
        value = (self.provisioned[uid].get("jsonData") or {}).get("timeInterval")
        return str(value) if value else None

    # -- variables

    def _resolve_variables(self, run: BoardRun) -> dict[str, Selection] | None:
        """Selections of every variable, each after the variables its query uses."""
        pending = {str(v.get("name")): v for v in variables(run.board)}
        selections: dict[str, Selection] = {}
        while pending:
            ready = [
                name
                for name, v in pending.items()
                if not (set(used_variables(variable_query(v))) & (pending.keys() - {name}))
            ]
            if not ready:
                names = ", ".join(sorted(pending))
                run.outcomes.append(
                    Outcome(run.uid, "variables", "error", f"circular references among {names}")
                )
                return None
            for name in ready:
                selection = self._variable(run, pending.pop(name), selections)
                if selection is None:
                    return None
                selections[name] = selection
        return selections

    def _variable(self, run: BoardRun, var: Json, known: dict[str, Selection]) -> Selection | None:
        name = str(var.get("name"))
        item = f"variable {name}"
        try:
            options = self._options(run, var, known)
        except (MacroError, CampusError) as exc:
            run.outcomes.append(Outcome(run.uid, item, "error", str(exc)))
            return None
        if not options and var.get("type") == "query":
            if name in repeat_variables(run.board):
                # as in Grafana: a row or panel repeated over no values is not shown
                note = "no values: what repeats over it is not shown"
                run.outcomes.append(Outcome(run.uid, item, "ok", note))
                return Selection(name, ())
            run.outcomes.append(Outcome(run.uid, item, "empty", "the query returned no values"))
            return None
        current = var.get("current")
        if name in self.chosen:
            current = {"value": ["$__all" if v == "All" else v for v in self.chosen[name]]}
            unknown = [v for v in current["value"] if v not in options and v != "$__all"]
            if unknown:
                listed = _short(", ".join(options), 80)
                message = f"--var value {unknown[0]!r} is not one of its values ({listed})"
                run.outcomes.append(Outcome(run.uid, item, "error", message))
                return None
        selection = choose(
            name,
            options,
            current,
            multi=bool(var.get("multi")),
            include_all=bool(var.get("includeAll")),
            all_value=var.get("allValue") or None,
        )
        shown = "All" if selection.all_selected else ", ".join(selection.values)
        run.outcomes.append(
            Outcome(
                run.uid,
                item,
                "ok",
                f"{len(options)} values, using {_short(shown, 60)}",
                len(options),
            )
        )
        return selection

    def _options(self, run: BoardRun, var: Json, known: dict[str, Selection]) -> list[str]:
        kind = var.get("type")
        if kind == "query":
            ctx = self._context(run, ds=var.get("datasource"))
            q = expand(variable_query(var), ctx, known)
            values = _variable_values(q, self.client.query(q))
            return _sort(_filter(values, str(var.get("regex") or "")), int(var.get("sort") or 0))
        if kind in ("custom", "interval"):
            listed = [
                str(o.get("value")) for o in var.get("options") or [] if o.get("value") != "$__all"
            ]
            return listed or [
                p.split(" : ")[-1].strip()
                for p in re.split(r"(?<!\\),", variable_query(var))
                if p.strip()
            ]
        if kind == "datasource":
            return [
                uid for uid, ds in self.provisioned.items() if ds.get("type") == var.get("query")
            ]
        return [variable_query(var)]  # constant, textbox: the text itself

    # -- panels and annotations

    def _run_panel(
        self,
        run: BoardRun,
        panel: Json,
        selections: Mapping[str, Selection],
        repeat: list[str],
    ) -> None:
        """Run the panel's queries, once per repetition when it (or its row) repeats."""
        label = panel_label(panel)
        unrepeated = [n for n in repeat if n in selections and not selections[n].values]
        if unrepeated:
            note = f"not shown: ${unrepeated[0]} has no values"
            run.outcomes.append(Outcome(run.uid, label, "ok", note))
            return
        targets = [t for t in panel.get("targets") or [] if not t.get("hide")]
        data = PanelData(panel, _title(str(panel.get("title", "")), run, selections))
        run.panels.append(data)
        if not targets:
            if panel.get("type") not in ("text", "news", "dashlist", "annolist"):
                run.outcomes.append(Outcome(run.uid, label, "error", "panel has no query"))
            return
        errors: list[str] = []
        rows = series_count = 0
        empty: list[str] = []
        for scope, scoped in _repetitions(repeat, selections):
            got, n_series = self._run_targets(run, panel, targets, scoped, data, errors)
            rows += got
            series_count += n_series
            if got == 0 and scope:
                empty.append(scope)
        run.outcomes.append(_panel_outcome(run.uid, panel, errors, rows, series_count, empty))

    def _run_targets(
        self,
        run: BoardRun,
        panel: Json,
        targets: list[Json],
        selections: Mapping[str, Selection],
        data: PanelData,
        errors: list[str],
    ) -> tuple[int, int]:
        """Rows and series the targets returned (their results go to ``data``)."""
        rows = series_count = 0
        for target in targets:
            ds = target.get("datasource") or panel.get("datasource")
            ref = target.get("refId", "?")
            if ds_uid(ds) == "-- Dashboard --":
                continue
            try:
                if target.get("rawQuery") is False or "query" not in target:
                    raise MacroError("not a raw InfluxQL query (rawQuery with query)")
                q = expand(str(target["query"]), self._context(run, panel, ds), selections)
                series = self.client.query(q)
            except (MacroError, CampusError) as exc:
                if f"{ref}: {exc}" not in errors:
                    errors.append(f"{ref}: {exc}")
                continue
            data.series.append(series)
            data.aliases.append(str(target.get("alias") or ""))
            series_count += len(series)
            rows += count_rows(series)
        return rows, series_count

    def _run_annotation(self, run: BoardRun, a: Json, selections: Mapping[str, Selection]) -> None:
        item = f'annotation "{a.get("name")}"'
        try:
            q = expand(annotation_query(a), self._context(run, ds=a.get("datasource")), selections)
            n = count_rows(self.client.query(q))
        except (MacroError, CampusError) as exc:
            run.outcomes.append(Outcome(run.uid, item, "error", str(exc)))
            return
        if n:
            run.outcomes.append(Outcome(run.uid, item, "ok", f"{n} events", n))
        else:
            run.outcomes.append(Outcome(run.uid, item, "note", "no events in the range"))


def repeat_variables(board: Json) -> set[str]:
    """The variables some row or panel of ``board`` repeats over."""
    return {str(p["repeat"]) for p in all_panels(board) if p.get("repeat")}


def repeated_panels(board: Json) -> Iterator[tuple[Json, list[str]]]:
    """Every data panel with the variables it repeats over: its row's ``repeat``, its own."""
    row_repeat: list[str] = []
    for panel in board.get("panels") or []:
        if panel.get("type") == "row":
            row_repeat = [panel["repeat"]] if panel.get("repeat") else []
            for child in panel.get("panels") or []:
                yield child, row_repeat + ([child["repeat"]] if child.get("repeat") else [])
            continue
        yield panel, row_repeat + ([panel["repeat"]] if panel.get("repeat") else [])


def _repetitions(
    names: list[str], selections: Mapping[str, Selection]
) -> Iterator[tuple[str, dict[str, Selection]]]:
    """(``name=value`` label, selections) for each repetition, as Grafana repeats:
    one copy per selected value, with the variable holding that value alone."""
    import itertools

    names = [n for n in dict.fromkeys(names) if n in selections]
    for combo in itertools.product(*(selections[n].values for n in names)):
        scoped = dict(selections)
        scoped.update({n: Selection(n, (v,)) for n, v in zip(names, combo, strict=True)})
        yield ", ".join(f"{n}={v}" for n, v in zip(names, combo, strict=True)), scoped


def _panel_outcome(
    uid: str, panel: Json, errors: list[str], rows: int, series: int, empty: list[str]
) -> Outcome:
    """ok, empty or error for a panel, from what its queries returned."""
    label = panel_label(panel)
    if errors:
        return Outcome(uid, label, "error", "; ".join(errors), rows)
    no_value = _no_value(panel)
    if no_value is not None and (rows == 0 or empty):
        return Outcome(uid, label, "ok", f"no rows, shows its noValue {no_value!r}", rows)
    if rows == 0:
        return Outcome(uid, label, "empty", "every query returned no rows")
    if empty:
        return Outcome(uid, label, "empty", f"no rows for {_short('; '.join(empty), 120)}", rows)
    return Outcome(uid, label, "ok", f"{series} series, {rows} rows", rows)


def _title(text: str, run: BoardRun, selections: Mapping[str, Selection]) -> str:
    """A title with its variables expanded (left as written if one is undefined)."""
    try:
        return expand(text, TimeContext(run.from_ms, run.to_ms, 1), selections)
    except MacroError:
        return text


def _no_value(panel: Json) -> str | None:
    """What the panel shows when its queries return nothing (``noValue``), if set."""
    value = ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("noValue")
    return None if value is None else str(value)


def count_rows(series: list[Json]) -> int:
    """Rows holding at least one non-null value besides the time."""
    n = 0
    for s in series:
        cols = s.get("columns") or []
        skip = 1 if cols[:1] == ["time"] else 0
        n += sum(1 for row in s.get("values") or [] if any(v is not None for v in row[skip:]))
    return n


def _variable_values(query: str, series: list[Json]) -> list[str]:
    """Grafana's InfluxDB ``metricFindQuery`` parsing: the value column of each row."""
    low = query.lower()
    value_first = "show field keys" in low or "show retention policies" in low
    out: list[str] = []
    for s in series:
        for row in s.get("values") or []:
            value = row[0] if value_first or len(row) < 2 else row[1]
            if value is not None and str(value) not in out:
                out.append(str(value))
    return out


def _filter(values: list[str], regex: str) -> list[str]:
    """Grafana's variable ``regex``: keep matches, the first group as the value."""
    m = re.fullmatch(r"/(.*)/([gimsuy]*)", regex)
    if not regex or not m:
        return values
    try:
        pattern = re.compile(m.group(1), re.IGNORECASE if "i" in m.group(2) else 0)
    except re.error as exc:
        raise MacroError(f"cannot use the variable's regex {regex!r}: {exc}") from None
    out = []
    for v in values:
        hit = pattern.search(v)
        if hit:
            out.append(hit.group(1) if pattern.groups else v)
    return out


def _sort(values: list[str], order: int) -> list[str]:
    """Grafana's variable ``sort`` (1/2 alphabetical, 3/4 numerical, 5/6 case-insensitive)."""
    if order in (1, 2):
        return sorted(values, reverse=order == 2)
    if order in (3, 4):
        return sorted(values, key=_number, reverse=order == 4)
    if order in (5, 6):
        return sorted(values, key=str.lower, reverse=order == 6)
    return values


def _number(value: str) -> float:
    found = re.search(r"-?\d+(?:\.\d+)?", value)
    return float(found.group(0)) if found else float("-inf")


# ------------------------------------------------------------------- driver


def check_board(
    path: Path,
    board: Json,
    *,
    provisioned: Mapping[str, Json],
    schemas: Schemas | None,
    runner: Runner | None,
    time_from: str | None,
    time_to: str | None,
    now: datetime,
) -> BoardRun:
    """All checks of one board."""
    uid = str(board.get("uid") or path.stem)
    default = board.get("time") or {}
    try:
        from_ms = parse_time(time_from or str(default.get("from", "now-24h")), now)
        to_ms = parse_time(time_to or str(default.get("to", "now")), now, round_up=True)
    except MacroError as exc:
        raise click.BadParameter(str(exc)) from None
    run = BoardRun(uid, board, from_ms, to_ms)
    found = sdk_problems(board)
    if schemas is not None:
        found += schema_problems(board, schemas)
    found += duplicate_ids(board) + undefined_uses(board)
    found += unknown_datasources(board, provisioned)
    run.outcomes += [Outcome(uid, item, "error", msg) for item, msg in found]
    if runner is not None:
        runner.run(run)
    if not found:
        run.outcomes.insert(0, Outcome(uid, "board", "ok", _static_summary(schemas)))
    return run


def _static_summary(schemas: Schemas | None) -> str:
    """What the static checks covered."""
    return "SDK model, " + ("schema, " if schemas else "") + "ids, variables, datasources"


def summary(runs: list[BoardRun]) -> dict[str, int]:
    """Counts for the last line and the JSON output."""
    outcomes = [o for r in runs for o in r.outcomes]
    panels = [o for o in outcomes if o.item.startswith("panel ")]
    return {
        "boards": len(runs),
        "panels": sum(1 for r in runs for _ in data_panels(r.board)),
        "ok": sum(1 for o in panels if o.status == "ok"),
        "empty": sum(1 for o in outcomes if o.status == "empty"),
        "errors": sum(1 for o in outcomes if o.status == "error"),
    }


def _schemas_from(option: Path | None) -> Schemas | None:
    folder = option or (Path(os.environ[SCHEMAS_ENV]) if os.environ.get(SCHEMAS_ENV) else None)
    if folder is None:
        click.echo(
            f"notice: schema check skipped (give --schemas DIR or set {SCHEMAS_ENV} "
            "to a folder of Grafana's JSON schemas)",
            err=True,
        )
        return None
    return load_schemas(folder)


def _client(influx_url: str | None, db: str | None, skip: bool) -> Any:
    if skip:
        return None
    from campus.influx import InfluxClient
    from campus.settings import get_settings

    settings = get_settings()
    client = InfluxClient(
        influx_url or settings.influx_url,
        db or settings.influx_db,
        token=settings.influx_token,
        username=settings.influx_user,
        password=settings.influx_password,
        timeout=30.0,
    )
    if not client.ping():
        client.close()
        raise CampusError(f"InfluxDB at {client.url} is unreachable (give --influx-url)")
    return client


@click.command("check")
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path),
    default=BOARDS_DIR,
    show_default="dashboards/generated",
    help="Folder of board JSON files.",
)
@click.option(
    "--provisioning",
    type=click.Path(path_type=Path),
    default=PROVISIONING_DIR,
    show_default="dashboards/provisioning",
    help="Grafana provisioning folder (datasource uids).",
)
@click.option(
    "--schemas",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=None,
    help=f"Folder of Grafana's JSON schemas (or ${SCHEMAS_ENV}); without it: no schema step.",
)
@click.option("--influx-url", default=None, help="InfluxDB URL (default: CAMPUS_INFLUX_URL).")
@click.option("--db", default=None, help="Database (default: CAMPUS_INFLUX_DB).")
@click.option(
    "--from",
    "time_from",
    default=None,
    help="Start: now-24h, now-7d/d, ISO or epoch ms (default: the board's).",
)
@click.option("--to", "time_to", default=None, help="End (default: the board's, usually now).")
@click.option(
    "--max-points",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Max data points per panel, which sets $__interval.",
)
@click.option(
    "--var",
    "chosen",
    multiple=True,
    metavar="NAME=VALUE",
    help="Select a variable's value (repeat for several values; All for all), "
    "instead of the board's saved one.",
)
@click.option("--no-queries", is_flag=True, help="Only the static checks; do not contact InfluxDB.")
@click.option(
    "--preview",
    "preview_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Also draw each board to DIR/<uid>.png.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def check_command(
    directory: Path,
    provisioning: Path,
    schemas: Path | None,
    influx_url: str | None,
    db: str | None,
    time_from: str | None,
    time_to: str | None,
    max_points: int,
    chosen: tuple[str, ...],
    no_queries: bool,
    preview_dir: Path | None,
    as_json: bool,
) -> None:
    """Validate every board and run its queries against InfluxDB; fail on errors or empty panels."""
    try:
        boards = load_boards(directory)
        provisioned = load_datasources(provisioning)
        loaded = _schemas_from(schemas)
        client = _client(influx_url, db, no_queries)
    except CampusError as exc:
        raise click.ClickException(str(exc)) from None
    now = datetime.now(UTC)
    runner = Runner(client, provisioned, max_points, _chosen(chosen)) if client else None
    runs = []
    try:
        for path, board in boards:
            run = check_board(
                path,
                board,
                provisioned=provisioned,
                schemas=loaded,
                runner=runner,
                time_from=time_from,
                time_to=time_to,
                now=now,
            )
            runs.append(run)
            if not as_json:
                for outcome in run.outcomes:
                    click.echo(outcome.line())
    finally:
        if client is not None:
            client.close()
    if preview_dir is not None:
        from dashboards.preview import render_board

        preview_dir.mkdir(parents=True, exist_ok=True)
        for run in runs:
            render_board(run, preview_dir / f"{run.uid}.png")
    _report(runs, as_json, preview_dir, queried=not no_queries)


def _chosen(pairs: tuple[str, ...]) -> dict[str, list[str]]:
    """``--var name=value`` options gathered by name."""
    out: dict[str, list[str]] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{pair!r}: use NAME=VALUE", param_hint="--var")
        out.setdefault(name.strip(), []).append(value)
    return out


def _report(runs: list[BoardRun], as_json: bool, preview_dir: Path | None, queried: bool) -> None:
    """The summary (or the whole JSON document); exit 1 on any error or empty panel."""
    counts = summary(runs)
    if as_json:
        doc = {
            "boards": [
                {
                    "uid": r.uid,
                    "title": r.board.get("title"),
                    "from_ms": r.from_ms,
                    "to_ms": r.to_ms,
                    "outcomes": [asdict(o) for o in r.outcomes],
                }
                for r in runs
            ],
            "summary": {**counts, "queries": queried},
            "preview": str(preview_dir) if preview_dir else None,
        }
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
    else:
        head = f"{counts['boards']} boards, {counts['panels']} panels: "
        if queried:
            line = f"{head}{counts['ok']} ok, {counts['empty']} empty, {counts['errors']} errors"
        else:
            line = f"{head}static checks only (--no-queries), {counts['errors']} errors"
        if preview_dir:
            line += f"; previews in {preview_dir}"
        click.echo(line)
    if counts["empty"] or counts["errors"]:
        sys.exit(1)
