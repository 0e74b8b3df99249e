"""Pieces every campus board shares: the context, variables, annotations, panels.

A board module builds one dashboard from a :class:`Context` (the campus
registry and the ticket SLAs) with the helpers below, so that every board has
the same datasource, variables, ticket annotations, links and defaults.
"""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass, field

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from campus.influxql import quote_ident, quote_literal
from campus.registry import Campus, Device
from campus.rollups import RP_VARIABLE, rp_variable_query
from dashboards.influxql import InfluxQL, InfluxQLAnnotation, datasource_ref

#: Tag shared by every board, used by the "Campus boards" link menu.
BOARD_TAG = "campus"

LIVE_REFRESH = "30s"
SEVERITIES = ("P1", "P2", "P3", "P4")
#: Grafana colours of the ticket severities (P1 most urgent).
SEVERITY_COLOURS = {"P1": "red", "P2": "orange", "P3": "yellow", "P4": "blue"}

_REGEX_SPECIALS = set("\\.^$|?*+()[]{}/")


def regex_of(values: typing.Iterable[str]) -> str:
    """An anchored InfluxQL regex literal matching exactly ``values``: ``/^(a|b)$/``."""
    escaped = ["".join("\\" + c if c in _REGEX_SPECIALS else c for c in v) for v in values]
    return "/^(" + "|".join(sorted(escaped)) + ")$/"


def measurement(kind: str, rp: bool = False) -> str:
    """``"power"``, or ``"$rp"."power"`` for panels that read the rollups on long ranges."""
    name = quote_ident(kind)
    return f'"${RP_VARIABLE}".{name}' if rp else name


def tag_is(tag: str, value: str) -> str:
    """``"tag" = 'value'``."""
    return f"{quote_ident(tag)} = {quote_literal(value)}"


def tag_matches_var(tag: str, variable: str) -> str:
    """``"tag" =~ /^$variable$/``: Grafana expands a multi-value variable into ``(a|b)``."""
    return f"{quote_ident(tag)} =~ /^${variable}$/"


@dataclass(frozen=True)
class Context:
    """What the boards are built from: the campus registry and the SLA of each severity."""

    campus: Campus
    #: severity -> (seconds to acknowledge, seconds to resolve)
    sla: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def tz(self) -> str:
        """The campus time zone (IANA name), for ``tz('...')`` and the boards' clocks."""
        return self.campus.timezone

    @property
    def tz_clause(self) -> str:
        """``tz('Asia/Shanghai')``: days and nights of the campus, not of UTC."""
        return f"tz({quote_literal(self.tz)})"

    def meters(self, kind: str) -> list[Device]:
        """Devices of ``kind`` that carry a counter (meters), sorted by id."""
        return sorted(
            (
                d
                for d in self.campus
                if d.kind == kind and any(m.counter for m in d.metrics.values())
            ),
            key=lambda d: d.id,
        )

    def children_of(self, meter: str) -> list[Device]:
        """Sub-meters of ``meter``, sorted by id."""
        return sorted(self.campus.children.get(meter, []), key=lambda d: d.id)

    def campus_meters(self, kind: str) -> list[str]:
        """Top meters of the whole campus: no parent, sub-meters in other buildings."""
        out = []
        for d in self.meters(kind):
            subs = self.children_of(d.id)
            if d.parent is None and any(c.building != d.building for c in subs):
                out.append(d.id)
        return out

    def building_meters(self, kind: str) -> list[str]:
        """Each building's main meter(s): the meters just below the campus meters
        (or without a parent), so summing them never counts a sub-meter twice."""
        top = set(self.campus_meters(kind))
        return [
            d.id
            for d in self.meters(kind)
            if d.id not in top and (d.parent is None or d.parent in top)
        ]

    def total_meters(self, kind: str) -> list[str]:
        """The meters whose sum is the campus total: the campus meters, else the building mains."""
        return self.campus_meters(kind) or self.building_meters(kind)

    def parent_meters(self, kind: str) -> list[str]:
        """Meters with sub-meters, whose balance (parent minus children) is worth watching."""
        return [d.id for d in self.meters(kind) if self.children_of(d.id)]


# ---------------------------------------------------------------- variables


def building_variable(source: str = '"meta"."buildings"', multi: bool = False) -> db.QueryVariable:
    """``$building``: the buildings of ``source`` (a FROM clause; default every building)."""
    var = (
        db.QueryVariable("building")
        .label("Building")
        .datasource(datasource_ref())
        .query(f"SHOW TAG VALUES FROM {source} WITH KEY = {quote_ident('building')}")
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )
    if multi:
        var = var.multi(True).include_all(True)
    return var


def kind_variable(kinds: typing.Sequence[str]) -> db.CustomVariable:
    """``$kind``: the device kinds of the registry (multi-value)."""
    return (
        db.CustomVariable("kind")
        .label("Kind")
        .values(",".join(kinds))
        .multi(True)
        .include_all(True)
        .current(dm.VariableOption(text="All", value="$__all", selected=True))
    )


def device_variable(measurements: str = "/^$kind$/") -> db.QueryVariable:
    """``$device``: the devices of ``$building`` among ``measurements`` (multi-value)."""
    return (
        db.QueryVariable("device")
        .label("Device")
        .datasource(datasource_ref())
        .query(
            f"SHOW TAG VALUES FROM {measurements} WITH KEY = {quote_ident('device')}"
            f" WHERE {tag_matches_var('building', 'building')}"
        )
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
    )


def rp_variable() -> db.QueryVariable:
    """Hidden ``$rp``: the retention policy (raw or a rollup) the board's time range reads,
    chosen by ``campus.rollups.rp_variable_query()`` on every time-range change."""
    return (
        db.QueryVariable(RP_VARIABLE)
        .label("Retention policy")
        .hide(dm.VariableHide.HIDE_VARIABLE)
        .datasource(datasource_ref())
        .query(rp_variable_query())
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
    )


# -------------------------------------------------------------- annotations


def ticket_annotations(by_building: bool) -> list[db.AnnotationQuery]:
    """Tickets opened (red) and resolved (green), of ``$building`` when the board has one."""
    out = []
    for event, colour in (("opened", "red"), ("resolved", "green")):
        where = [tag_is("event", event), "$timeFilter"]
        if by_building:
            where.insert(1, tag_matches_var("building", "building"))
        query = (
            'SELECT "title", "text", "severity", "building", "ticket" FROM "tickets"'
            f" WHERE {' AND '.join(where)}"
        )
        out.append(
            db.AnnotationQuery()
            .name(f"Tickets {event}")
            .datasource(datasource_ref())
            .enable(True)
            .icon_color(colour)
            .target(InfluxQLAnnotation(query, "title", "severity,building,ticket"))
        )
    return out


# ------------------------------------------------------------------- boards


class Board:
    """A dashboard under construction: numbers its panels and lays them out."""

    def __init__(
        self,
        uid: str,
        title: str,
        description: str,
        ctx: Context,
        since: str = "now-24h",
        refresh: str = LIVE_REFRESH,
    ) -> None:
        self.ctx = ctx
        self._next_id = 1
        self.builder = (
            db.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags([BOARD_TAG])
            .timezone(ctx.tz)
            .editable()
            .tooltip(dm.DashboardCursorSync.CROSSHAIR)
            .time(since, "now")
            .refresh(refresh)
            .timepicker(db.TimePicker().refresh_intervals(["30s", "1m", "5m", "15m", "1h"]))
            .link(
                db.DashboardLink("Campus boards")
                .type(dm.DashboardLinkType.DASHBOARDS)
                .tags([BOARD_TAG])
                .as_dropdown(True)
                .include_vars(False)
                .keep_time(True)
                .target_blank(False)
                .icon("external link")
                .tooltip("Other campus boards")
            )
        )

    def variables(self, *variables: cogbuilder.Builder[dm.VariableModel]) -> Board:
        """Add template variables, in the order shown."""
        for v in variables:
            self.builder.with_variable(v)
        return self

    def annotations(self, by_building: bool) -> Board:
        """Add the ticket annotations."""
        for a in ticket_annotations(by_building):
            self.builder.annotation(a)
        return self

    def row(self, title: str, repeat: str | None = None) -> Board:
        """Start a new row of panels (repeated once per selected value of ``$repeat``)."""
        row = db.Row(title).id(self._take_id())
        self.builder.with_row(row.repeat(repeat) if repeat else row)
        return self

    def add(self, *panels: cogbuilder.Builder[dm.Panel]) -> Board:
        """Add panels left to right, giving each the next free id."""
        for p in panels:
            typing.cast(typing.Any, p).id(self._take_id())
            self.builder.with_panel(p)
        return self

    def _take_id(self) -> int:
        taken = self._next_id
        self._next_id += 1
        return taken

    def build(self) -> dict[str, typing.Any]:
        """The dashboard as the plain JSON model Grafana stores."""
        model: dict[str, typing.Any] = json.loads(json.dumps(self.builder.build(), cls=JSONEncoder))
        return model


# ------------------------------------------------------------------- panels


def thresholds(base: str, *steps: tuple[float, str]) -> db.ThresholdsConfig:
    """Absolute thresholds: ``base`` colour below the first step."""
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps(
            [dm.Threshold(value=None, color=base)]
            + [dm.Threshold(value=v, color=c) for v, c in steps]
        )
    )


def no_legend() -> cb.VizLegendOptions:
    """No legend (rows named on the axis say what each is)."""
    return (
        cb.VizLegendOptions()
        .show_legend(False)
        .display_mode(cm.LegendDisplayMode.LIST)
        .placement(cm.LegendPlacement.BOTTOM)
        .calcs([])
    )


def single_tooltip() -> cb.VizTooltipOptions:
    """A tooltip for the one series under the pointer."""
    return cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.SINGLE).sort(cm.SortOrder.NONE)


def legend_table(*calcs: str) -> cb.VizLegendOptions:
    """A legend as a table to the right, with the given calculations (mean, max, ...)."""
    return (
        cb.VizLegendOptions()
        .display_mode(cm.LegendDisplayMode.TABLE)
        .placement(cm.LegendPlacement.RIGHT)
        .show_legend(True)
        .calcs(list(calcs))
    )


def dashboard_link(title: str, uid: str, var: str, field_expr: str) -> db.DashboardLink:
    """A data link to another campus board, carrying one variable and the time range."""
    return (
        db.DashboardLink(title)
        .type(dm.DashboardLinkType.LINK)
        .url(f"/d/{uid}?var-{var}={field_expr}&${{__url_time_range}}")
        .icon("dashboard")
        .tooltip(title)
        .tags([])
        .as_dropdown(False)
        .target_blank(False)
        .include_vars(False)
        .keep_time(False)
    )


def target(query: str, ref: str = "A", alias: str | None = None, table: bool = False) -> InfluxQL:
    """One raw InfluxQL target."""
    t = InfluxQL(query).ref_id(ref)
    if alias is not None:
        t = t.alias(alias)
    return t.table() if table else t


def by_interval(
    select: str, kind: str, where: typing.Sequence[str], by: str = "device", rp: bool = False
) -> str:
    """``SELECT ... WHERE ... AND $timeFilter GROUP BY time($__interval), "<by>" fill(none)``."""
    conds = " AND ".join([*where, "$timeFilter"])
    group = f"time($__interval), {quote_ident(by)}" if by else "time($__interval)"
    return f"SELECT {select} FROM {measurement(kind, rp)} WHERE {conds} GROUP BY {group} fill(none)"


def timeseries_panel(
    title: str,
    unit: str,
    targets: typing.Sequence[InfluxQL],
    description: str,
    w: int = 12,
    h: int = 8,
    bars: bool = False,
    stacked: bool = False,
) -> timeseries.Panel:
    """A time series chart with a table legend (mean, max, last)."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(datasource_ref())
        .unit(unit)
        .span(w)
        .height(h)
        .targets(list(targets))
        .legend(legend_table("mean", "max", "lastNotNull"))
        .tooltip(
            cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)
        )
        .line_width(1)
        .fill_opacity(10)
        .show_points(cm.VisibilityMode.NEVER)
        .span_nulls(False)
    )
    if bars:
        panel = panel.draw_style(cm.GraphDrawStyle.BARS).fill_opacity(80)
    if stacked:
        panel = panel.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
    return panel


def stat_panel(
    title: str,
    unit: str,
    targets: typing.Sequence[InfluxQL],
    description: str,
    steps: db.ThresholdsConfig | None = None,
    w: int = 4,
    h: int = 4,
    graph: bool = False,
    calc: str = "lastNotNull",
) -> stat.Panel:
    """One big number per series, coloured by its thresholds."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(datasource_ref())
        .unit(unit)
        .span(w)
        .height(h)
        .targets(list(targets))
        .thresholds(steps or thresholds("green"))
        .color_mode(cm.BigValueColorMode.BACKGROUND if steps else cm.BigValueColorMode.VALUE)
        .graph_mode(cm.BigValueGraphMode.AREA if graph else cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.AUTO)
        .justify_mode(cm.BigValueJustifyMode.AUTO)
        .orientation(cm.VizOrientation.AUTO)
        .reduce_options(cb.ReduceDataOptions().calcs([calc]).values(False))
        .no_value("0")
    )


def table_panel(
    title: str, targets: typing.Sequence[InfluxQL], description: str, w: int = 12, h: int = 8
) -> table.Panel:
    """A table of query results (targets in table format)."""
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(datasource_ref())
        .span(w)
        .height(h)
        .targets(list(targets))
        .show_header(True)
        .cell_height(cm.TableCellHeight.SM)
    )


def transform(id_val: str, options: dict[str, typing.Any]) -> dm.DataTransformerConfig:
    """A Grafana transformation step."""
    return dm.DataTransformerConfig(id_val=id_val, options=options)


def by_name(panel: typing.Any, names: str | list[str], **properties: typing.Any) -> typing.Any:
    """Override properties of the fields called ``names`` (``custom__lineStyle`` for
    ``custom.lineStyle``); the ``byNames`` matcher, whose options are an object."""
    listed = [names] if isinstance(names, str) else names
    matcher = dm.MatcherConfig(id_val="byNames", options={"mode": "include", "names": listed})
    props = [
        dm.DynamicConfigValue(id_val=k.replace("__", "."), value=v) for k, v in properties.items()
    ]
    return panel.with_override(matcher, props)


def severity_colours(panel: typing.Any) -> typing.Any:
    """Colour the series named P1..P4 in the severity colours."""
    for sev, colour in SEVERITY_COLOURS.items():
        panel = by_name(panel, sev, color={"mode": "fixed", "fixedColor": colour})
    return panel


def threshold_lines(panel: timeseries.Panel, steps: db.ThresholdsConfig) -> timeseries.Panel:
    """Draw ``steps`` as dashed lines across a time series chart."""
    return panel.thresholds(steps).thresholds_style(
        cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)
    )


def above(expr: str, limit: float) -> str:
    """1 where ``expr`` exceeds ``limit``, else 0, as InfluxQL arithmetic.

    InfluxQL has no comparison in SELECT, and a ``WHERE`` filter leaves a
    count of zero as no row at all. ``ceil((x - limit) / 1e12)`` is 1 for any
    excess under 10^12 and 0 otherwise, so ``sum()`` of it counts the cases
    and answers 0, not nothing, when there are none.
    """
    return f"ceil(({expr} - {limit}) / 1000000000000)"
