"""The evidence of a ticket as a PNG: the plot an anomaly alert saved (only
from under ``{var_dir}/anomaly``), else the device's last 24 hours from
InfluxDB. The technician page shows it; ``/api/tickets/{id}/evidence.png``
serves it."""

from __future__ import annotations

import io
import logging
import re
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi import Request
from sqlalchemy import select

from campus.errors import CampusError
from campus.influx import rows
from campus.influxql import quote_ident, quote_literal
from campus.registry import Campus
from tickets.models import AlertRecord, Ticket
from tickets.service import Tickets

log = logging.getLogger("campus.api")

PLOT_LINE = re.compile(r"Plot of the last day: (\S+)")
MAX_PLOT_BYTES = 2 * 1024 * 1024


def evidence_png(request: Request, ticket: Ticket) -> bytes | None:
    """The ticket's evidence plot, or None when there is none."""
    tz = ZoneInfo(request.app.state.campus.timezone)
    return _anomaly_plot(request, ticket) or _readings_plot(request, ticket, tz)


def has_evidence(ticket: Ticket) -> bool:
    """Whether :func:`evidence_png` may find a plot (without drawing it)."""
    return bool(ticket.device) or PLOT_LINE.search(ticket.description or "") is not None


def _anomaly_plot(request: Request, ticket: Ticket) -> bytes | None:
    """The plot an anomaly ticket names, if it is a PNG under ``{var_dir}/anomaly``."""
    found = PLOT_LINE.search(ticket.description or "")
    if found is None:
        return None
    root = (Path(request.app.state.settings.var_dir) / "anomaly").resolve()
    try:
        path = Path(found.group(1)).resolve()
        if not path.is_relative_to(root) or path.suffix.lower() != ".png" or not path.is_file():
            return None
        if path.stat().st_size > MAX_PLOT_BYTES:
            return None
        data = path.read_bytes()
    except OSError:
        return None
    return data if data.startswith(b"\x89PNG\r\n\x1a\n") else None


def _metric(request: Request, ticket: Ticket, fields: list[str]) -> str | None:
    """The metric the ticket's alert watched, else the device's first non-counter one."""
    tickets: Tickets = request.app.state.tickets
    with tickets.store.session() as s:
        metric = s.scalars(
            select(AlertRecord.metric).where(AlertRecord.ticket_id == ticket.id).limit(1)
        ).first()
    if metric in fields:
        return metric
    return fields[0] if fields else None


def _readings_plot(request: Request, ticket: Ticket, tz: ZoneInfo) -> bytes | None:
    """The device's last 24 hours (15-minute means) from InfluxDB, drawn small."""
    campus: Campus = request.app.state.campus
    device = campus.devices.get(ticket.device) if ticket.device else None
    if device is None:
        return None
    fields = [m for m, spec in device.metrics.items() if not getattr(spec, "counter", False)]
    metric = _metric(request, ticket, fields)
    if metric is None:
        return None
    # InfluxQL, every name quoted; metric and device come from the registry
    q = (
        f"SELECT mean({quote_ident(metric)}) AS v FROM {quote_ident(device.kind)} "  # nosec B608
        f"WHERE {quote_ident('device')} = {quote_literal(device.id)} "
        "AND time > now() - 24h GROUP BY time(15m) fill(none)"
    )
    try:
        points = rows(request.app.state.influx.query(q, epoch="ms"))
    except (CampusError, ValueError) as exc:
        log.info("no evidence plot for ticket %s: %s", ticket.id, exc)
        return None
    if not points:
        return None
    unit = getattr(device.metrics[metric], "unit", "")
    return _draw(
        [datetime.fromtimestamp(p["time"] / 1000, tz) for p in points],
        [float(p["v"]) for p in points],
        f"{device.id} {metric}" + (f" ({unit})" if unit else ""),
        tz,
    )


def _draw(times: list[datetime], values: list[float], label: str, tz: ZoneInfo) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import dates as mdates
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 2.4), dpi=100)
    ax = fig.add_subplot()
    x = [float(mdates.date2num(t)) for t in times]
    ax.plot(x, values, color="#1f5fbf", linewidth=1.4)
    ax.set_title(label, fontsize=9)
    ax.xaxis.set_major_locator(mdates.HourLocator(byhour=range(0, 24, 4), tz=tz))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=tz))
    ax.set_xlim(float(mdates.date2num(times[-1] - timedelta(hours=24))), x[-1])
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
