"""``campus db init`` / ``campus db rollup`` against a real influxd: a year of
hourly readings answers the yearly energy panel from the daily rollup, with the
same kWh as the raw data, and the ``rp`` variable picks the rollup by range."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner, Result

from campus.dbcli import db
from campus.influx import InfluxClient, rows
from campus.lineprotocol import point
from campus.registry import load_campus
from campus.rollups import (
    CQ_PREFIX,
    RP_DAILY,
    RP_HOURLY,
    kind_rollups,
    query_rows,
    rp_variable_query,
)
from campus.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[2]
ZONE = ZoneInfo("Asia/Shanghai")  # the demo campus's time zone
YEAR_START = datetime(2025, 1, 1, tzinfo=ZONE)
YEAR_END = datetime(2026, 1, 1, tzinfo=ZONE)
METERS = ("pm-campus-main", "pm-plant", "pm-plant-f1")

Run = Callable[..., Result]


@pytest.fixture
def run(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Run]:
    """``campus db ...`` with the environment pointing at the test database."""

    def invoke(*args: str, config_dir: Path = ROOT / "config", **env: str) -> Result:
        monkeypatch.setenv("CAMPUS_INFLUX_URL", env.get("url", settings.influx_url))
        monkeypatch.setenv("CAMPUS_INFLUX_DB", settings.influx_db)
        monkeypatch.setenv("CAMPUS_CONFIG_DIR", str(config_dir))
        monkeypatch.setenv("CAMPUS_VAR_DIR", str(settings.var_dir))
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(db, list(args))
        finally:
            get_settings.cache_clear()

    yield invoke
    get_settings.cache_clear()


def simulate_year(influx: InfluxClient) -> dict[str, list[tuple[datetime, float]]]:
    """A year of hourly readings of three power meters, written raw; returns
    each meter's (local time, energy_kwh) readings."""
    campus = load_campus(ROOT / "config" / "campus.yaml")
    rng = random.Random(8)
    readings: dict[str, list[tuple[datetime, float]]] = {}
    lines = []
    for device_id in METERS:
        device = campus.devices[device_id]
        energy = rng.uniform(1e4, 1e5)
        t = YEAR_START
        series = readings.setdefault(device_id, [])
        while t < YEAR_END:
            kw = rng.uniform(50, 150)
            energy += kw  # one hour at kw
            series.append((t, energy))
            fields = {"power_kw": kw, "energy_kwh": energy}
            lines.append(point("power", device.influx_tags(), fields, int(t.timestamp() * 1000)))
            t += timedelta(hours=1)
    for i in range(0, len(lines), 20_000):
        influx.write(lines[i : i + 20_000])
    return readings


def daily_kwh(readings: dict[str, list[tuple[datetime, float]]]) -> dict[str, float]:
    """kWh per local day of the campus, summed over the meters: each day's last
    reading minus the day before's (the panel's non_negative_difference(last))."""
    out: dict[str, float] = {}
    for series in readings.values():
        last: dict[str, float] = {}
        for t, energy in series:
            last[t.date().isoformat()] = energy
        days = sorted(last)
        for before, day in itertools.pairwise(days):
            out[day] = out.get(day, 0.0) + last[day] - last[before]
    return out


def expand(query: str, start: datetime, end: datetime) -> str:
    """Grafana's expansion of ``$__from``, ``$__to`` and ``$timeFilter``."""
    a, b = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
    return (
        query.replace("$__from", str(a))
        .replace("$__to", str(b))
        .replace("$timeFilter", f"time >= {a}ms and time <= {b}ms")
    )


def choose_rp(influx: InfluxClient, start: datetime, end: datetime) -> list[str]:
    """What the dashboard variable ``rp`` resolves to for this range."""
    return [r["rp"] for r in rows(influx.query(expand(rp_variable_query(), start, end)))]


#: The yearly energy panel: kWh per local day (Grafana would add the board's tz).
PANEL = (
    'SELECT non_negative_difference(last("energy_kwh")) AS "kwh" FROM "$rp"."power" '
    "WHERE $timeFilter GROUP BY time(1d), \"device\" tz('Asia/Shanghai')"
)


def panel_kwh(influx: InfluxClient, rp: str) -> dict[str, float]:
    """The panel's kWh per local day, summed over the meters."""
    q = expand(PANEL.replace("$rp", rp), YEAR_START, YEAR_END - timedelta(milliseconds=1))
    out: dict[str, float] = {}
    for r in rows(influx.query(q, epoch="ms")):
        if r["kwh"] is not None:
            day = datetime.fromtimestamp(r["time"] / 1000, ZONE).date().isoformat()
            out[day] = out.get(day, 0.0) + r["kwh"]
    return out


def server_state(influx: InfluxClient) -> tuple[object, ...]:
    """Policies, continuous queries and point counts: what a rerun must not change."""
    policies = query_rows(influx, "SHOW RETENTION POLICIES")
    cqs = sorted(
        map(
            tuple,
            next(
                (
                    s["values"]
                    for s in influx.query("SHOW CONTINUOUS QUERIES", database=False)
                    if s["name"] == influx.database
                ),
                [],
            ),
        )
    )
    counts = [
        influx.query(f'SELECT count(*) FROM "{rp}"."power"')
        for rp in ("autogen", "hourly", "daily")
    ]
    return policies, cqs, counts


def test_a_year_answers_the_energy_panel_from_the_daily_rollup(
    run: Run, influx: InfluxClient
) -> None:
    influx.create_database()
    readings = simulate_year(influx)
    began = time.monotonic()
    first = run("init", "--raw-retention", "INF", "--backfill", "--chunk", "28d")
    assert first.exit_code == 0, first.output
    assert "created continuous query" in first.output
    assert "points" in first.output  # the backfill's summary
    backfill_s = time.monotonic() - began

    expected = daily_kwh(readings)
    end = datetime(2026, 1, 1, tzinfo=ZONE)
    assert choose_rp(influx, end - timedelta(days=365), end) == [RP_DAILY]
    from_daily = panel_kwh(influx, RP_DAILY)
    from_raw = panel_kwh(influx, "autogen")
    assert len(expected) == 364 and from_daily.keys() == expected.keys() == from_raw.keys()
    for day, kwh in expected.items():
        assert from_daily[day] == pytest.approx(kwh, rel=1e-9), day
        assert from_raw[day] == pytest.approx(kwh, rel=1e-9), day
    year_total = sum(expected.values())
    assert sum(from_daily.values()) == pytest.approx(year_total, rel=1e-9)

    # far fewer points answer it: one per meter and day instead of one per hour
    a, b = (int(t.timestamp() * 1000) for t in (YEAR_START, YEAR_END))
    window = f"time >= {a}ms AND time < {b}ms"
    scanned = {
        rp: influx.query(f'SELECT count("energy_kwh") FROM "{rp}"."power" WHERE {window}')[0][
            "values"
        ][0][1]
        for rp in ("autogen", RP_HOURLY, RP_DAILY)
    }
    assert scanned == {"autogen": 3 * 8760, RP_HOURLY: 3 * 8760, RP_DAILY: 3 * 365}
    print(
        f"yearly panel: {year_total:.0f} kWh; raw points {scanned['autogen']}, daily "
        f"{scanned[RP_DAILY]} (ratio {scanned['autogen'] / scanned[RP_DAILY]:.0f}); "
        f"init with backfill {backfill_s:.1f} s"
    )

    # a gauge keeps mean, min and max in the rollups
    gauge = query_rows(
        influx,
        'SELECT "power_kw", "power_kw_min", "power_kw_max" FROM "daily"."power" '
        "WHERE \"device\" = 'pm-plant' LIMIT 1",
    )[0]
    assert 50 <= gauge["power_kw_min"] < gauge["power_kw"] < gauge["power_kw_max"] <= 150

    status = run("status")
    assert status.exit_code == 0, status.output
    assert f"autogen  kept forever  default  power {3 * 8760}" in status.output
    assert f"daily    kept forever           power {3 * 365}" in status.output
    assert "continuous queries: 8" in status.output

    # running both again changes nothing
    before = server_state(influx)
    again = run("init", "--raw-retention", "INF")
    assert again.exit_code == 0, again.output
    assert "nothing to change" in again.output
    rollup = run(
        "rollup", "--start", "2025-01-01T00:00:00+08:00", "--end", "2026-01-01T00:00:00+08:00"
    )
    assert rollup.exit_code == 0, rollup.output
    assert server_state(influx) == before
    assert panel_kwh(influx, RP_DAILY) == from_daily


def test_continuous_queries_follow_the_registry(
    run: Run, influx: InfluxClient, tmp_path: Path
) -> None:
    assert run("init").exit_code == 0
    campus = load_campus(ROOT / "config" / "campus.yaml")
    installed = dict(
        next(
            s["values"]
            for s in influx.query("SHOW CONTINUOUS QUERIES", database=False)
            if s["name"] == influx.database
        )
    )
    wanted = {(rp, k.kind) for k in kind_rollups(campus) for rp in (RP_HOURLY, RP_DAILY)}
    assert {tuple(name[len(CQ_PREFIX) :].split("_")[:2]) for name in installed} == wanted
    for k in kind_rollups(campus):
        hourly = next(
            q for n, q in installed.items() if n.startswith(f"{CQ_PREFIX}hourly_{k.kind}_")
        )
        daily = next(q for n, q in installed.items() if n.startswith(f"{CQ_PREFIX}daily_{k.kind}_"))
        for m in k.gauges:
            assert f"mean({m}) AS {m}, min({m}) AS {m}_min, max({m}) AS {m}_max" in hourly
            assert f"min({m}_min) AS {m}_min" in daily
        for c in k.counters:
            assert f"last({c}) AS {c}" in hourly and f"last({c}) AS {c}" in daily
        assert (
            f"INTO {influx.database}.hourly.{k.kind} FROM {influx.database}.autogen.{k.kind}"
            in hourly
        )
        assert "GROUP BY time(1d, 16h), *" in daily  # local days of Asia/Shanghai

    # a new metric in the registry replaces that kind's queries, and only those
    config = tmp_path / "config"
    config.mkdir()
    text = (ROOT / "config" / "campus.yaml").read_text()
    marker = '      power_factor: {unit: "1", min: 0, max: 1}\n'
    assert marker in text
    (config / "campus.yaml").write_text(
        text.replace(
            marker, marker + "      reactive_kvar: {unit: kvar, min: -5000, max: 5000}\n", 1
        )
    )
    changed = run("init", config_dir=config)
    assert changed.exit_code == 0, changed.output
    replaced = [line for line in changed.output.splitlines() if "continuous query" in line]
    assert len(replaced) == 4 and all("_power_" in line for line in replaced), replaced
    power = next(
        q
        for s in influx.query("SHOW CONTINUOUS QUERIES", database=False)
        if s["name"] == influx.database
        for n, q in s["values"]
        if n.startswith(f"{CQ_PREFIX}hourly_power_")
    )
    assert "max(reactive_kvar) AS reactive_kvar_max" in power


def test_continuous_query_rolls_up_recent_readings(run: Run, influx: InfluxClient) -> None:
    influx.create_database()
    # the last full hour: the query's first run covers it (RESAMPLE ... FOR 2h)
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    campus = load_campus(ROOT / "config" / "campus.yaml")
    tags = campus.devices["pm-plant"].influx_tags()
    lines = [
        point("power", tags, {"power_kw": float(kw), "energy_kwh": 1000.0 + kw}, ms)
        for kw, ms in ((10, 0), (20, 30_000), (30, 60_000))
        for ms in [int(hour.timestamp() * 1000) + ms]
    ]
    influx.write(lines)
    assert run("init").exit_code == 0  # a new continuous query runs at once
    deadline = time.monotonic() + 10
    got: list[dict[str, object]] = []
    while not got and time.monotonic() < deadline:
        got = query_rows(influx, 'SELECT * FROM "hourly"."power"')
        time.sleep(0.2)
    assert got, "the hourly continuous query wrote nothing"
    assert got[0]["power_kw"] == 20 and got[0]["power_kw_min"] == 10
    assert got[0]["power_kw_max"] == 30 and got[0]["energy_kwh"] == 1030
    assert got[0]["device"] == "pm-plant" and got[0]["building"] == "plant"


#: (range length, how long ago it ends, the policy the boards must read)
RANGES = [
    (timedelta(hours=6), timedelta(0), "autogen"),
    (timedelta(days=7), timedelta(0), "hourly"),
    (timedelta(days=90), timedelta(0), "daily"),
    (timedelta(days=400), timedelta(0), "daily"),
    (timedelta(hours=6), timedelta(days=80), "autogen"),  # raw data still there
    (timedelta(hours=6), timedelta(days=100), "hourly"),  # past the 90 days of raw data
]


def test_rp_variable_picks_the_policy_for_the_range(run: Run, influx: InfluxClient) -> None:
    result = run("init")  # 90 days of raw data by default
    assert result.exit_code == 0, result.output
    now = datetime.now(UTC)
    got = [choose_rp(influx, now - ago - length, now - ago) for length, ago, _ in RANGES]
    assert got == [[rp] for _, _, rp in RANGES]
    # kept forever, raw data answers short ranges however far back
    assert run("init", "--raw-retention", "INF").exit_code == 0
    long_ago = now - timedelta(days=1000)
    assert choose_rp(influx, long_ago - timedelta(hours=6), long_ago) == ["autogen"]


def test_bad_input_gets_one_line(run: Run, influx: InfluxClient) -> None:
    bad = run("init", "--raw-retention", "ninety days")
    assert bad.exit_code == 2
    assert "cannot read retention 'ninety days'" in bad.output
    assert "Traceback" not in bad.output
    short = run("init", "--rollup-retention", "30m")
    assert short.exit_code == 2 and "--rollup-retention" in short.output
    away = run("init", url="http://127.0.0.1:9")
    assert away.exit_code == 1
    assert "cannot reach InfluxDB at http://127.0.0.1:9" in away.output
    backwards = run("rollup", "--start", "-1d", "--end", "-2d")
    assert backwards.exit_code == 2 and "must come after" in backwards.output
    # nothing was created by the refused runs
    assert influx.database not in str(influx.query("SHOW DATABASES", database=False))
