"""Devices that sent readings but are not in the registry, read back from InfluxDB.

The ingester stores such readings with the tag ``unregistered=true``; this
module lists them so they can be commissioned into campus.yaml. InfluxDB is the
record, so the list is the same whichever ingester saw the device.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from campus.influx import InfluxClient
from campus.influxql import quote_ident


def unknown_devices(client: InfluxClient, kinds: Iterable[str]) -> list[dict[str, Any]]:
    """One entry per unregistered device: device, building, kind, readings, first/last seen."""
    out: list[dict[str, Any]] = []
    for kind in kinds:
        m = quote_ident(kind)
        where = "\"unregistered\" = 'true'"
        group = "GROUP BY building, device"
        counts = client.query(f"SELECT count(*) FROM {m} WHERE {where} {group}")
        firsts = {
            tuple(sorted(s["tags"].items())): s["values"][0][0]
            for s in client.query(
                f"SELECT * FROM {m} WHERE {where} {group} ORDER BY time ASC LIMIT 1"
            )
        }
        lasts = {
            tuple(sorted(s["tags"].items())): s["values"][0][0]
            for s in client.query(
                f"SELECT * FROM {m} WHERE {where} {group} ORDER BY time DESC LIMIT 1"
            )
        }
        for s in counts:
            key = tuple(sorted(s["tags"].items()))
            n = max((v or 0) for v in s["values"][0][1:])
            out.append(
                {
                    "device": s["tags"]["device"],
                    "building": s["tags"]["building"],
                    "kind": kind,
                    "readings": int(n),
                    "first_seen": _iso(firsts.get(key)),
                    "last_seen": _iso(lasts.get(key)),
                }
            )
    return sorted(out, key=lambda u: (u["building"], u["device"]))


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
