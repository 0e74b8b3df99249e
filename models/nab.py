"""The Numenta Anomaly Benchmark (NAB v1.1): its corpus, and its scoring reproduced exactly.

NAB is the public yardstick for streaming anomaly detectors: 58 labelled
univariate series, each anomaly surrounded by a window, and a score that
rewards detecting an anomaly early inside its window, charges for false
positives (less when they fall just after a window) and for missed windows.
Reproducing NAB's own numbers lets the campus detectors be compared with the
published scoreboard (ARTime, Numenta HTM, ...) on equal terms.

What NAB does, and so what this module does (NAB v1.1, ``nab/sweeper.py``,
``nab/optimizer.py``, ``nab/runner.py``):

* **Probationary period**: the first ``min(floor(0.15 n), 750)`` rows of a
  series of ``n`` rows are for learning only. Rows there are neither counted
  nor scored; a window entirely inside it is ignored.
* **Row weights**: a row in window ``[L, R]`` (``W = R - L + 1`` rows) sits
  at ``x = -(R - i + 1) / W`` (``-1`` at ``L``); a detection there is worth
  ``A_TP * s(x) / s(-1)`` where ``s(x) = 2 sigmoid(-5 x) - 1``, so ``A_TP`` at
  the window's first row, falling towards 0 at its end. A row outside every
  window after window ``[L, R]`` sits at ``x = (i - R) / (W - 1)`` and a
  detection there costs ``A_FP * s(x)`` (``s`` is taken as -1 beyond
  ``x = 3``); before the first window it costs ``A_FP``.
* **File score**: each window counts once: the weight of its earliest
  detection, or ``-A_FN`` when nothing in it was detected; every detection
  outside the windows adds its (negative) weight.
* **Counts** (``TP``, ``TN``, ``FP``, ``FN``) are rows after the probationary
  period, as in NAB's published ``*_scores.csv``.
* **Threshold**: one per detector and profile for the whole corpus, the one
  that maximises the summed raw score; a row is a detection when its anomaly
  score is ``>=`` the threshold.
* **Normalisation**: ``100 * (raw - null) / (perfect - null)``, ``null`` the
  score of a detector that never fires, ``perfect`` that of one that fires at
  the first row of each window (``-116`` and ``+116`` on NAB's standard
  profile).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.base import Detector, ModelError

PROFILES: dict[str, str] = {
    "standard": "standard",
    "low_fp": "reward_low_FP_rate",
    "low_fn": "reward_low_FN_rate",
}
"""Profile names used in outputs, mapped to NAB's profile keys."""

PROBATION_FRACTION = 0.15
PROBATION_CAP = PROBATION_FRACTION * 5000


@dataclass(frozen=True)
class CostMatrix:
    """The weights of one NAB profile (``config/profiles.json``)."""

    tp: float
    fp: float
    fn: float


COSTS: dict[str, CostMatrix] = {
    "standard": CostMatrix(tp=1.0, fp=0.11, fn=1.0),
    "low_fp": CostMatrix(tp=1.0, fp=0.22, fn=1.0),
    "low_fn": CostMatrix(tp=1.0, fp=0.11, fn=2.0),
}
"""NAB's cost matrices, keyed like :data:`PROFILES`."""

_NO_DETECTION_THRESHOLD = 1.1


@dataclass
class NabSeries:
    """One NAB data file with its label windows.

    ``frame`` has a UTC :class:`~pandas.DatetimeIndex` named ``timestamp`` and
    a float column ``value``; ``windows`` are (start, end) pairs of UTC
    timestamps, both rows of ``frame``, in time order.

    The rows are NAB's, in file order, because NAB scores rows by position:
    a few files repeat a timestamp or step back an hour at a daylight-saving
    change (``realKnownCause/machine_temperature_system_failure.csv`` at
    2014-01-07 02:55, a dozen ``03:00`` rows on 2014-03-09 in several AWS
    files), so the index is not always unique or increasing. A window limit
    refers to the first row with that timestamp, as in NAB.
    """

    name: str
    frame: pd.DataFrame
    windows: list[tuple[pd.Timestamp, pd.Timestamp]]


@dataclass(frozen=True)
class FileScore:
    """How one file scores under one profile.

    ``score`` is NAB's raw score; ``tp``/``tn``/``fp``/``fn`` count rows after
    the probationary period (``total`` of them), as NAB's published tables do.
    ``windows_hit`` of ``windows_total`` windows hold at least one detection;
    ``fp_events`` is the number of detections outside every window.
    """

    score: float
    tp: int
    tn: int
    fp: int
    fn: int
    total: int
    windows_hit: int
    windows_total: int
    fp_events: int


def profile_name(profile: str) -> str:
    """The short profile name (``standard``, ``low_fp``, ``low_fn``) for either
    a short name or NAB's key (``reward_low_FP_rate``, ...)."""
    if profile in PROFILES:
        return profile
    for short, key in PROFILES.items():
        if profile == key:
            return short
    known = ", ".join([*PROFILES, *PROFILES.values()])
    raise ModelError(f"unknown NAB profile {profile!r} (known: {known})")


def probation_rows(n: int) -> int:
    """NAB's probationary period for a series of ``n`` rows:
    ``min(floor(0.15 n), 750)``, computed in floating point as NAB does."""
    return int(min(math.floor(PROBATION_FRACTION * n), PROBATION_CAP))


def load_corpus(root: Path, files: Sequence[str] | None = None) -> list[NabSeries]:
    """The NAB series under ``root`` (``data/<category>/<file>.csv`` and
    ``labels/combined_windows.json``), all labelled files in name order or the
    ``files`` named (``"realKnownCause/nyc_taxi.csv"``) in the order given.

    Raises :class:`ModelError`, naming the file, when the folder is not
    NAB-shaped: no labels file, a file without labels or data, a CSV without
    ``timestamp``/``value`` columns, or a window limit that is not a row.
    """
    root = Path(root)
    labels_path = root / "labels" / "combined_windows.json"
    if not labels_path.is_file():
        raise ModelError(f"{root} is not a NAB folder: {labels_path} is missing")
    try:
        labels = json.loads(labels_path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{labels_path}: not readable JSON ({exc})") from exc
    if not isinstance(labels, dict):
        raise ModelError(f"{labels_path}: expected an object of file -> windows")
    names = sorted(labels) if files is None else list(files)
    corpus = []
    for name in names:
        if name not in labels:
            raise ModelError(f"{name} has no entry in {labels_path}")
        frame = _read_series(root / "data" / name)
        try:
            windows = [
                (pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC"))
                for start, end in labels[name]
            ]
        except (TypeError, ValueError) as exc:
            raise ModelError(f"{labels_path}: bad windows for {name} ({exc})") from exc
        series = NabSeries(name=name, frame=frame, windows=sorted(windows))
        _window_bounds(series)
        corpus.append(series)
    return corpus


def _read_series(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ModelError(f"NAB data file {path} is missing")
    try:
        raw = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable CSV ({exc})") from exc
    missing = {"timestamp", "value"} - set(raw.columns)
    if missing:
        raise ModelError(
            f"{path}: needs columns timestamp,value; missing {', '.join(sorted(missing))}"
        )
    try:
        index = pd.DatetimeIndex(pd.to_datetime(raw["timestamp"], utc=True), name="timestamp")
        values = pd.to_numeric(raw["value"]).to_numpy(dtype=float)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable timestamp or value ({exc})") from exc
    return pd.DataFrame({"value": values}, index=index)


def _window_bounds(series: NabSeries) -> np.ndarray:
    """Row indices ``[[L, R], ...]`` of the windows (both inclusive)."""
    index = series.frame.index
    bounds = np.empty((len(series.windows), 2), dtype=np.int64)
    for k, limits in enumerate(series.windows):
        for j, limit in enumerate(limits):
            found = np.flatnonzero(index == limit)
            if not found.size:
                raise ModelError(
                    f"{series.name}: window limit {limit} is not a timestamp of the file"
                )
            bounds[k, j] = found[0]
        if bounds[k, 1] < bounds[k, 0]:
            raise ModelError(f"{series.name}: window {limits} ends before it starts")
        if k and bounds[k, 0] <= bounds[k - 1, 1]:
            raise ModelError(f"{series.name}: windows {series.windows[k - 1]} and {limits} overlap")
    return bounds


def _scaled_sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        sig = 1.0 / (1.0 + np.exp(5.0 * x))
    return np.where(x > 3.0, -1.0, 2.0 * sig - 1.0)


def _row_weights(n: int, bounds: np.ndarray, cost: CostMatrix) -> np.ndarray:
    i = np.arange(n)
    out = np.full(n, -cost.fp)
    if not len(bounds):
        return out
    left, right = bounds[:, 0], bounds[:, 1]
    width = (right - left + 1).astype(float)
    # the last window starting at or before each row
    k = np.searchsorted(left, i, side="right") - 1
    started = k >= 0
    kk = np.where(started, k, 0)
    inside = started & (i <= right[kk])
    after = started & ~inside
    max_tp = 2.0 / (1.0 + math.exp(-5.0)) - 1.0
    pos_in = -(right[kk] - i + 1) / width[kk]
    out[inside] = _scaled_sigmoid(pos_in[inside]) * cost.tp / max_tp
    with np.errstate(divide="ignore", invalid="ignore"):
        pos_after = np.abs(right[kk] - i) / (width[kk] - 1.0)
    out[after] = _scaled_sigmoid(pos_after[after]) * cost.fp
    return out


def _window_ids(n: int, bounds: np.ndarray) -> np.ndarray:
    ids = np.full(n, -1, dtype=np.int64)
    for k, (left, right) in enumerate(bounds):
        ids[left : right + 1] = k
    return ids


def row_weights(series: NabSeries, profile: str) -> np.ndarray:
    """NAB's per-row weight ``S(t)`` under ``profile``: what a detection on that
    row would be worth (the ``S(t)_<profile>`` columns of NAB's result files;
    probationary rows included, though they are never scored)."""
    cost = COSTS[profile_name(profile)]
    return _row_weights(len(series.frame), _window_bounds(series), cost)


def score_file(series: NabSeries, detections: np.ndarray, profile: str) -> FileScore:
    """NAB's score of one file given a detection flag per row, under ``profile``.

    Rows in the probationary period are ignored; each window scores the
    weight of its earliest detection or ``-A_FN``; each detection outside the
    windows adds its weight (see the module docstring).
    """
    cost = COSTS[profile_name(profile)]
    n = len(series.frame)
    det = np.asarray(detections, dtype=bool)
    if det.shape != (n,):
        raise ModelError(f"{series.name}: {det.shape} detections for {n} rows")
    bounds = _window_bounds(series)
    weights = _row_weights(n, bounds, cost)
    p = probation_rows(n)
    scored = np.arange(n) >= p
    inside = _window_ids(n, bounds) >= 0
    hits = det & scored
    false_pos = hits & ~inside
    score = float(weights[false_pos].sum())
    windows_hit = windows_total = 0
    for left, right in bounds:
        first = max(int(left), p)
        if first > right:
            continue
        windows_total += 1
        found = np.flatnonzero(hits[first : right + 1])
        if found.size:
            windows_hit += 1
            score += float(weights[first + found[0]])
        else:
            score -= cost.fn
    fp = int(false_pos.sum())
    return FileScore(
        score=score,
        tp=int((hits & inside).sum()),
        tn=int((scored & ~inside & ~det).sum()),
        fp=fp,
        fn=int((scored & inside & ~det).sum()),
        total=int(scored.sum()),
        windows_hit=windows_hit,
        windows_total=windows_total,
        fp_events=fp,
    )


def _scores_for(series: NabSeries, scores: Mapping[str, np.ndarray]) -> np.ndarray:
    if series.name not in scores:
        raise ModelError(f"no anomaly scores for {series.name}")
    values = np.asarray(scores[series.name], dtype=float)
    if values.shape != (len(series.frame),):
        raise ModelError(f"{series.name}: {values.shape} scores for {len(series.frame)} rows")
    return values


def optimise_threshold(
    corpus: Sequence[NabSeries], scores: Mapping[str, np.ndarray], profile: str
) -> tuple[float, float]:
    """The threshold that maximises the raw NAB score summed over ``corpus``
    under ``profile``, and that score: ``(threshold, raw)``.

    An exact sweep over every distinct anomaly score of the scored rows, as
    NAB v1.1's optimizer does (older NAB releases ran a local search): each
    row's score is a candidate threshold (detections are the rows scoring
    ``>=`` it), and so is "never fire", returned as 1.1 as in NAB (or just
    above the highest score if that is higher). Ties go to the highest
    threshold, as in NAB. NaN scores never detect.
    """
    cost = COSTS[profile_name(profile)]
    levels: list[np.ndarray] = []
    deltas: list[np.ndarray] = []
    base = 0.0
    for series in corpus:
        values = _scores_for(series, scores)
        n = len(values)
        bounds = _window_bounds(series)
        weights = _row_weights(n, bounds, cost)
        p = probation_rows(n)
        ids = _window_ids(n, bounds)
        scored = (np.arange(n) >= p) & ~np.isnan(values)
        outside = scored & (ids < 0)
        levels.append(values[outside])
        deltas.append(weights[outside])
        for k, (left, right) in enumerate(bounds):
            if max(int(left), p) > right:
                continue
            base -= cost.fn
            rows = scored & (ids == k)
            order = np.argsort(-values[rows], kind="stable")
            best = np.maximum.accumulate(np.concatenate(([-cost.fn], weights[rows][order])))
            levels.append(values[rows][order])
            deltas.append(np.diff(best))
    level = np.concatenate([np.empty(0), *levels])
    delta = np.concatenate([np.empty(0), *deltas])
    order = np.argsort(-level, kind="stable")
    level, total = level[order], base + np.cumsum(delta[order])
    last = np.flatnonzero(np.append(level[1:] != level[:-1], True))[: level.size]
    never = _NO_DETECTION_THRESHOLD
    if level.size:
        never = max(never, float(np.nextafter(level[0], np.inf)))
    thresholds = np.concatenate(([never], level[last]))
    raws = np.concatenate(([base], total[last]))
    best_at = int(np.argmax(raws))
    return float(thresholds[best_at]), float(raws[best_at])


def _null_and_perfect(corpus: Sequence[NabSeries], profile: str) -> tuple[float, float]:
    null = perfect = 0.0
    for series in corpus:
        n = len(series.frame)
        never = np.zeros(n, dtype=bool)
        starts = never.copy()
        p = probation_rows(n)
        for left, right in _window_bounds(series):
            if max(int(left), p) <= right:
                starts[max(int(left), p)] = True
        null += score_file(series, never, profile).score
        perfect += score_file(series, starts, profile).score
    return null, perfect


def normalised(raw_total: float, corpus: Sequence[NabSeries], profile: str) -> float:
    """NAB's normalised score: ``100 * (raw - null) / (perfect - null)``.

    ``null`` is the raw score of a detector that never fires (``-A_FN`` per
    window) and ``perfect`` that of one firing on the first row of every
    window (``A_TP`` per window), both over ``corpus``; on the full NAB
    corpus these are NAB's own baselines (-116 and 116 in the standard
    profile).
    """
    null, perfect = _null_and_perfect(corpus, profile)
    if perfect == null:
        raise ModelError("the corpus has no scorable windows: the NAB score is undefined")
    return 100.0 * (raw_total - null) / (perfect - null)


def evaluate(
    corpus: Sequence[NabSeries],
    scores: Mapping[str, np.ndarray],
    profiles: Sequence[str] = tuple(PROFILES),
) -> dict[str, Any]:
    """NAB's figures for a detector's ``scores`` (anomaly score per row, keyed
    by series name) over ``corpus``.

    Per profile (short names): ``{"threshold", "raw", "score"}``, the
    threshold chosen on the whole corpus (:func:`optimise_threshold`), the
    summed raw score there and its normalised score (:func:`normalised`).

    Window-level figures at the standard profile's threshold, rows in the
    probationary period ignored: a window is hit when at least one detection
    falls in it; every detection outside all windows is a false-positive
    event. ``precision = hit / (hit + fp_events)``, ``recall = hit /
    windows``, ``f1`` their harmonic mean (0 when undefined). Keys:
    ``precision``, ``recall``, ``f1``, ``windows_hit``, ``windows_total``,
    ``fp_events``, ``window_threshold``.
    """
    out: dict[str, Any] = {}
    for profile in profiles:
        short = profile_name(profile)
        threshold, raw = optimise_threshold(corpus, scores, short)
        out[short] = {
            "threshold": threshold,
            "raw": raw,
            "score": normalised(raw, corpus, short),
        }
    if "standard" in out:
        threshold = out["standard"]["threshold"]
    else:
        threshold, _ = optimise_threshold(corpus, scores, "standard")
    hit = total = fp_events = 0
    for series in corpus:
        fs = score_file(series, _scores_for(series, scores) >= threshold, "standard")
        hit += fs.windows_hit
        total += fs.windows_total
        fp_events += fs.fp_events
    precision = hit / (hit + fp_events) if hit + fp_events else 0.0
    recall = hit / total if total else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    out.update(
        precision=precision,
        recall=recall,
        f1=f1,
        windows_hit=hit,
        windows_total=total,
        fp_events=fp_events,
        window_threshold=threshold,
    )
    return out


def run_online(
    make_detector: Callable[[], Detector],
    series: NabSeries,
    refit_every: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    context: int = 2100,
) -> np.ndarray:
    """A detector's anomaly score for every row of ``series`` under NAB's rules.

    The probationary rows are only learned from and score 0. After them, the
    rows are scored in blocks of ``refit_every`` (default: the probation
    length or an eighth of the series, whichever is longer, at least 100): a
    fresh detector from ``make_detector`` is fitted on every row before the
    block and scores the block with :meth:`~models.base.Detector.score`,
    which lets each row use only itself and the rows before it, so no row is
    scored with knowledge of later rows. The block is scored together with up
    to ``context`` rows before it (a week of 5-minute rows), so that its first
    rows have their lag features too (none for a detector whose
    :meth:`~models.base.Detector.lookback` is zero); only the block's own rows
    are kept.
    A series too short to have a probationary period learns from its first
    row. ``progress(done, n)`` is called after each block.

    NAB's files repeat or step back a timestamp at some daylight-saving
    changes; detectors get a strictly increasing index (a repeated or earlier
    time becomes one second after the row before), rows and order unchanged.
    """
    frame = _increasing(series.frame)
    n = len(frame)
    default = max(probation_rows(n), n // 8, 100)
    step = refit_every if refit_every is not None else default
    if step < 1:
        raise ModelError(f"refit_every must be at least 1, not {step}")
    out = np.zeros(n, dtype=float)
    start = max(probation_rows(n), 1)
    while start < n:
        end = min(start + step, n)
        detector = make_detector().fit(frame.iloc[:start])
        # a detector that judges each row alone needs no rows before the block
        first = max(0, start - context) if detector.lookback() > pd.Timedelta(0) else start
        scored = detector.score(frame.iloc[first:end])
        block = scored.iloc[start - first :]
        if len(block) != end - start or "score" not in block.columns:
            raise ModelError(
                f"{series.name}: detector returned {len(scored)} scores for {end - first} rows"
            )
        out[start:end] = block["score"].to_numpy(dtype=float)
        if progress is not None:
            progress(end, n)
        start = end
    return out


def _increasing(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with a strictly increasing index (see :func:`run_online`)."""
    if frame.index.is_monotonic_increasing and frame.index.is_unique:
        return frame
    ns = frame.index.as_unit("ns").asi8.copy()
    for i in range(1, len(ns)):
        if ns[i] <= ns[i - 1]:
            ns[i] = ns[i - 1] + 1_000_000_000
    out = frame.copy()
    out.index = pd.DatetimeIndex(pd.to_datetime(ns, unit="ns", utc=True), name=frame.index.name)
    return out


def onsets(scores: np.ndarray, window: int) -> np.ndarray:
    """Only the onsets of ``scores``: a row keeps its score where it is higher
    than every score of the ``window`` rows before it, and is 0 elsewhere.

    A detector's score stays high through an anomaly and rises and falls
    with noise; NAB rewards the first detection in a window and charges every
    detection outside one, so what it should be shown is when something new
    begins. Each row still uses only the rows before it.
    """
    s = np.asarray(scores, dtype=float)
    if len(s) == 0 or window < 1:
        return s.copy()
    before = pd.Series(s).shift(1).rolling(window, min_periods=1).max().to_numpy()
    return np.where(np.isnan(before) | (s > before), s, 0.0)


def onset_window(n: int) -> int:
    """The look-back of :func:`onsets` for a series of ``n`` rows: a fifth of
    its probationary period, at least 12 rows (chosen before any scoring)."""
    return max(12, probation_rows(n) // 5)
