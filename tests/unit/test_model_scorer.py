"""The rules engine's anomaly scorer: silent without a model (said once), picks
up a newly trained version, explains each score, and refuses a bad file once."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from campus.registry import Campus
from models.detectors import make
from models.registry import Registry
from models.scorer import ModelScorer

DEVICE = "pm-teach-1-f1"


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def history(days: int = 10) -> pd.DataFrame:
    index = pd.date_range("2026-10-12", periods=days * 96, freq="15min", tz="UTC")
    hours = index.hour.to_numpy() + index.minute.to_numpy() / 60
    rng = np.random.default_rng(3)
    values = 40 + 20 * np.sin(hours / 24 * 2 * np.pi) + rng.normal(0, 1, len(index))
    return pd.DataFrame({"value": values}, index=index)


def test_cold_start_then_a_trained_model_is_picked_up(
    campus: Campus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    device = campus.get(DEVICE)
    assert device is not None
    registry = Registry(tmp_path)
    clock = Clock()
    scorer = ModelScorer(registry, reload_s=60, clock=clock)
    h = history()
    ts = int(h.index[-1].value // 1_000_000) + 900_000
    with caplog.at_level(logging.WARNING, logger="campus.models"):
        assert scorer.score(device, ts, {"power_kw": 40.0}) is None
        assert scorer.score(device, ts + 60_000, {"power_kw": 40.0}) is None
        other = campus.get("pm-teach-1-f2")
        assert other is not None
        assert scorer.score(other, ts, {"power_kw": 40.0}) is None
    said = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(said) == 1 and "campus model train" in said[0]  # once, not per reading or device

    registry.save(DEVICE, "power_kw", make("seasonal").fit(h), {"rows": len(h)})
    clock.t += 61  # the scorer looks again after reload_s
    scorer.prime(device, [(int(t.value // 1_000_000), float(v)) for t, v in h["value"].items()])
    normal = scorer.score(device, ts + 120_000, {"power_kw": float(h["value"].iloc[-96])})
    odd = scorer.score(device, ts + 180_000, {"power_kw": 400.0})
    assert normal is not None and odd is not None
    assert normal < 0.5 < 0.9 < odd
    why = scorer.explain(DEVICE)
    assert why is not None and why.startswith("expected ") and "actual 400 kW" in why
    assert scorer.score(device, ts + 180_000, {"power_kw": 1.0}) == odd  # a repeat: scored once
    assert scorer.score(device, ts + 240_000, {"voltage_v": 230.0}) is None  # not its metric
    png = scorer.plot(DEVICE, tmp_path / "day.png")
    assert png is not None and png.stat().st_size > 5_000


def test_a_model_that_cannot_be_read_is_said_once_and_stays_silent(
    campus: Campus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    device = campus.get(DEVICE)
    assert device is not None
    registry = Registry(tmp_path)
    saved = registry.save(DEVICE, "power_kw", make("static").fit(history()), {})
    saved.path.write_bytes(b"garbage")
    scorer = ModelScorer(registry)
    with caplog.at_level(logging.WARNING, logger="campus.models"):
        for i in range(3):
            assert scorer.score(device, 1_790_000_000_000 + i, {"power_kw": 1.0}) is None
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "is corrupt" in said[0]


@pytest.mark.parametrize("name", ["seasonal", "forest", "regressor", "drift"])
def test_a_run_scored_at_once_scores_as_one_by_one(
    campus: Campus, tmp_path: Path, name: str
) -> None:
    """A batch payload's readings get, in one vectorised call, the scores each
    would have got alone, with the same explanations."""
    device = campus.get(DEVICE)
    assert device is not None
    h = history(days=12)
    train, live = h.iloc[: 10 * 96], h.iloc[10 * 96 :]
    registry = Registry(tmp_path)
    registry.save(DEVICE, "power_kw", make(name).fit(train), {"rows": len(train)})
    values = live["value"].to_numpy().copy()
    values[100:120] += 60  # an hour and more of something odd
    run = [
        (int(t.value // 1_000_000), {"power_kw": float(v)})
        for t, v in zip(live.index, values, strict=True)
    ]
    past = [(int(t.value // 1_000_000), float(v)) for t, v in train["value"].items()]
    alone, batched = ModelScorer(registry), ModelScorer(registry)
    alone.prime(device, past)
    batched.prime(device, past)

    one_by_one = [alone.score(device, ts, m) for ts, m in run]
    at_once = batched.prepare(device, run)
    assert len(at_once) == len(run)
    assert at_once == pytest.approx(one_by_one, abs=1e-9)
    assert min(at_once[100:120]) > 0.9 > max(at_once[:90])  # it is the odd hour that scores
    # score() hands each reading its prepared result, with its explanation
    ts, metrics = run[110]
    assert batched.score(device, ts, metrics) == at_once[110]
    why = batched.explain(DEVICE)
    assert why is not None and why.startswith("expected ") and f"score {at_once[110]:.2f}" in why


def test_a_run_the_model_fails_on_is_left_to_be_scored_again(
    campus: Campus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = campus.get(DEVICE)
    assert device is not None
    h = history()
    registry = Registry(tmp_path)
    registry.save(DEVICE, "power_kw", make("seasonal").fit(h), {"rows": len(h)})
    scorer = ModelScorer(registry)
    ts = int(h.index[-1].value // 1_000_000)
    run = [(ts + i * 60_000, {"power_kw": 40.0}) for i in range(1, 4)]
    assert scorer.lookback(device) is not None  # the model is loaded
    detector = scorer._devices[DEVICE].detector
    assert detector is not None
    with monkeypatch.context() as m:
        m.setattr(detector, "score_records", lambda ns, values, n: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            scorer.prepare(device, run)
    # not taken for repeats: each reading is still scored in its turn
    assert all(scorer.score(device, t, metrics) is not None for t, metrics in run)


@pytest.mark.parametrize("name", ["drift", "forest"])
def test_online_scores_equal_the_model_scoring_the_whole_stream(
    campus: Campus, tmp_path: Path, name: str
) -> None:
    """With readings every minute, the scorer keeps the model's whole lookback
    reading by reading (the drift's 12 hours are 720 readings, more than the
    last 180), so online scores are those of the model on the whole stream."""
    device = campus.get(DEVICE)
    assert device is not None
    index = pd.date_range("2026-10-12", periods=10 * 1440, freq="1min", tz="UTC")
    hours = index.hour.to_numpy() + index.minute.to_numpy() / 60
    rng = np.random.default_rng(11)
    values = 40 + 20 * np.sin(hours / 24 * 2 * np.pi) + rng.normal(0, 1, len(index))
    values[-300:] += np.linspace(0, 15, 300)  # a creep in the last five hours
    stream = pd.DataFrame({"value": values}, index=index)
    train, past, live = stream.iloc[: 8 * 1440], stream.iloc[:-400], stream.iloc[-400:]
    registry = Registry(tmp_path)
    model = make(name).fit(train)
    registry.save(DEVICE, "power_kw", model, {"rows": len(train)})
    scorer = ModelScorer(registry)
    scorer.prime(device, [(int(t.value // 1_000_000), float(v)) for t, v in past["value"].items()])
    online = [
        scorer.score(device, int(t.value // 1_000_000), {"power_kw": float(v)})
        for t, v in live["value"].items()
    ]
    whole = model.score(stream)["score"].to_numpy()[-400:]
    np.testing.assert_allclose(np.asarray(online, dtype=float), whole, rtol=0, atol=1e-9)
    assert max(online[-60:]) > 0.8  # and the creep is seen
