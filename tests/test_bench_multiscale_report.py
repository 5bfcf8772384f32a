"""bench/multiscale_report.py's tables: the curriculum table's level, steps to reach it (median, k/n) and win rates."""

import importlib.util
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_multiscale_report", ROOT / "bench" / "multiscale_report.py")
reports = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reports)


def curve(method, seed, wins):
    return pd.DataFrame({"method": method, "seed": seed, "timesteps": [0, 10, 20, 30][: len(wins)], "mean_is_success": wins})


def games(method, seed, wins, actions="greedy"):
    return pd.DataFrame({"bots": "medium", "method": method, "seed": seed, "actions": actions, "won": wins})


def test_curriculum_table_levels_steps_and_win_rates():
    curves = pd.concat(
        [
            curve("attention", 0, [0.0, 0.2, 0.4, 0.4]),  # scratch: last evaluations 0.4 and 0.6 -> level 0.5
            curve("attention", 1, [0.0, 0.0, 0.5, 0.6]),  # reaches 0.5 at step 20
            curve("attention from small", 0, [0.5, 0.1, 0.7, 0.2]),  # at step 0
            curve("attention from small", 1, [0.1, 0.6, 0.3, 0.3]),  # at step 10
            curve("attention from small", 2, [0.1, 0.2, 0.3, 0.4]),  # never
        ],
        ignore_index=True,
    )
    table = pd.concat(
        [
            games("attention", 0, [True, False]),
            games("attention", 1, [False, False]),
            games("attention from small", 0, [True, True]),
            games("attention from small", 1, [True, False]),
            games("attention from small", 2, [False, False]),
            games("attention from small", 2, [True, True], actions="sampled"),  # not the endpoint: left out
        ],
        ignore_index=True,
    )
    lines = reports.curriculum_table("medium", table, curves).splitlines()
    assert lines[2] == "| attention | scratch | 2 | 0.25 ± 0.35 | 0.50 | 20 | 1/2 |"
    assert lines[3] == "| attention | small | 3 | 0.50 ± 0.50 | 0.50 | 5 | 2/3 |"
    assert len(lines) == 4  # no plain runs: no plain rows
