"""Draw a checked board to a PNG with matplotlib, so a reviewer can see it without Grafana.

Panels sit where the board's ``gridPos`` puts them (24 columns, Grafana's
30-pixel grid rows) and are drawn from the very query results the check got:
time series as lines, stat and gauge as a big number, table as a table, bar
gauge and bar chart as bars, heatmap and state timeline as an image, geomap as
a scatter of longitude and latitude coloured by value, pie chart as a pie.
The Agg backend is used, so nothing ever opens a window or blocks.
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from dashboards.check import BoardRun, PanelData

Json = dict[str, Any]

_COLUMNS = 24
_WIDTH_IN = 16.0
_ROW_IN = 0.32  # one grid unit of height (Grafana: 30 px)
_HEADER_IN = 0.6
_DPI = 60
_DAY_MS = 86_400_000
_TABLE_ROWS = 12
_TABLE_COLUMNS = 8
_MAX_POINTS = 300  # per line: about one per pixel of a half-width panel
_MAX_BARS = 120  # more buckets than this are drawn as lines: bars that thin read the same
_COLOURS = 64  # the PNG's palette: boards are flat colours, so this keeps files small
_PALETTE = ["#73bf69", "#f2cc0c", "#5794f2", "#ff780a", "#f2495c", "#b877d9", "#8ab8ff", "#ffb357"]
_TEXT = "#d8d9da"
#: Grafana unit ids and what the preview writes after a number.
_UNITS = {
    "kwatt": "kW",
    "kwatth": "kWh",
    "percent": "%",
    "celsius": "°C",
    "flowlpm": "L/min",
    "m3": "m³",
    "s": "s",
    "short": "",
    "none": "",
    "ppm": "ppm",
    "humidity": "%",
}
_PANEL_BG = "#181b1f"
_BOARD_BG = "#111217"


# ------------------------------------------------------------------ records


class View(NamedTuple):
    """What every panel of a board shares: its time zone and time range."""

    zone: tzinfo
    from_ms: int
    to_ms: int


class Frame(NamedTuple):
    """One returned series: its legend label, tags, columns and rows."""

    label: str
    tags: dict[str, str]
    columns: list[str]
    rows: list[list[Any]]
    alias: str
    name: str


def frames(data: PanelData) -> list[Frame]:
    """Every returned series, labelled by its target's alias or else its tags or name."""
    out = []
    for i, series_list in enumerate(data.series):
        alias = data.aliases[i] if i < len(data.aliases) else ""
        for s in series_list:
            tags = {k: str(v) for k, v in (s.get("tags") or {}).items()}
            name = str(s.get("name", ""))
            cols = list(s.get("columns") or [])
            label = ", ".join(tags.values()) or name
            if alias:
                label = _alias(alias, name, tags, cols[1] if len(cols) > 1 else "")
            out.append(Frame(label, tags, cols, list(s.get("values") or []), alias, name))
    return out


def _alias(alias: str, name: str, tags: dict[str, str], column: str) -> str:
    """Grafana's InfluxDB alias patterns: ``$tag_x``/``[[tag_x]]``, ``$col``, ``$m``, ``$0``."""

    def one(m: re.Match[str]) -> str:
        group = m.group(1) or m.group(2)
        if group in ("m", "measurement"):
            return name
        if group == "col":
            return column
        if group.startswith("tag_"):
            return tags.get(group[4:], m.group(0))
        if group.isdigit():
            parts = name.split(".")
            return parts[int(group)] if int(group) < len(parts) else m.group(0)
        return m.group(0)

    return re.sub(r"\$(\w+)|\[\[([\s\S]+?)\]\]", one, alias)


def lines(data: PanelData) -> list[tuple[str, list[int], list[float]]]:
    """One (label, epoch ms, values) per numeric column of every series with a time column."""
    out = []
    for f in frames(data):
        cols, rows = f.columns, f.rows
        if not cols or cols[0] != "time":
            continue
        for i, col in enumerate(cols[1:], start=1):
            pts = [(r[0], r[i]) for r in rows if isinstance(r[i], int | float) and r[0] is not None]
            if not pts:
                continue
            if f.alias:
                name = _alias(f.alias, f.name, f.tags, col)
            else:
                name = f.label if len(cols) == 2 else f"{f.label} {col}".strip()
            out.append((name or col, [int(t) for t, _ in pts], [float(v) for _, v in pts]))
    return out


def last_values(data: PanelData) -> list[tuple[str, float]]:
    """The last non-null numeric value of each line (what stat and bar gauge show)."""
    return [(name, values[-1]) for name, _, values in lines(data)] or [
        (f.label or col, float(r[i]))
        for f in frames(data)
        for r in f.rows[-1:]
        for i, col in enumerate(f.columns)
        if isinstance(r[i], int | float) and col != "time"
    ]


# ------------------------------------------------------------------ drawing


def render_board(run: BoardRun, out: Path) -> None:
    """Write ``out``: the board title, its time range and every panel at its grid place."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in run.panels if p.panel.get("gridPos")]
    rows_used = max((_grid(p.panel)[1] + _grid(p.panel)[3] for p in panels), default=8)
    height = _HEADER_IN + rows_used * _ROW_IN
    fig = plt.figure(figsize=(_WIDTH_IN, height), dpi=_DPI, facecolor=_BOARD_BG)
    zone = _zone(run.board)
    span = f"{_stamp(run.from_ms, zone)} to {_stamp(run.to_ms, zone)} ({zone})"
    fig.text(
        0.01,
        1 - 0.3 / height,
        run.titles.get("board") or str(run.board.get("title", run.uid)),
        color=_TEXT,
        fontsize=16,
        weight="bold",
        va="center",
    )
    fig.text(0.99, 1 - 0.3 / height, span, color=_TEXT, fontsize=10, ha="right", va="center")
    for row in _rows(run.board):
        y = _grid(row)[1]
        fig.text(
            0.01,
            1 - (_HEADER_IN + (y + 0.5) * _ROW_IN) / height,
            run.titles.get(str(row.get("id"))) or str(row.get("title", "")),
            color=_TEXT,
            fontsize=12,
            weight="bold",
            va="center",
        )
    for data in panels:
        x, y, w, h = _grid(data.panel)
        ax = fig.add_axes(_box(x, y, w, h, height))
        _draw_panel(ax, data, View(zone, run.from_ms, run.to_ms))
    _save(fig, out)
    plt.close(fig)


def _save(fig: Any, out: Path) -> None:
    """Write the figure as a palette PNG (a few tens of kB instead of hundreds)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, dpi=_DPI, facecolor=_BOARD_BG, format="png")
    buf.seek(0)
    with Image.open(buf) as image:
        image.convert("RGB").quantize(_COLOURS, Image.Quantize.FASTOCTREE).save(
            out, format="PNG", optimize=True
        )


def _box(x: int, y: int, w: int, h: int, height: float) -> tuple[float, float, float, float]:
    """The axes of a panel in figure fractions, leaving room for its title and tick labels."""
    left_in = x / _COLUMNS * _WIDTH_IN + 0.45
    width_in = max(w / _COLUMNS * _WIDTH_IN - 0.6, 0.2)
    bottom_in = _HEADER_IN + (y + h) * _ROW_IN - 0.3
    height_in = max(h * _ROW_IN - 0.62, 0.1)
    return (left_in / _WIDTH_IN, 1 - bottom_in / height, width_in / _WIDTH_IN, height_in / height)


def _zone(board: Json) -> tzinfo:
    """The board's time zone when it names one (``Asia/Shanghai``), else UTC."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    name = str(board.get("timezone") or "")
    if "/" not in name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def _stamp(ms: int, zone: tzinfo) -> str:
    return datetime.fromtimestamp(ms / 1000, zone).strftime("%Y-%m-%d %H:%M")


def _clock(ms: int, zone: tzinfo) -> str:
    return datetime.fromtimestamp(ms / 1000, zone).strftime("%H:%M")


def _grid(panel: Json) -> tuple[int, int, int, int]:
    g = panel.get("gridPos") or {}
    return int(g.get("x", 0)), int(g.get("y", 0)), int(g.get("w", 12)), int(g.get("h", 8))


def _rows(board: Json) -> list[Json]:
    return [p for p in board.get("panels") or [] if p.get("type") == "row" and p.get("gridPos")]


def _draw_panel(ax: Axes, data: PanelData, view: View) -> None:
    ax.set_facecolor(_PANEL_BG)
    for spine in ax.spines.values():
        spine.set_color("#2c3235")
    ax.tick_params(colors=_TEXT, labelsize=7)
    ax.set_title(
        data.title or str(data.panel.get("title", "")), color=_TEXT, fontsize=9, loc="left"
    )
    kind = str(data.panel.get("type", ""))
    drawer = _DRAWERS.get(kind, _draw_timeseries)
    if not frames(data) and kind != "text":
        no_value = _no_value(data)
        _message(ax, no_value or "no data", size=22 if no_value else 10)
        return
    drawer(ax, data, view)


def _message(ax: Axes, text: str, size: int = 10) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(
        0.5,
        0.5,
        text,
        color=_TEXT,
        fontsize=size,
        ha="center",
        va="center",
        transform=ax.transAxes,
        wrap=True,
    )


def _no_value(data: PanelData) -> str | None:
    value = ((data.panel.get("fieldConfig") or {}).get("defaults") or {}).get("noValue")
    return None if value is None else str(value)


def _unit(data: PanelData) -> str:
    """The panel's Grafana unit id (``kwatt``, ``s``, ...)."""
    return str(((data.panel.get("fieldConfig") or {}).get("defaults") or {}).get("unit") or "")


def _draw_timeseries(ax: Axes, data: PanelData, view: View) -> None:
    import matplotlib.dates as mdates
    from matplotlib.ticker import MaxNLocator

    series = lines(data)
    if not series:
        _draw_table(ax, data, view)
        return
    custom = ((data.panel.get("fieldConfig") or {}).get("defaults") or {}).get("custom") or {}
    buckets = max(len(times) for _, times, _ in series)
    if custom.get("drawStyle") == "bars" and buckets <= _MAX_BARS:
        _bars_in_time(ax, series, (custom.get("stacking") or {}).get("mode") == "normal")
    else:
        for i, (name, times, values) in enumerate(series[:24]):
            every = max(1, len(times) // _MAX_POINTS)
            x = [t / _DAY_MS for t in times[::every]]  # matplotlib's dates: days since 1970
            ax.plot(
                x,
                values[::every],
                color=_PALETTE[i % len(_PALETTE)],
                linewidth=1.0,
                label=name,
                marker="o" if len(x) < 4 else None,
                markersize=3,
            )
    ax.set_xlim(view.from_ms / _DAY_MS, view.to_ms / _DAY_MS)
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=6, tz=view.zone))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M", tz=view.zone))
    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.grid(color="#2c3235", linewidth=0.5)
    if 1 < len(series) <= 8:
        ax.legend(
            fontsize=6,
            loc="upper left",
            framealpha=0.3,
            labelcolor=_TEXT,
            facecolor=_PANEL_BG,
            edgecolor="none",
        )


def _bars_in_time(ax: Axes, series: list[tuple[str, list[int], list[float]]], stack: bool) -> None:
    """Bars per time bucket (Grafana's ``drawStyle: bars``), side by side or stacked."""
    times = sorted({t for _, ts, _ in series for t in ts})
    gaps = [b - a for a, b in itertools.pairwise(times)]
    width = (min(gaps) if gaps else _DAY_MS) / _DAY_MS * 0.8
    bottom = dict.fromkeys(times, 0.0)
    shown = series[:12]
    for i, (name, ts, values) in enumerate(shown):
        x = [t / _DAY_MS for t in ts]
        if stack:
            base = [bottom[t] for t in ts]
            ax.bar(
                x,
                values,
                width,
                bottom=base,
                color=_PALETTE[i % len(_PALETTE)],
                label=name,
                align="edge",
            )
            for t, v in zip(ts, values, strict=True):
                bottom[t] += v
        else:
            step = width / len(shown)
            ax.bar(
                [v + i * step for v in x],
                values,
                step,
                color=_PALETTE[i % len(_PALETTE)],
                label=name,
                align="edge",
            )


def _draw_stat(ax: Axes, data: PanelData, view: View) -> None:
    values = last_values(data)[:6]
    if not values:
        _message(ax, _no_value(data) or "no numbers", size=22 if _no_value(data) else 10)
        return
    unit = _unit(data)
    ax.set_xticks([])
    ax.set_yticks([])
    n = len(values)
    for i, (name, value) in enumerate(values):
        x = (i + 0.5) / n
        ax.text(
            x,
            0.5,
            _with_unit(value, unit),
            color=_PALETTE[i % len(_PALETTE)],
            fontsize=22 if n == 1 else 14,
            ha="center",
            va="center",
            weight="bold",
            transform=ax.transAxes,
        )
        if n > 1:
            ax.text(
                x, 0.15, name[:24], color=_TEXT, fontsize=7, ha="center", transform=ax.transAxes
            )


def _with_unit(value: float, unit: str) -> str:
    """``2,151 kW``, ``30 min``: a stat's value as Grafana would print it, roughly."""
    if unit == "s":
        if abs(value) >= 3600:
            return f"{value / 3600:.1f} h"
        if abs(value) >= 60:
            return f"{value / 60:.0f} min"
    return f"{_number(value)} {_UNITS.get(unit, unit)}".strip()


def _number(value: float) -> str:
    """A stat's number as Grafana shows it: grouped thousands, a few significant digits."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _draw_bars(ax: Axes, data: PanelData, view: View) -> None:
    values = last_values(data)[:20]
    if not values:
        _message(ax, "no numbers")
        return
    names = [n[:24] for n, _ in values]
    ax.barh(names, [v for _, v in values], color=_PALETTE[2])
    ax.invert_yaxis()
    ax.grid(axis="x", color="#2c3235", linewidth=0.5)


def _draw_table(ax: Axes, data: PanelData, view: View) -> None:
    """The first rows and columns of the panel's table."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.axis("off")
    header, body = _table_rows(data)
    if not body:
        _message(ax, "no rows")
        return
    body = [r[:_TABLE_COLUMNS] for r in body[:_TABLE_ROWS]]
    header = header[:_TABLE_COLUMNS]
    table = ax.table(cellText=body, colLabels=header, loc="upper center", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    for cell in table.get_celld().values():
        cell.set_facecolor(_PANEL_BG)
        cell.set_edgecolor("#2c3235")
        cell.get_text().set_color(_TEXT)


def _table_rows(data: PanelData) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a table: tags become columns, as in Grafana's table format.

    With a ``joinByField`` transformation the frames are joined on that field
    (one row per building, say), as Grafana shows them."""
    join = next(
        (
            str((t.get("options") or {}).get("byField"))
            for t in data.panel.get("transformations") or []
            if t.get("id") == "joinByField"
        ),
        None,
    )
    header: list[str] = []
    merged: dict[str, dict[str, str]] = {}
    for i, f in enumerate(frames(data)):
        for j, r in enumerate(f.rows):
            row = dict(f.tags)
            row.update({c: _cell(v) for c, v in zip(f.columns, r, strict=False) if c != "time"})
            header += [k for k in row if k not in header]
            if join is not None and join in row:
                merged.setdefault(row[join], {}).update(row)
            else:
                merged[f"{i}/{j}"] = row
    body = [[row.get(k, "") for k in header] for row in merged.values()]
    return header, body


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}"
    return "" if value is None else str(value)[:24]


def _draw_image(ax: Axes, data: PanelData, view: View) -> None:
    import numpy as np

    series = lines(data)
    if not series:
        _draw_state_strings(ax, data, view)
        return
    series = series[:80]
    times = sorted({t for _, ts, _ in series for t in ts})
    index = {t: i for i, t in enumerate(times)}
    grid = np.full((len(series), len(times)), np.nan)
    for row, (_, ts, values) in enumerate(series):
        for t, v in zip(ts, values, strict=True):
            grid[row, index[t]] = v
    ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="viridis")
    _row_labels(ax, [n for n, _, _ in series])
    step = max(1, len(times) // 6)
    ax.set_xticks(range(0, len(times), step), [_clock(t, view.zone) for t in times[::step]])


def _row_labels(ax: Axes, names: list[str]) -> None:
    """Label the rows of an image, at most about 16 of them so they stay readable."""
    every = max(1, -(-len(names) // 16))
    ax.set_yticks(range(0, len(names), every), [n[:18] for n in names[::every]], fontsize=6)


def _draw_state_strings(ax: Axes, data: PanelData, view: View) -> None:
    """A state timeline of string values: each distinct state gets its own colour."""
    import numpy as np

    rows = [(f.label, [r[1] for r in f.rows]) for f in frames(data) if len(f.columns) > 1]
    states = sorted({str(v) for _, vs in rows for v in vs if v is not None})
    if not rows or not states:
        _draw_table(ax, data, view)
        return
    code = {s: i for i, s in enumerate(states)}
    width = max(len(vs) for _, vs in rows)
    grid = np.full((len(rows), width), np.nan)
    for i, (_, vs) in enumerate(rows):
        for j, v in enumerate(vs):
            if v is not None:
                grid[i, j] = code[str(v)]
    ax.imshow(grid, aspect="auto", interpolation="nearest", cmap="tab10", vmin=0, vmax=9)
    _row_labels(ax, [n for n, _ in rows])
    ax.set_xticks([])


def _draw_geomap(ax: Axes, data: PanelData, view: View) -> None:
    points: dict[str, dict[str, float]] = {}
    for f in frames(data):
        for r in f.rows[-1:]:
            entry = points.setdefault(f.tags.get("building") or f.label, {})
            for c, v in zip(f.columns, r, strict=False):
                if isinstance(v, int | float) and c != "time":
                    entry[c] = float(v)
    placed = [(name, p) for name, p in points.items() if "lat" in p and "lon" in p]
    if not placed:
        _draw_table(ax, data, view)
        return
    colour = [sum(v for k, v in p.items() if k not in ("lat", "lon")) for _, p in placed]
    ax.scatter(
        [p["lon"] for _, p in placed],
        [p["lat"] for _, p in placed],
        c=colour,
        cmap="RdYlGn_r",
        s=80,
        edgecolors="white",
        linewidths=0.5,
    )
    for name, p in placed:
        ax.annotate(
            name[:14],
            (p["lon"], p["lat"]),
            color=_TEXT,
            fontsize=6,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set_aspect("equal", adjustable="datalim")
    ax.set_xticks([])
    ax.set_yticks([])


def _draw_pie(ax: Axes, data: PanelData, view: View) -> None:
    values = [(n, v) for n, v in last_values(data) if v > 0][:10]
    if not values:
        _message(ax, "no positive values")
        return
    ax.pie(
        [v for _, v in values],
        labels=[n[:16] for n, _ in values],
        colors=_PALETTE,
        textprops={"color": _TEXT, "fontsize": 6},
    )


def _draw_text(ax: Axes, data: PanelData, view: View) -> None:
    content = str((data.panel.get("options") or {}).get("content", ""))
    _message(ax, content[:300], size=8)


_DRAWERS = {
    "timeseries": _draw_timeseries,
    "graph": _draw_timeseries,
    "trend": _draw_timeseries,
    "stat": _draw_stat,
    "gauge": _draw_stat,
    "singlestat": _draw_stat,
    "bargauge": _draw_bars,
    "barchart": _draw_bars,
    "table": _draw_table,
    "heatmap": _draw_image,
    "state-timeline": _draw_image,
    "statetimeline": _draw_image,
    "status-history": _draw_image,
    "geomap": _draw_geomap,
    "piechart": _draw_pie,
    "text": _draw_text,
}
