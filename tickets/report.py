"""Assessment reports for the periodic review of repair teams, technicians and
contractors: per week or month, the tickets each handled, the time to
acknowledge and to resolve (median and 90th percentile), how many met their
SLA deadlines, and how many had to be reopened.

A ticket counts for the period it was opened in (campus time) and for whoever
it was last assigned to: its technician (and that technician's team) or its
contractor; tickets never assigned count for "unassigned". A deadline is met
when the step happened by it; a ticket still waiting past its deadline has
missed it. ``write_report`` writes Markdown, HTML with charts, and CSV.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import select

from tickets.db import Store
from tickets.models import Contractor, Technician, Ticket

UNASSIGNED = "unassigned"
COLUMNS = [
    "tickets",
    "ack_median_min",
    "ack_p90_min",
    "resolve_median_h",
    "resolve_p90_h",
    "ack_sla_pct",
    "resolve_sla_pct",
    "reopen_pct",
]


@dataclass(frozen=True)
class Report:
    """The tables of one report: one per grouping (team, technician, contractor)."""

    period: str  # "week" or "month"
    start: datetime
    end: datetime
    tables: dict[str, pd.DataFrame]


def ticket_frame(store: Store, start: datetime, end: datetime, now: datetime) -> pd.DataFrame:
    """One row per ticket opened in [start, end): times, deadlines met, who had it."""
    with store.session() as s:
        techs = {t.id: (t.name, t.team_id) for t in s.scalars(select(Technician))}
        firms = {c.id: c.name for c in s.scalars(select(Contractor))}
        rows = []
        for t in s.scalars(select(Ticket).where(Ticket.opened_at >= start, Ticket.opened_at < end)):
            tech = techs.get(t.technician_id or "")
            rows.append(
                {
                    "id": t.id,
                    "opened_at": t.opened_at,
                    "severity": t.severity,
                    "trade": t.trade,
                    "technician": t.technician_id or UNASSIGNED,
                    "technician_name": tech[0] if tech else "",
                    "team": (tech[1] if tech and tech[1] else UNASSIGNED),
                    "contractor": t.contractor_id or UNASSIGNED,
                    "contractor_name": firms.get(t.contractor_id or "", ""),
                    "ack_min": _minutes(t.opened_at, t.acknowledged_at),
                    "resolve_h": _minutes(t.opened_at, t.resolved_at or t.closed_at) / 60,
                    "ack_met": _met(t.acknowledged_at, t.ack_due, now),
                    "resolve_met": _met(t.resolved_at or t.closed_at, t.resolve_due, now),
                    "reopened": t.reopen_count > 0,
                }
            )
    return pd.DataFrame(rows)


def _minutes(start: datetime, end: datetime | None) -> float:
    return float("nan") if end is None else (end - start).total_seconds() / 60


def _met(done: datetime | None, due: datetime | None, now: datetime) -> float:
    """1 met, 0 missed, NaN not yet decided (no deadline, or still within it)."""
    if due is None:
        return float("nan")
    if done is not None:
        return 1.0 if done <= due else 0.0
    return 0.0 if now > due else float("nan")


def assess(frame: pd.DataFrame, by: str, period: str, tz: str) -> pd.DataFrame:
    """The figures per ``by`` (team, technician, contractor) and period."""
    if frame.empty:
        return pd.DataFrame(columns=["period", by, *COLUMNS])
    local = frame["opened_at"].map(lambda t: t.astimezone(ZoneInfo(tz)).replace(tzinfo=None))
    freq = "W-SUN" if period == "week" else "M"  # weeks run Monday to Sunday
    starts = local.dt.to_period(freq).dt.start_time.dt.date.astype(str)
    grouped = frame.assign(period=starts).groupby(["period", by], sort=True)
    out = grouped.agg(
        tickets=("id", "count"),
        ack_median_min=("ack_min", "median"),
        ack_p90_min=("ack_min", lambda x: x.quantile(0.9)),
        resolve_median_h=("resolve_h", "median"),
        resolve_p90_h=("resolve_h", lambda x: x.quantile(0.9)),
        ack_sla_pct=("ack_met", lambda x: 100 * x.mean()),
        resolve_sla_pct=("resolve_met", lambda x: 100 * x.mean()),
        reopen_pct=("reopened", lambda x: 100 * x.mean()),
    )
    return out.reset_index().round(1)


def build_report(
    store: Store, start: datetime, end: datetime, now: datetime, period: str, tz: str
) -> Report:
    """Every table of the report for tickets opened in [start, end)."""
    if period not in ("week", "month"):
        raise ValueError(f"period must be week or month, not {period!r}")
    frame = ticket_frame(store, start, end, now)
    tables = {by: assess(frame, by, period, tz) for by in ("team", "technician", "contractor")}
    return Report(period, start, end, tables)


def write_report(report: Report, folder: Path) -> list[Path]:
    """``report.md``, ``report.html`` (with a chart per grouping) and one CSV per
    table in ``folder``; returns the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    span = f"{report.start.date()} to {report.end.date()}, by {report.period}"
    md = [f"# Repair assessment: {span}", ""]
    html = [
        "<!doctype html><meta charset='utf-8'>",
        f"<title>Repair assessment: {span}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}</style>",
        f"<h1>Repair assessment: {span}</h1>",
        "<p>Times from opening; SLA = share of tickets that met the acknowledge "
        "and resolve deadlines of their severity; reopened = share reopened.</p>",
    ]
    for by, table in report.tables.items():
        csv = folder / f"report-{by}.csv"
        table.to_csv(csv, index=False)
        written.append(csv)
        md += [f"## By {by}", "", _markdown(table), ""]
        html += [f"<h2>By {by}</h2>", table.to_html(index=False, na_rep="")]
        if not table.empty:
            html.append(f"<img alt='SLA by {by}' src='data:image/png;base64,{_chart(table, by)}'>")
    (folder / "report.md").write_text("\n".join(md), encoding="utf-8")
    (folder / "report.html").write_text("\n".join(html), encoding="utf-8")
    return [folder / "report.md", folder / "report.html", *written]


def _markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return "No tickets."
    head = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "---|" * len(table.columns)
    body = [
        "| " + " | ".join("" if pd.isna(v) else str(v) for v in row) + " |"
        for row in table.itertuples(index=False)
    ]
    return "\n".join([head, rule, *body])


def _chart(table: pd.DataFrame, by: str) -> str:
    """A bar chart of SLA compliance per group over the whole span, as base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    overall = table.groupby(by)[["ack_sla_pct", "resolve_sla_pct"]].mean()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(overall) + 2), 3.2))
    overall.plot.bar(ax=ax, ylim=(0, 100), rot=30)
    ax.set_ylabel("% met")
    ax.set_title(f"SLA met, by {by}")
    ax.legend(["acknowledge", "resolve"], loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()
