"""bench/multiscale_study.py's bookkeeping of learning runs: archiving, skipping archived runs, merging archived curves,
and the check of a curriculum source trained again. No training: the runs are stand-ins."""

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def bench(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_multiscale_study", ROOT / "bench" / "multiscale_study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "RESULTS", tmp_path)
    (tmp_path / "settings.json").write_text('{"attention": {}, "plain": {}}')
    monkeypatch.setattr(module, "SETTINGS_FILE", tmp_path / "settings.json")
    return module


def curve(steps, share, win=0.0):
    return pd.DataFrame({"timesteps": steps, "mean_territory_share": share, "mean_is_success": win})


def fake_run(bench, preset, extractor, seed, table, init_from=None, model=True):
    folder = bench.run_dir(preset, extractor, seed, init_from)
    folder.mkdir(parents=True)
    table.to_csv(folder / "evaluations.csv", index=False)
    if model:
        (folder / "final_model.zip").write_bytes(b"")
    return folder


def test_replace_rows_replaces_only_the_runs_rows(bench, tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"method": ["a", "a", "b"], "seed": [0, 1, 0], "x": [1, 2, 3]}).to_csv(path, index=False)
    bench.replace_rows(path, pd.DataFrame({"method": ["a", "a"], "seed": [1, 1], "x": [7, 8]}), "a", 1)
    table = pd.read_csv(path).sort_values(["method", "seed", "x"]).reset_index(drop=True)
    assert table.values.tolist() == [["a", 0, 1], ["a", 1, 7], ["a", 1, 8], ["b", 0, 3]]
    new = tmp_path / "new" / "u.csv"  # a first run writes the file (and its folder)
    bench.replace_rows(new, pd.DataFrame({"method": ["a"], "seed": [0], "x": [5]}), "a", 0)
    assert pd.read_csv(new)["x"].tolist() == [5]


def test_load_evaluations_prefers_the_archive_and_adds_unarchived_runs(bench, tmp_path):
    fake_run(bench, "medium", "attention", 0, curve([10, 20], [0.1, 0.2]))  # archived: a run trained again here
    fake_run(bench, "medium", "attention", 1, curve([10, 20], [0.5, 0.6]))  # finished here, not archived yet
    fake_run(bench, "medium", "plain", 0, curve([10], [0.7]), model=False)  # unfinished: not a result
    archived = pd.concat(
        [
            curve([10, 20], [0.9, 0.9]).assign(method="attention", seed=0),
            curve([10, 20], [0.3, 0.4]).assign(method="plain", seed=3),  # no folder here
        ]
    )
    (tmp_path / "medium").mkdir()
    archived.to_csv(tmp_path / "medium" / "evaluations.csv", index=False)
    table = bench.load_evaluations("medium")
    shares = table.groupby(["method", "seed"])["mean_territory_share"].apply(list).to_dict()
    assert shares == {("attention", 0): [0.9, 0.9], ("attention", 1): [0.5, 0.6], ("plain", 3): [0.3, 0.4]}


def test_learn_skips_archived_runs_and_trains_a_lost_curriculum_source_first(bench, tmp_path, monkeypatch):
    calls, checked, archived = [], [], []
    monkeypatch.setattr(bench, "learn_one", lambda job: calls.append(job) or 0)
    monkeypatch.setattr(bench, "check_regenerated", lambda *args: checked.append(args))
    monkeypatch.setattr(bench, "archive_run", lambda *job: archived.append(job))
    (tmp_path / "medium").mkdir()
    games = {"method": ["attention from small"], "seed": [0], "won": [True]}
    pd.DataFrame(games).to_csv(tmp_path / "medium" / "final_eval.csv", index=False)
    fake_run(bench, "small", "attention", 1, curve([10], [0.5]))  # seed 1's source model is here
    bench.learn("medium", [0, 1, 2], ["attention"], workers=1, init_from="small")
    assert calls == [
        ("medium", "attention", 1, "small"),
        ("small", "attention", 2, None),  # seed 2's source is gone: trained again before its curriculum run
        ("medium", "attention", 2, "small"),
    ]
    assert checked == [("small", "attention", 2)]
    assert archived == [("medium", "attention", 1, "small"), ("medium", "attention", 2, "small")]


def test_learn_does_not_archive_a_failed_run(bench, monkeypatch):
    archived = []
    monkeypatch.setattr(bench, "learn_one", lambda job: 1)
    monkeypatch.setattr(bench, "archive_run", lambda *job: archived.append(job))
    bench.learn("medium", [0], ["plain"], workers=1, init_from=None)
    assert archived == []


@pytest.mark.parametrize("shift, identical", [(0.0, True), (0.25, False)])
def test_check_regenerated_compares_the_curve_with_the_archive(bench, tmp_path, shift, identical):
    (tmp_path / "small").mkdir()
    curve([10, 20], [0.1, 0.2], [0.0, 0.5]).assign(method="plain", seed=4).to_csv(
        tmp_path / "small" / "evaluations.csv", index=False
    )
    fake_run(bench, "small", "plain", 4, curve([10, 20], [0.1, 0.2 + shift], [0.0, 0.5]))
    bench.check_regenerated("small", "plain", 4)
    row = pd.read_csv(tmp_path / "small" / "regenerated_models.csv").iloc[-1]
    assert bool(row["identical"]) is identical
    assert row["max_diff_land_share"] == pytest.approx(shift)
    assert row["max_diff_win_rate"] == 0.0 and row["evaluations"] == 2 == row["archived_evaluations"]


def test_check_regenerated_reports_a_curve_of_another_length(bench, tmp_path):
    (tmp_path / "small").mkdir()
    curve([10, 20], [0.1, 0.2]).assign(method="plain", seed=0).to_csv(tmp_path / "small" / "evaluations.csv", index=False)
    fake_run(bench, "small", "plain", 0, curve([10], [0.1]))
    bench.check_regenerated("small", "plain", 0)
    row = pd.read_csv(tmp_path / "small" / "regenerated_models.csv").iloc[-1]
    assert not bool(row["identical"]) and row["evaluations"] == 1 and pd.isna(row["max_diff_land_share"])


def test_a_run_started_by_the_study_ends_when_its_driver_is_killed(bench, tmp_path):
    """``_train``'s command ends with its driver (kill -9 included); a plain ``sb3ma train-multiscale`` trained on."""
    import subprocess
    import sys
    import time

    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    out = tmp_path / "run"
    args = ["train-multiscale", "--preset", "small", "--total-timesteps", "1000000", "--output-dir", str(out)]
    args += ["--torch-threads", "1", "--no-subprocess", "--no-progress"]
    child = subprocess.Popen(
        bench.cli_command(args, driver_pid=driver.pid), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 120
        while not out.exists() and time.time() < deadline:  # the CLI made its run folder: it is training
            time.sleep(0.2)
        assert child.poll() is None, "the run ended before its driver"
        driver.kill()  # not reaped yet: a zombie still answers os.kill, and the child must see through it
        assert child.wait(timeout=15) != 0
    finally:
        for process in (child, driver):
            process.kill()
            process.wait()
