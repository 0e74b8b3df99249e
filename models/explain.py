"""The picture of an anomaly: a day of readings with the model's expected
value, its band and the readings it called anomalous; and the one-line
explanation an alert carries."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd


def explanation(row: Mapping[str, Any], value: float, unit: str = "") -> str:
    """``expected 42.1 kW (band 30.2 to 55.0), actual 81.3 kW, score 0.93;
    moved most by: ...`` for one scored row."""
    u = f" {unit}" if unit else ""
    text = (
        f"expected {row['expected']:.4g}{u} (band {row['lower']:.4g} to {row['upper']:.4g}), "
        f"actual {value:.4g}{u}, score {row['score']:.2f}"
    )
    if isinstance(row.get("drivers"), str) and row["drivers"]:
        text += f"; moved most by: {row['drivers']}"
    return text


def plot_day(
    readings: pd.DataFrame, scores: pd.DataFrame, path: Path, title: str, threshold: float = 0.5
) -> Path:
    """Write a PNG of ``readings`` (``value``) with the band and expected value
    of ``scores`` and the rows scoring above ``threshold`` marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=100)
    idx = scores.index
    ax.fill_between(
        idx,
        scores["lower"].to_numpy(dtype=float),
        scores["upper"].to_numpy(dtype=float),
        color="#9ecae1",
        alpha=0.5,
        label="normal band",
    )
    ax.plot(idx, scores["expected"], color="#3182bd", lw=1, label="expected")
    ax.plot(readings.index, readings["value"], color="#222222", lw=1, label="actual")
    odd = scores["score"] > threshold
    if odd.any():
        ax.scatter(
            idx[odd],
            readings["value"].reindex(idx[odd]),
            color="#d62728",
            s=12,
            zorder=3,
            label=f"score > {threshold:g}",
        )
    ax.set_title(title, fontsize=10)
    ax.legend(loc="upper left", fontsize=8, ncol=4)
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
