"""``/api/reports``: the assessment reports of repair teams, technicians and
contractors (:mod:`tickets.report`, what ``campus report`` writes) as JSON or
CSV.

Viewers (the facilities office), engineers and admins read them. Technicians
get 403: a report ranks colleagues against each other, and the office, not
the people assessed, decides who sees it; a technician's own tickets are in
``/api/tickets``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, Field

from api.accounts import Principal
from api.deps import TicketsDep, role
from api.schemas import Problem
from campus.timeparse import parse_time
from tickets.models import Role
from tickets.report import COLUMNS, build_report

router = APIRouter(prefix="/api/reports", tags=["reports"])

Reader = Annotated[Principal, Depends(role(Role.viewer, Role.engineer, Role.admin))]
MAX_SPAN = timedelta(days=732)  # two years of tickets at most per request
TIME = r"^[0-9A-Za-z:.+\- ]{1,40}$"  # the characters any time parse_time reads can have
CSV = "text/csv"


class ReportOut(BaseModel):
    """One table of the assessment report: a row per period and group."""

    by: Literal["team", "technician", "contractor"]
    period: Literal["week", "month"]
    start: datetime
    end: datetime
    timezone: str = Field(description="Periods are the campus's weeks (Monday first) or months.")
    columns: list[str]
    rows: list[dict[str, str | int | float | None]] = Field(
        description="tickets; ack_* in minutes; resolve_* in hours; *_pct in percent "
        "(null: nothing to measure yet)."
    )


def _when(name: str, text: str, now: datetime) -> datetime:
    try:
        return parse_time(text, now)
    except (ValueError, OverflowError) as exc:
        message = str(exc) if isinstance(exc, ValueError) else "out of range"
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{name}: {message}") from None


@router.get(
    "/assessment",
    response_model=ReportOut,
    responses={
        200: {"content": {CSV: {}}, "description": "JSON, or CSV with format=csv."},
        401: {"model": Problem, "description": "No valid bearer token."},
        403: {"model": Problem, "description": "Viewers, engineers and admins only."},
        503: {"model": Problem, "description": "The ticket store is not answering; try again."},
    },
)
def assessment(
    request: Request,
    svc: TicketsDep,
    who: Reader,
    by: Literal["team", "technician", "contractor"] = "team",
    period: Literal["week", "month"] = "month",
    start: Annotated[
        str, Query(pattern=TIME, description="Tickets opened from: ISO time, `now` or `-30d`.")
    ] = "-30d",
    end: Annotated[str, Query(pattern=TIME, description="... up to (excluded).")] = "now",
    format: Annotated[
        Literal["json", "csv"] | None,
        Query(description="Default: JSON, or CSV when the Accept header asks for text/csv."),
    ] = None,
) -> Any:
    """Per period and team, technician or contractor: tickets opened, time to
    acknowledge and to resolve (median, p90), share of SLA deadlines met and
    of tickets reopened, as `campus report` computes them."""
    now = svc.clock()
    t0, t1 = _when("start", start, now), _when("end", end, now)
    if t1 <= t0:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"end: {end} is not after start {start}"
        )
    if t1 - t0 > MAX_SPAN:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"start: at most {MAX_SPAN.days} days per report (asked {(t1 - t0).days})",
        )
    tz: str = request.app.state.campus.timezone
    table = build_report(svc.store, t0, t1, now, period, tz).tables[by]
    if format == "csv" or (format is None and CSV in request.headers.get("accept", "")):
        name = f"report-{by}-{period}-{t0:%Y%m%d}-{t1:%Y%m%d}.csv"
        return Response(
            table.to_csv(index=False),
            media_type=f"{CSV}; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    rows = json.loads(table.to_json(orient="records")) if not table.empty else []
    return ReportOut(
        by=by,
        period=period,
        start=t0,
        end=t1,
        timezone=tz,
        columns=["period", by, *COLUMNS],
        rows=rows,
    )
