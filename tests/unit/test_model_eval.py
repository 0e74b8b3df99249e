"""`campus model evaluate` on NAB data prints the figures NAB would, and the
simulated-fault evaluation counts alerts the way the shipped rule raises them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from click.testing import CliRunner

from campus.cli import main
from models.simeval import alerts, best_per_kind, cost
from tests.conftest import SHARED

NAB = SHARED / "datasets" / "nab"


def test_evaluate_prints_nab_scores_as_json() -> None:
    result = CliRunner().invoke(
        main,
        [
            "model", "evaluate", "--dataset", str(NAB), "--detectors", "static,zscore",
            "--files", "realKnownCause/ambient_temperature_system_failure.csv",
            "--files", "realKnownCause/cpu_utilization_asg_misconfiguration.csv", "--json",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["files"] == 2
    for name in ("static", "zscore"):
        fig = report["detectors"][name]
        assert {"standard", "low_fp", "low_fn", "f1", "held_out"} <= set(fig)
        # normalised: 0 is the detector that never fires, 100 the perfect one
        assert -200 < fig["standard"] <= 100 and 0 <= fig["f1"] <= 1


def test_evaluate_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(main, ["model", "evaluate", "--dataset", str(NAB), "--detectors", "magic"])
    assert r.exit_code == 2 and "unknown detector(s) magic" in r.output
    r = runner.invoke(main, ["model", "evaluate"])
    assert r.exit_code == 2 and "give either --dataset DIR or --simulated" in r.output
    (tmp_path / "data").mkdir()
    r = runner.invoke(main, ["model", "evaluate", "--dataset", str(tmp_path)])
    assert r.exit_code == 1 and "combined_windows.json" in r.output
    assert "Traceback" not in r.output


def test_an_alert_needs_the_score_high_for_the_hold_time() -> None:
    index = pd.date_range("2026-10-12", periods=200, freq="1min", tz="UTC")
    s = np.zeros(200)
    s[10:30] = 0.95  # 20 minutes: too short
    s[50:120] = 0.95  # 70 minutes: one alert, at 30 minutes
    s[150:200] = 0.95
    s[170] = 0.2  # broken before 30 minutes twice: none
    fired = alerts(pd.Series(s, index=index))
    assert fired == [index[80]]


def test_the_best_detector_is_the_one_whose_results_cost_least() -> None:
    rows = [
        {"kind": "power", "detector": "a", "false_alerts": 0, "delay_h": None},  # 1
        {"kind": "power", "detector": "b", "false_alerts": 3, "delay_h": 2.0},  # 0.76
        {"kind": "power", "detector": "c", "false_alerts": 1, "delay_h": 9.0},  # 0.30
        {"kind": "power", "detector": "d", "false_alerts": 1, "delay_h": 4.0},  # 0.27
        {"kind": "hvac", "detector": "noisy", "false_alerts": 17, "delay_h": 1.0},  # 4.26
        {"kind": "hvac", "detector": "quiet", "false_alerts": 0, "delay_h": None},  # 1
    ]
    assert best_per_kind(rows) == {"power": "d", "hvac": "quiet"}
    assert cost(rows[:1]) == 1.0 and round(cost(rows[3:4]), 4) == round(0.25 + 4 / 168, 4)
