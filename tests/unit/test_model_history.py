"""Untidy histories are repaired or refused with a reason (models/history.py),
and the model registry refuses corrupt and incompatible files clearly."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from models.base import ModelError
from models.detectors import make
from models.history import clean
from models.registry import Registry


def frame(
    values: list[float] | np.ndarray, minutes: int = 15, start: str = "2026-10-12"
) -> pd.DataFrame:
    index = pd.date_range(start, periods=len(values), freq=f"{minutes}min", tz="UTC")
    return pd.DataFrame({"value": np.asarray(values, dtype=float)}, index=index)


def daily(days: int = 10, minutes: int = 15) -> pd.DataFrame:
    n = days * 24 * 60 // minutes
    t = np.arange(n)
    return frame(
        50
        + 20 * np.sin(t / (24 * 60 / minutes) * 2 * np.pi)
        + np.random.default_rng(1).normal(0, 1, n),
        minutes,
    )


def test_duplicates_and_nan_are_repaired_and_noted() -> None:
    f = daily()
    f.iloc[10, 0] = np.nan
    f.iloc[11, 0] = np.inf
    f = pd.concat([f, f.iloc[[20, 21]]])
    out = clean(f)
    assert out.refused is None
    assert out.frame.index.is_unique and out.frame.index.is_monotonic_increasing
    assert np.isfinite(out.frame["value"]).all()
    assert "2 duplicate timestamps: the last reading of each kept" in out.notes
    assert "2 NaN or infinite values dropped" in out.notes


def test_a_counter_becomes_a_rate_and_its_resets_are_left_out() -> None:
    kw = np.where(np.arange(10 * 96) % 96 < 48, 10.0, 4.0)  # 10 kW by night, 4 kW by day
    kwh = np.cumsum(kw / 4)  # kWh every 15 minutes
    kwh[500:] -= kwh[499]  # the meter was reset to 0
    out = clean(frame(kwh), counter=True)
    assert out.refused is None
    assert "1 counter resets: those steps left out" in out.notes
    assert len(out.frame) == len(kwh) - 2  # the first reading has no rate; the reset step
    assert np.allclose(out.frame["value"], np.delete(kw[1:], 499))


def test_a_unit_change_is_rescaled() -> None:
    f = daily()
    cut = len(f) // 2
    f.iloc[cut:, 0] = f.iloc[cut:, 0] * 1000  # reconfigured from kWh to Wh
    out = clean(f)
    assert any(n.startswith("unit change on") for n in out.notes), out.notes
    assert out.frame["value"].max() > 30_000 and out.frame["value"].min() > 10_000


@pytest.mark.parametrize(
    ("history", "why"),
    [
        (frame(np.full(10 * 96, 12.5)), "constant at 12.5: nothing to learn"),
        (daily(days=3), "only 3.0 days of history (at least 7 needed)"),
        (frame([]), "only 0.0 days of history"),
    ],
)
def test_untrainable_histories_are_refused_with_the_reason(history: pd.DataFrame, why: str) -> None:
    out = clean(history)
    assert out.refused is not None and out.refused.startswith(why)


def test_gaps_are_kept_and_counted() -> None:
    f = daily()
    f = f.drop(f.index[100:140])
    assert "1 gaps longer than an hour (kept as gaps)" in clean(f).notes


def test_the_registry_keeps_versions_and_refuses_bad_files(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    history = daily(days=14)
    model = make("seasonal").fit(history)
    first = reg.save("pm-1", "power_kw", model, {"rows": len(history)})
    second = reg.save("pm-1", "power_kw", model, {"rows": len(history)})
    assert (first.version, second.version) == (1, 2)
    latest = reg.latest("pm-1", "power_kw")
    assert latest is not None and latest.version == 2
    again = reg.load(latest)
    pd.testing.assert_frame_equal(again.score(history), model.score(history))
    assert reg.latest("pm-2", "power_kw") is None
    with pytest.raises(ModelError, match="cannot name a model"):
        reg.latest("../etc", "power_kw")

    # a file changed after it was written
    second.path.write_bytes(second.path.read_bytes()[:-10])
    with pytest.raises(ModelError, match=r"is corrupt .* campus model train --devices pm-1"):
        reg.load(second)
    # from an older detector version (its checksum refreshed, so the content is what is judged)
    doc = joblib.load(first.path)
    doc["detector_version"] = 0
    joblib.dump(doc, first.path)
    meta = json.loads(first.path.with_suffix(".json").read_text())
    meta.pop("sha256")
    first.path.with_suffix(".json").write_text(json.dumps(meta))
    stale = reg._saved("pm-1", "power_kw", 1)
    with pytest.raises(ModelError, match="version 0; this platform reads version"):
        reg.load(stale)
    # not a model at all
    joblib.dump(["something else"], first.path)
    with pytest.raises(ModelError, match="registry format"):
        reg.load(stale)
