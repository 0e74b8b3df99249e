"""``campus model evaluate``: every detector on a NAB-format corpus, under
NAB's rules (online, one block of rows at a time, learning only from what came
before: blocks of 5 rows for detectors cheap to refit, :data:`REFIT_EVERY`;
the first 15 % of a series is its probationary period), scored by
:mod:`models.nab` exactly as NAB scores.

Two threshold choices are reported per detector and profile:

* ``standard``, ``low_fp``, ``low_fn``: NAB's own way, one threshold per
  profile chosen on the whole corpus (so on the labels being scored, as every
  published NAB figure is);
* ``held_out``: the corpus split in two halves of series (alternate files by
  name), the threshold chosen on one half and applied to the other, both
  ways: the figure a new campus can expect from a threshold set elsewhere.

Every detector is reported twice: as it scores, and as ``<name>+onset``, its
scores reduced to their onsets (:func:`models.nab.onsets`), which is what
NAB's scoring rewards.
"""

from __future__ import annotations

import fnmatch
import multiprocessing as mp
import time
from pathlib import Path
from typing import IO, Any

import numpy as np

from models.detectors import make
from models.nab import (
    PROFILES,
    NabSeries,
    evaluate,
    load_corpus,
    onset_window,
    onsets,
    run_online,
)

REFIT_EVERY: dict[str, int] = {"static": 5}
"""Rows between refits for detectors whose fit is cheap (``static`` takes a
few quantiles: about a millisecond on a year of 5-minute rows). The others
are refitted once per block (:func:`models.nab.run_online`'s default), their
fits taking seconds. A band learnt from every row before scores far better
on NAB than one fixed for an eighth of the series (``static+onset``: 55.5
with blocks, 61.9 every 5 rows; docs/anomaly.md)."""


def _score_one(args: tuple[str, NabSeries]) -> tuple[str, str, np.ndarray]:
    name, series = args
    return name, series.name, run_online(lambda: make(name), series, REFIT_EVERY.get(name))


def evaluate_nab(
    dataset: Path,
    detectors: list[str],
    files: list[str] | None = None,
    log: IO[str] | None = None,
    processes: int | None = None,
) -> dict[str, Any]:
    """Run ``detectors`` over the corpus in ``dataset``; the figures per detector."""
    t0 = time.monotonic()
    corpus = load_corpus(dataset)
    if files:
        corpus = [s for s in corpus if any(fnmatch.fnmatchcase(s.name, g) for g in files)]
    jobs = [(name, s) for name in detectors for s in corpus]
    scores: dict[str, dict[str, np.ndarray]] = {name: {} for name in detectors}
    workers = processes or min(2, mp.cpu_count())
    with mp.get_context("spawn").Pool(workers) as pool:
        for i, (name, file, out) in enumerate(pool.imap_unordered(_score_one, jobs), 1):
            scores[name][file] = out
            if log is not None:
                print(f"[{i}/{len(jobs)}] {name} {file}", file=log, flush=True)
    for name in detectors:  # each detector also as its onsets (models.nab.onsets)
        by_file = {s.name: s for s in corpus}
        scores[f"{name}+onset"] = {
            f: onsets(v, onset_window(len(by_file[f].frame))) for f, v in scores[name].items()
        }
    report: dict[str, Any] = {"detectors": {}, "files": len(corpus)}
    halves = (corpus[0::2], corpus[1::2])
    for name in scores:
        whole = evaluate(corpus, scores[name])
        fig: dict[str, Any] = {p: round(whole[p]["score"], 2) for p in PROFILES}
        fig["thresholds"] = {p: whole[p]["threshold"] for p in PROFILES}
        fig.update({k: round(whole[k], 4) for k in ("precision", "recall", "f1")})
        fig["held_out"] = _held_out(halves, scores[name])
        report["detectors"][name] = fig
    report["seconds"] = round(time.monotonic() - t0, 1)
    return report


def _held_out(
    halves: tuple[list[NabSeries], list[NabSeries]], scores: dict[str, np.ndarray]
) -> dict[str, float]:
    """Per profile: thresholds chosen on one half, scored on the other, both ways,
    the raw scores summed and normalised over the whole corpus."""
    from models.nab import normalised, optimise_threshold, score_file

    out = {}
    corpus = halves[0] + halves[1]
    for profile in PROFILES:
        raw = 0.0
        for train, test in (halves, halves[::-1]):
            if not train or not test:
                continue
            threshold, _ = optimise_threshold(train, scores, profile)
            for s in test:
                raw += score_file(s, scores[s.name] >= threshold, profile).score
        out[profile] = round(normalised(raw, corpus, profile), 2)
    return out
