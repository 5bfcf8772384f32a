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


def fake_games(job):
    """Stand-in for study.final_eval_one: 4 greedy games won by seed 0's source, none by another's; 4 sampled, all won."""
    source, method, seed, _, _ = job
    rows = games(method, seed, [seed == 0] * 4).assign(bots=source)
    return pd.concat([rows, games(method, seed, [True] * 4, actions="sampled").assign(bots=source)]).to_dict("records")


def test_curriculum_sources_beside_the_archived_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(reports.study, "RESULTS", tmp_path)
    monkeypatch.setattr(reports.study, "final_eval_one", fake_games)
    monkeypatch.setattr(reports.study, "preset_bots", lambda preset: preset)
    (tmp_path / "medium").mkdir()
    (tmp_path / "small").mkdir()
    curriculum = [games("attention from small", 0, [True]), games("attention from small", 1, [True])]
    pd.concat([*curriculum, games("plain from small", 0, [False])]).to_csv(tmp_path / "medium" / "final_eval.csv")
    archived = [games("attention", 0, [True, False]), games("plain", 0, [False, False]), games("attention", 1, [True])]
    pd.concat(archived).assign(bots="small").to_csv(tmp_path / "small" / "final_eval.csv")
    for extractor, seed in (("attention", 0), ("plain", 0)):  # attention seed 1's source is not here
        folder = reports.study.run_dir("small", extractor, seed)
        folder.mkdir(parents=True)
        (folder / "final_model.zip").write_bytes(b"")
    reports.curriculum_sources("medium", workers=1)
    text = (tmp_path / "small" / "curriculum_sources.md").read_text()
    assert "| attention | 0 | 0.50 | 1.00 | - | 1.00 |" in text
    assert "| attention | 1 | 1.00 | - | - | - |" in text
    assert "| plain | 0 | 0.00 | 1.00 | - | 1.00 |" in text
    assert "| attention | mean of 2 | 0.75 | 1.00 | - | 1.00 |" in text  # each column over the runs it has
    assert "| plain | mean of 1 | 0.00 | 1.00 | - | 1.00 |" in text
    table = pd.read_csv(tmp_path / "small" / "curriculum_sources.csv")
    assert sorted(set(zip(table["method"], table["seed"]))) == [
        ("attention (curriculum source)", 0),
        ("plain (curriculum source)", 0),
    ]
    monkeypatch.setattr(reports.study, "final_eval_one", None)  # a second call plays nothing again
    reports.curriculum_sources("medium", workers=1)
    assert (tmp_path / "small" / "curriculum_sources.md").read_text() == text


def test_rliable_report_keeps_the_registered_comparison_apart_from_the_curriculum(tmp_path, monkeypatch):
    monkeypatch.setattr(reports.study, "RESULTS", tmp_path)
    monkeypatch.setattr(reports.study, "preset_bots", lambda preset: "medium")
    (tmp_path / "medium").mkdir()
    runs = [
        games(method, seed, [seed % 2 == 0, seed > 1])
        for method in ("attention", "plain", "attention from small")
        for seed in range(3)
    ]
    table = pd.concat([*runs, games("plain", 0, [True, True], actions="sampled")], ignore_index=True)
    table.assign(territory_share=0.25).to_csv(tmp_path / "medium" / "final_eval.csv", index=False)
    reports.rliable_report("medium")
    registered = pd.read_csv(tmp_path / "medium" / "scores_win_rate.csv")
    assert sorted(set(registered["method"])) == ["attention", "plain"]
    assert registered.loc[registered["seed"] == 2, "score"].tolist() == [1.0, 1.0]  # greedy games only
    curriculum = pd.read_csv(tmp_path / "medium" / "scores_curriculum_win_rate.csv")
    assert sorted(set(curriculum["method"])) == ["attention", "attention from small", "plain"]
    text = (tmp_path / "medium" / "report_curriculum_win_rate" / "report.md").read_text()
    assert text.startswith("# Report\n\n**Descriptive.**")
    assert "Descriptive" not in (tmp_path / "medium" / "report_win_rate" / "report.md").read_text()
