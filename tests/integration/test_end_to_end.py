"""One simulated hour of the whole demo campus through a real broker, a real
ingester and a real influxd: InfluxDB must hold exactly what was published."""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime

import pytest

from campus.influxql import quote_ident, quote_literal
from simulators.engine import CampusSimulator

from .procs import run_campus, start_campus, wait_for

START = "2026-10-20T00:00:00Z"  # 08:00 in Shanghai, a Tuesday in term
END = "2026-10-20T01:00:00Z"
SAMPLE = [
    "pm-campus-main",
    "pm-dorm-3",
    "wm-canteen-1-f2",
    "ahu-lab-1-2",
    "chiller-1",
    "dorm-2-r305",
    "dorm-8-r112",
    "fau-dorm-5",
]


def _counts(influx, kinds):
    return {k: influx.count(k) for k in kinds}


@pytest.mark.integration
def test_simulated_hour_lands_exactly(settings, influx, campus, calendar, tmp_path):
    ingest = start_campus(settings, "ingest", log=tmp_path / "ingest.log")
    try:
        assert wait_for(lambda: "subscribing" in (tmp_path / "ingest.log").read_text(), 30), (
            tmp_path / "ingest.log"
        ).read_text()
        out = run_campus(
            settings, "simulate", "--start", START, "--end", END, "--json", "--no-status"
        )
        assert out.returncode == 0, out.stderr
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        published = summary["published"]
        assert summary["acknowledged"] is True
        assert set(published) == {"power", "water", "hvac", "dorm"}
        # every device reports on its interval: 60 ticks a minute apart, dorm every 5 min
        expected = {
            k: sum(int(3600 // d.interval_s) for d in campus if d.kind == k) for k in published
        }
        assert published == expected

        kinds = list(published)
        assert wait_for(lambda: _counts(influx, kinds) == published, 120), (
            _counts(influx, kinds),
            published,
        )
    finally:
        ingest.send_signal(signal.SIGINT)
        assert ingest.wait(60) == 0
    log = (tmp_path / "ingest.log").read_text()
    assert "ingest stopped" in log
    assert not settings.dead_letter_file.exists() or settings.dead_letter_file.read_text() == ""

    # A sample of values and timestamps round-trips exactly: recompute them.
    sim = CampusSimulator(campus, calendar, seed=42)
    t0 = int(datetime.fromisoformat(START).timestamp())
    t1 = int(datetime.fromisoformat(END).timestamp())
    want: dict[tuple[str, int], dict[str, float]] = {}
    for t in range(sim.first_tick(t0), t1, sim.step):
        for device, metrics in sim.readings_at(t):
            if device.id in SAMPLE:
                want[(device.id, t * 1000)] = metrics
    for dev_id in SAMPLE:
        device = campus.get(dev_id)
        series = influx.query(
            f"SELECT * FROM {quote_ident(device.kind)} WHERE device = {quote_literal(dev_id)}"
        )
        rows = [dict(zip(series[0]["columns"], v, strict=True)) for v in series[0]["values"]]
        assert len(rows) == sum(1 for (d, _) in want if d == dev_id)
        for row in rows:
            metrics = want[(dev_id, row["time"])]
            for name, value in metrics.items():
                assert row[name] == value, (dev_id, row["time"], name)
            assert row["building"] == device.building
            if device.room:
                assert row["room"] == device.room and row["floor"] == str(device.floor)


@pytest.mark.integration
def test_parent_meters_equal_sum_of_children_in_influx(settings, influx, campus):
    """Sub-metering: the stored campus main equals the sum of the building mains."""
    ingest = start_campus(settings, "ingest", log=settings.var_dir.parent / "ingest.log")
    try:
        wait_for(lambda: "subscribing" in (settings.var_dir.parent / "ingest.log").read_text(), 30)
        out = run_campus(
            settings,
            "simulate",
            "--start",
            START,
            "--end",
            "2026-10-20T00:10:00Z",
            "--devices",
            "pm-*",
            "--no-status",
            "--json",
        )
        assert out.returncode == 0, out.stderr
        n = json.loads(out.stdout.splitlines()[-1])["total"]
        assert wait_for(lambda: influx.count("power") == n, 60)
    finally:
        ingest.send_signal(signal.SIGINT)
        ingest.wait(60)
    rows = influx.query('SELECT power_kw, energy_kwh, device FROM "power"')[0]["values"]
    by_time: dict[int, dict[str, tuple[float, float]]] = {}
    for t, kw, kwh, dev in rows:
        by_time.setdefault(t, {})[dev] = (kw, kwh)
    assert len(by_time) == 10
    for values in by_time.values():
        for parent, kids in campus.children.items():
            if campus.get(parent).kind != "power":
                continue
            assert values[parent][0] == pytest.approx(sum(values[k.id][0] for k in kids), abs=1e-6)
            assert values[parent][1] == pytest.approx(sum(values[k.id][1] for k in kids), abs=1e-6)
    _ = datetime.now(UTC)
