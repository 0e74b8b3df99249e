"""``campus model train``: learn each device's normal from InfluxDB and save it.

Which metric of each device kind is modelled, and by which detector, is
``models.choice.MODELLED``, chosen by the evaluation on simulated faults
(docs/anomaly.md). A device whose history is refused (too short, constant)
is skipped with its reason; nothing crashes on untidy data.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from campus.calendar import AcademicCalendar
from campus.influx import InfluxClient
from campus.registry import Campus, Device
from models.base import ModelError
from models.choice import MODELLED
from models.detectors import make
from models.history import clean, read_history
from models.registry import Registry, Saved

log = logging.getLogger("campus.models")


@dataclass
class TrainReport:
    """What one training run did."""

    saved: list[Saved] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # "device/metric" -> reason


def select(campus: Campus, patterns: Sequence[str] | None) -> list[Device]:
    """The modelled devices matching any glob of device id or building (all if none)."""
    out = []
    for d in campus:
        if d.kind not in MODELLED or MODELLED[d.kind][0] not in d.metrics:
            continue
        if patterns and not any(
            fnmatch.fnmatchcase(d.id, p) or fnmatch.fnmatchcase(d.building, p) for p in patterns
        ):
            continue
        out.append(d)
    return out


def train(
    influx: InfluxClient,
    registry: Registry,
    devices: Sequence[Device],
    start: datetime,
    end: datetime,
    calendar: AcademicCalendar | None = None,
    detector: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> TrainReport:
    """Fit and save a model for each of ``devices`` on its history in [start, end)."""
    report = TrainReport()
    for i, device in enumerate(devices):
        metric, chosen = MODELLED[device.kind]
        name = detector or chosen
        key = f"{device.id}/{metric}"
        if progress is not None:
            progress(i, len(devices), key)
        history = read_history(influx, device.kind, device.id, metric, start, end)
        spec = device.metrics[metric]
        cleaned = clean(history, counter=spec.counter)
        for note in cleaned.notes:
            log.info("%s: %s", key, note)
        if cleaned.refused is not None:
            log.warning("%s: not trained: %s", key, cleaned.refused)
            report.skipped[key] = cleaned.refused
            continue
        t0 = time.monotonic()
        try:
            model = make(name, calendar=calendar).fit(cleaned.frame)
            fitted = model.score(cleaned.frame)
        except ModelError as exc:
            log.warning("%s: not trained: %s", key, exc)
            report.skipped[key] = str(exc)
            continue
        flagged = float((fitted["score"] > 0.5).mean())
        meta = {
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "range": [cleaned.frame.index[0].isoformat(), cleaned.frame.index[-1].isoformat()],
            "rows": len(cleaned.frame),
            "kind": device.kind,
            "building": device.building,
            "unit": spec.unit,
            "notes": cleaned.notes,
            "fit_seconds": round(time.monotonic() - t0, 2),
            # share of its own history the model calls anomalous: a sanity figure
            "training_flagged_share": round(flagged, 4),
        }
        report.saved.append(registry.save(device.id, metric, model, meta))
    if progress is not None:
        progress(len(devices), len(devices), "")
    return report
