"""Anomaly models against a real influxd: `campus model train` learns a
meter's history (untidy, as real histories are), `campus model score` finds
the creep injected into a later week, the rules engine's anomaly rule fires on
it with an explanation and a plot, and a corrupt model is refused clearly."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from campus.calendar import load_calendar
from campus.influx import InfluxClient
from campus.registry import load_campus
from campus.settings import Settings
from models.detectors import make
from models.registry import Registry
from models.scorer import ModelScorer
from rules.engine import Engine
from rules.model import load_rules_text
from tests.conftest import CONFIG

from .procs import run_campus

POWER = "pm-teach-1-f1"  # a floor meter of teaching building 1
WATER = "wm-teach-1-f1"
START = datetime(2026, 10, 12, tzinfo=UTC)  # a Monday in term, after the National Day week
DAYS = 14


def load(t: np.ndarray) -> np.ndarray:
    """A teaching floor's power: a working-day shape, low nights and weekends."""
    local_h = ((t / 3600) + 8) % 24
    weekday = ((t // 86400) + 3) % 7 < 5  # 1970-01-01 was a Thursday
    day = np.clip(np.sin((local_h - 7) / 12 * np.pi), 0, None)
    return 20 + 60 * day * np.where(weekday, 1.0, 0.3)


def write_history(client: InfluxClient, creep_from: datetime | None) -> None:
    rng = np.random.default_rng(7)
    t = np.arange(int(START.timestamp()), int((START + timedelta(days=DAYS)).timestamp()), 60)
    kw = load(t) + rng.normal(0, 1.5, len(t))
    if creep_from is not None:
        days = np.clip((t - creep_from.timestamp()) / 86400, 0, None)
        kw = kw * (1 + np.minimum(days * 0.25, 0.6))  # +25 % a day, up to +60 %
    lines = [
        f"power,building=teach-1,device={POWER} power_kw={v:.3f} {s * 1000}"
        for s, v in zip(t, kw, strict=True)
    ]
    lines += [
        f"water,building=teach-1,device={WATER} flow_lpm=12.5 {s * 1000}" for s in t[::10]
    ]  # a water meter stuck at one value: nothing to learn
    for i in range(0, len(lines), 5000):
        client.write(lines[i : i + 5000])


@pytest.mark.integration
def test_train_score_and_fire_on_a_creeping_meter(settings: Settings, tmp_path: Path) -> None:
    cfg = settings.model_copy(update={"models_dir": tmp_path / "models"})
    client = InfluxClient.from_settings(cfg)
    client.create_database()
    creep = START + timedelta(days=10)
    write_history(client, creep)
    train_until = creep.isoformat()
    done = run_campus(
        cfg, "model", "train", "--since", START.isoformat(), "--until", train_until,
        "--devices", POWER, "--devices", WATER, "--detector", "seasonal",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{POWER}/power_kw v1" in done.stdout
    assert f"{WATER}/flow_lpm: skipped: constant at 12.5" in done.stdout
    assert "not trained: constant at 12.5" in done.stderr  # and said in the log
    registry = Registry(cfg.models_folder)
    saved = registry.latest(POWER, "power_kw")
    assert saved is not None and saved.meta["rows"] == 10 * 1440
    assert saved.meta["training_flagged_share"] < 0.02

    # the week before the creep is normal; the creep is found
    before = run_campus(
        cfg, "model", "score", "--start", (creep - timedelta(days=3)).isoformat(),
        "--end", creep.isoformat(), "--devices", POWER, "--json",
    )  # fmt: skip
    assert before.returncode == 0, before.stderr
    (quiet,) = json.loads(before.stdout)
    assert quiet["anomalous"] / quiet["readings"] < 0.02
    after = run_campus(
        cfg, "model", "score", "--start", (creep + timedelta(days=2)).isoformat(),
        "--end", (creep + timedelta(days=4)).isoformat(), "--devices", POWER, "--json",
        "--plot", str(tmp_path / "plots"),
    )  # fmt: skip
    (loud,) = json.loads(after.stdout)
    assert loud["anomalous"] / loud["readings"] > 0.5, loud
    assert Path(loud["plot"]).stat().st_size > 10_000

    # the rules engine's anomaly rule fires on the live creep, and says why
    campus = load_campus(CONFIG / "campus.yaml")
    rules = load_rules_text(
        "rules:\n"
        f"  - {{id: odd, kind: anomaly, select: {{device: {POWER}}}, params: {{threshold: 0.9}},\n"
        "     for: 30m, severity: P3, trade: general, title: odd}\n",
        "odd.yaml",
        campus,
    )
    scorer = ModelScorer(registry)
    engine = Engine(rules, campus, load_calendar(CONFIG / "calendar.yaml"), scorer=scorer)
    fired = []
    live = creep + timedelta(days=2)
    t = np.arange(int(live.timestamp()), int((live + timedelta(hours=6)).timestamp()), 60)
    for s, v in zip(t, load(t) * 1.5, strict=True):
        events = engine.feed(POWER, int(s * 1000), {"power_kw": float(v)})
        fired += [e for e in events if e.state == "firing"]
    assert fired, "the anomaly rule never fired"
    assert "expected" in fired[0].detail and "band" in fired[0].detail
    png = scorer.plot(POWER, tmp_path / "alert.png")
    assert png is not None and png.stat().st_size > 10_000

    # a corrupt model file is refused with a clear message, not a traceback
    saved.path.write_bytes(b"not a model")
    bad = run_campus(cfg, "model", "score", "--start", creep.isoformat(), "--devices", POWER)
    assert bad.returncode != 0
    assert "is corrupt" in bad.stderr and "campus model train" in bad.stderr
    assert "Traceback" not in bad.stderr
    client.close()


@pytest.mark.integration
def test_a_restarted_engine_is_primed_from_influxdb(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The model's lookback is read back from InfluxDB at start-up, so the first
    live reading scores as it would have in an engine that never stopped."""
    client = InfluxClient.from_settings(settings)
    client.create_database()
    write_history(client, None)
    t = np.arange(int(START.timestamp()), int((START + timedelta(days=DAYS)).timestamp()), 60)
    kw = load(t) + np.random.default_rng(7).normal(0, 1.5, len(t))  # as written
    stamps = [int(s) * 1000 for s in t]
    frame = pd.DataFrame({"value": kw}, index=pd.to_datetime(stamps, unit="ms", utc=True))
    registry = Registry(tmp_path / "models")
    registry.save(POWER, "power_kw", make("regressor").fit(frame), {})
    campus = load_campus(CONFIG / "campus.yaml")
    device, water = campus.get(POWER), campus.get(WATER)
    assert device is not None and water is not None
    now = stamps[-1]

    primed = ModelScorer(Registry(tmp_path / "models"))
    # the regressor looks back a day and an hour (its lags): the last 1,500 readings;
    # the water meter has no model
    assert primed.prime_from(client, [device, water], now) == 25 * 60
    never_stopped = ModelScorer(Registry(tmp_path / "models"))
    never_stopped.prime(device, list(zip(stamps, kw.tolist(), strict=True)))
    cold = ModelScorer(Registry(tmp_path / "models"))
    reading = {"power_kw": float(kw[-60])}
    first = primed.score(device, now + 60_000, reading)
    assert first == never_stopped.score(device, now + 60_000, reading)
    assert first != cold.score(device, now + 60_000, reading)  # without its past it differs

    # InfluxDB unreachable: the models start cold, said once, not once per device
    down = InfluxClient("http://127.0.0.1:9", settings.influx_db, timeout=0.5)
    with caplog.at_level(logging.WARNING, logger="campus.models"):
        assert ModelScorer(Registry(tmp_path / "models")).prime_from(down, [device] * 3, now) == 0
    said = [r.getMessage() for r in caplog.records if "without their past" in r.getMessage()]
    assert len(said) == 1
    down.close()
    client.close()
