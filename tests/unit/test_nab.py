"""models.nab against NAB's own published results (the dataset in /work/shared/datasets/nab)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from models.base import Detector, ModelError, band_score
from models.baselines import StaticThreshold
from models.nab import (
    COSTS,
    PROFILES,
    NabSeries,
    evaluate,
    load_corpus,
    normalised,
    onset_window,
    onsets,
    optimise_threshold,
    probation_rows,
    row_weights,
    run_online,
    score_file,
)
from tests.conftest import SHARED

NAB = SHARED / "datasets" / "nab"
REFERENCE = ("ARTime", "numenta")
KNOWN_CAUSE = "realKnownCause/"

pytestmark = pytest.mark.skipif(not NAB.is_dir(), reason="NAB dataset not present")


@pytest.fixture(scope="module")
def corpus() -> list[NabSeries]:
    return load_corpus(NAB)


@pytest.fixture(scope="module")
def known_cause(corpus: list[NabSeries]) -> list[NabSeries]:
    return [s for s in corpus if s.name.startswith(KNOWN_CAUSE)]


@cache
def _thresholds() -> dict[str, Any]:
    out: dict[str, Any] = json.loads((NAB / "config" / "thresholds.json").read_text())
    return out


@cache
def _published(detector: str, profile_key: str) -> pd.DataFrame:
    table = pd.read_csv(NAB / "results" / detector / f"{detector}_{profile_key}_scores.csv")
    return table[table["Detector"] != "Totals"].set_index("File")


@cache
def _outputs(detector: str, name: str) -> pd.DataFrame:
    category, file = name.split("/")
    return pd.read_csv(NAB / "results" / detector / category / f"{detector}_{file}")


def _anomaly_scores(detector: str, series: list[NabSeries]) -> dict[str, np.ndarray]:
    return {s.name: _outputs(detector, s.name)["anomaly_score"].to_numpy(float) for s in series}


def test_probation_is_15_percent_capped_at_750() -> None:
    assert probation_rows(1000) == 150
    assert probation_rows(4032) == 604
    assert probation_rows(5000) == 750
    assert probation_rows(22695) == 750
    assert probation_rows(5) == 0


def test_cost_matrices_are_nabs() -> None:
    profiles = json.loads((NAB / "config" / "profiles.json").read_text())
    for short, key in PROFILES.items():
        matrix = profiles[key]["CostMatrix"]
        cost = COSTS[short]
        assert (cost.tp, cost.fp, cost.fn) == (
            matrix["tpWeight"],
            matrix["fpWeight"],
            matrix["fnWeight"],
        )


def test_corpus_shape(corpus: list[NabSeries]) -> None:
    assert len(corpus) == 58
    assert sum(len(s.windows) for s in corpus) == 116
    taxi = next(s for s in corpus if s.name == "realKnownCause/nyc_taxi.csv")
    assert taxi.frame.index.name == "timestamp"
    assert str(taxi.frame.index.tz) == "UTC"
    assert taxi.frame["value"].dtype == float
    assert len(taxi.frame) == 10320
    assert taxi.windows[0] == (
        pd.Timestamp("2014-10-30 15:30", tz="UTC"),
        pd.Timestamp("2014-11-03 22:30", tz="UTC"),
    )


@pytest.mark.parametrize("detector", REFERENCE)
@pytest.mark.parametrize("profile", list(PROFILES))
def test_score_file_reproduces_published_scores(
    known_cause: list[NabSeries], detector: str, profile: str
) -> None:
    key = PROFILES[profile]
    threshold = _thresholds()[detector][key]["threshold"]
    published = _published(detector, key)
    assert len(known_cause) == 7
    for series in known_cause:
        scores = _outputs(detector, series.name)["anomaly_score"].to_numpy(float)
        got = score_file(series, scores >= threshold, profile)
        row = published.loc[series.name]
        # ARTime's table is exact to the last bit; numenta's was written with 12 digits.
        assert got.score == pytest.approx(row["Score"], abs=1e-11), series.name
        assert (got.tp, got.tn, got.fp, got.fn) == (row["TP"], row["TN"], row["FP"], row["FN"])
        # NAB's older run (numenta) wrote the file length as Total_Count, newer runs the rows scored
        assert row["Total_Count"] in (got.total, len(series.frame))
        assert got.total == len(series.frame) - probation_rows(len(series.frame))


@pytest.mark.parametrize("profile", list(PROFILES))
def test_row_weights_match_nabs_s_of_t(known_cause: list[NabSeries], profile: str) -> None:
    for series in known_cause:
        published = _outputs("ARTime", series.name)[f"S(t)_{PROFILES[profile]}"].to_numpy(float)
        np.testing.assert_allclose(row_weights(series, profile), published, rtol=0, atol=1e-15)


def test_null_detector_loses_one_per_window(corpus: list[NabSeries]) -> None:
    published = _published("null", "standard")
    for series in corpus:
        never = np.zeros(len(series.frame), dtype=bool)
        got = score_file(series, never, "standard")
        assert got.score == -len(series.windows)
        assert got.score == published.loc[series.name, "Score"]
        assert (got.windows_hit, got.windows_total, got.fp_events) == (0, len(series.windows), 0)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_null_scores_0_and_perfect_100(corpus: list[NabSeries], profile: str) -> None:
    null = perfect = 0.0
    for series in corpus:
        n = len(series.frame)
        null += score_file(series, np.zeros(n, dtype=bool), profile).score
        starts = np.zeros(n, dtype=bool)
        for start, _ in series.windows:
            starts[np.flatnonzero(series.frame.index == start)[0]] = True
        got = score_file(series, starts, profile)
        assert got.windows_hit == len(series.windows)
        perfect += got.score
    assert null == -116 * COSTS[profile].fn
    assert perfect == pytest.approx(116 * COSTS[profile].tp, abs=1e-12)
    assert normalised(null, corpus, profile) == 0.0
    assert normalised(perfect, corpus, profile) == pytest.approx(100.0, abs=1e-12)


@pytest.mark.parametrize("detector", REFERENCE)
def test_normalised_reproduces_final_results(corpus: list[NabSeries], detector: str) -> None:
    final = json.loads((NAB / "results" / "final_results.json").read_text())
    for profile, key in PROFILES.items():
        raw = _published(detector, key)["Score"].sum()
        assert raw == pytest.approx(_thresholds()[detector][key]["score"], abs=1e-8)
        assert normalised(raw, corpus, profile) == pytest.approx(final[detector][key], abs=0.05)
        assert normalised(raw, corpus, profile) == pytest.approx(final[detector][key], abs=1e-8)


@pytest.mark.parametrize("detector", REFERENCE)
@pytest.mark.parametrize("profile", list(PROFILES))
def test_optimised_threshold_beats_published(
    known_cause: list[NabSeries], detector: str, profile: str
) -> None:
    scores = _anomaly_scores(detector, known_cause)
    threshold, raw = optimise_threshold(known_cause, scores, profile)
    at = sum(score_file(s, scores[s.name] >= threshold, profile).score for s in known_cause)
    assert raw == pytest.approx(at, abs=1e-9)
    published = _thresholds()[detector][PROFILES[profile]]["threshold"]
    at_published = sum(
        score_file(s, scores[s.name] >= published, profile).score for s in known_cause
    )
    assert raw >= at_published - 1e-12


def test_optimiser_is_an_exact_sweep(known_cause: list[NabSeries]) -> None:
    subset = known_cause[:3]
    coarse = {k: np.round(v, 2) for k, v in _anomaly_scores("numenta", subset).items()}
    threshold, raw = optimise_threshold(subset, coarse, "standard")
    candidates = np.unique(np.concatenate(list(coarse.values())))
    brute = [
        sum(score_file(s, coarse[s.name] >= t, "standard").score for s in subset)
        for t in candidates
    ]
    top = max(brute)
    assert top > -sum(len(s.windows) for s in subset)
    assert raw == pytest.approx(top, abs=1e-12)
    # ties (extra detections that change nothing) go to the highest threshold, as in NAB
    assert threshold == max(t for t, b in zip(candidates, brute, strict=True) if b >= top - 1e-12)


def test_optimiser_prefers_never_firing_when_every_threshold_loses(
    known_cause: list[NabSeries],
) -> None:
    series = known_cause[0]
    n = len(series.frame)
    outside = np.ones(n)
    for start, end in series.windows:
        index = series.frame.index
        outside[(index >= start) & (index <= end)] = 0.0
    threshold, raw = optimise_threshold([series], {series.name: outside}, "standard")
    assert threshold == 1.1
    assert raw == -len(series.windows)


def test_evaluate_figures(known_cause: list[NabSeries]) -> None:
    scores = _anomaly_scores("ARTime", known_cause)
    result = evaluate(known_cause, scores)
    for profile in PROFILES:
        assert set(result[profile]) == {"threshold", "raw", "score"}
        assert result[profile]["score"] == pytest.approx(
            normalised(result[profile]["raw"], known_cause, profile)
        )
    threshold = result["standard"]["threshold"]
    assert result["window_threshold"] == threshold
    hit = sum(
        score_file(s, scores[s.name] >= threshold, "standard").windows_hit for s in known_cause
    )
    assert result["windows_hit"] == hit
    assert result["windows_total"] == sum(len(s.windows) for s in known_cause) == 19
    assert result["recall"] == pytest.approx(hit / 19)
    assert result["precision"] == pytest.approx(hit / (hit + result["fp_events"]))
    p, r = result["precision"], result["recall"]
    assert result["f1"] == pytest.approx(2 * p * r / (p + r))


class _ZScore(Detector):
    """Rolling mean/std z-score that remembers what it was fitted on."""

    name = "test-zscore"
    seen: list[tuple[pd.Timestamp, int, pd.Timestamp]] = []

    def __init__(self) -> None:
        self.tail = pd.Series(dtype=float)
        self.fitted_max: pd.Timestamp | None = None
        self.fitted_rows = 0

    def fit(self, history: pd.DataFrame) -> _ZScore:
        self.tail = history["value"].iloc[-48:]
        self.fitted_max = history.index.max()
        self.fitted_rows = len(history)
        return self

    def score(self, frame: pd.DataFrame) -> pd.DataFrame:
        assert self.fitted_max is not None
        _ZScore.seen.append((self.fitted_max, self.fitted_rows, frame.index.max()))
        values = pd.concat([self.tail, frame["value"]])
        mean = values.rolling(48, min_periods=2).mean().shift(1).iloc[len(self.tail) :]
        std = values.rolling(48, min_periods=2).std().shift(1).iloc[len(self.tail) :]
        x = frame["value"].to_numpy(float)
        width = 3 * np.maximum(std.to_numpy(float), 1e-9)
        centre = mean.to_numpy(float)
        out = pd.DataFrame(index=frame.index)
        out["expected"] = centre
        out["lower"] = centre - width
        out["upper"] = centre + width
        out["score"] = band_score(x, centre - width, centre + width)
        out["drivers"] = ""
        return out

    def state(self) -> dict[str, Any]:
        return {"tail": self.tail.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _ZScore:
        detector = cls()
        detector.tail = pd.Series(state["tail"], dtype=float)
        return detector


def test_run_online_never_sees_the_future(known_cause: list[NabSeries]) -> None:
    series = next(
        s for s in known_cause if s.name.endswith("ambient_temperature_system_failure.csv")
    )
    n = len(series.frame)
    p = probation_rows(n)
    _ZScore.seen.clear()
    progress: list[tuple[int, int]] = []
    scores = run_online(
        _ZScore, series, progress=lambda done, total: progress.append((done, total))
    )
    assert scores.shape == (n,)
    assert scores.dtype == float
    assert not scores[:p].any()
    assert scores[p:].max() > 0.5
    assert progress[-1] == (n, n)
    step = max(p, n // 8, 100)
    assert len(_ZScore.seen) == -(-(n - p) // step)
    index = series.frame.index
    next_row = p
    for fitted_max, fitted_rows, scored_last in _ZScore.seen:
        assert fitted_rows == next_row  # fitted on every row before the block ...
        assert fitted_max == index[next_row - 1] < index[next_row]
        end = min(next_row + step, n)
        assert scored_last == index[end - 1]  # ... and nothing after it was scored
        next_row = end
    assert next_row == n


def test_run_online_refit_every(known_cause: list[NabSeries]) -> None:
    series = known_cause[0]
    _ZScore.seen.clear()
    run_online(_ZScore, series, refit_every=2000)
    assert [rows for _, rows, _ in _ZScore.seen][:2] == [
        probation_rows(len(series.frame)),
        probation_rows(len(series.frame)) + 2000,
    ]
    with pytest.raises(ModelError, match="refit_every"):
        run_online(_ZScore, series, refit_every=0)


def test_run_online_static_learns_from_every_row_before(known_cause: list[NabSeries]) -> None:
    """Refitted every row, ``static`` scores each row against the band of all
    the rows before it, and is shown no row before its block (it needs none)."""
    series = known_cause[0]
    frame = series.frame.iloc[:1200]
    short = NabSeries(series.name, frame, [])
    shown: list[int] = []

    class Shown(StaticThreshold):
        def score(self, rows: pd.DataFrame) -> pd.DataFrame:
            shown.append(len(rows))
            return super().score(rows)

    scores = run_online(Shown, short, refit_every=1)
    p = probation_rows(len(frame))
    assert shown == [1] * (len(frame) - p)
    for row in (p, p + 1, 1000, 1199):
        alone = StaticThreshold().fit(frame.iloc[:row]).score(frame.iloc[row : row + 1])
        assert scores[row] == pytest.approx(alone["score"].iloc[0], abs=1e-12)


def test_folder_without_labels(tmp_path: Path) -> None:
    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "data" / "cat" / "a.csv").write_text("timestamp,value\n2014-01-01 00:00:00,1\n")
    with pytest.raises(ModelError, match=r"labels/combined_windows\.json is missing"):
        load_corpus(tmp_path)


def test_csv_without_value_column(tmp_path: Path) -> None:
    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "combined_windows.json").write_text('{"cat/a.csv": []}')
    (tmp_path / "data" / "cat" / "a.csv").write_text("timestamp,reading\n2014-01-01 00:00:00,1\n")
    with pytest.raises(ModelError, match=r"cat/a\.csv.*missing value"):
        load_corpus(tmp_path)


def test_window_not_on_a_row(tmp_path: Path) -> None:
    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    windows = {"cat/a.csv": [["2014-01-01 00:30:00.000000", "2014-01-01 01:00:00.000000"]]}
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    rows = "".join(f"2014-01-01 0{h}:00:00,{h}\n" for h in range(4))
    (tmp_path / "data" / "cat" / "a.csv").write_text("timestamp,value\n" + rows)
    with pytest.raises(ModelError, match=r"cat/a\.csv.*not a timestamp"):
        load_corpus(tmp_path)
    with pytest.raises(ModelError, match="no entry"):
        load_corpus(tmp_path, ["cat/b.csv"])


def test_onsets_keep_only_new_highs_and_never_look_ahead() -> None:
    s = np.array([0.1, 0.9, 0.95, 0.9, 0.2, 0.1, 0.1, 0.1, 0.8, 0.99])
    out = onsets(s, window=3)
    assert out.tolist() == [0.1, 0.9, 0.95, 0.0, 0.0, 0.0, 0.0, 0.0, 0.8, 0.99]
    for k in range(1, len(s)):  # a prefix gives the same rows
        assert onsets(s[:k], 3).tolist() == out[:k].tolist()
    assert onset_window(100) == 12 and onset_window(10_000) == 150
