"""Study runner: spec checks, skipping finished runs, surviving kill -9, the lock, and Ray = local."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from sb3_masked_attention.evaluation.study import load_study, run_study, study_lock

ROOT = Path(__file__).resolve().parents[1]
TINY_PPO = {"n_envs": 2, "n_steps": 32, "batch_size": 64, "n_epochs": 1}


def write_study(path: Path, seeds=2, methods=("specialized", "none"), n_timesteps=128, **extra) -> Path:
    spec = {
        "name": "tiny",
        "seeds": seeds,
        "eval_freq": 64,
        "eval_episodes": 2,
        "envs": {"sb3ma/TMaze-v0": {"n_timesteps": n_timesteps, "env_kwargs": {"corridor_length": 3}}},
        "methods": {
            m: {
                "algo": "ppo",
                "conf_file": str(ROOT / "zoo_configs" / "ppo.yml"),
                "hyperparams": {**TINY_PPO, "policy_kwargs": f"dict(head_mask_strategy='{m}')"},
            }
            for m in methods
        },
        **extra,
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def test_local_study_writes_scores_and_skips_finished_runs(tmp_path):
    study = write_study(tmp_path / "study.yml")
    scores = run_study(study, tmp_path / "out", workers=2, progress=False)
    assert list(scores.columns) == ["method", "env", "seed", "timesteps", "score"]
    assert len(scores) == 2 * 2 * 2  # methods x seeds x (evaluations at 64 and 128)
    assert sorted(scores["timesteps"].unique()) == [64, 128]
    assert set(scores["score"]) <= {-1.0, 0.0, 1.0}
    result = tmp_path / "out" / "runs" / "none" / "sb3ma-TMaze-v0" / "seed1" / "result.csv"
    before = result.stat().st_mtime_ns
    again = run_study(study, tmp_path / "out", workers=2, progress=False)
    pd.testing.assert_frame_equal(again, scores)
    assert result.stat().st_mtime_ns == before, "a finished run was redone"


def test_killed_study_resumes_without_redoing_or_corrupting(tmp_path):
    study = write_study(tmp_path / "study.yml", seeds=3, methods=("specialized",), n_timesteps=256)
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "sb3_masked_attention.cli",
        "study",
        "run",
        str(study),
        "--dir",
        str(out),
        "--workers",
        "1",
        "--no-progress",
    ]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = out / "runs" / "specialized" / "sb3ma-TMaze-v0" / "seed0" / "result.csv"
    deadline = time.time() + 240
    while not first.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # kill -9 the runner and its workers
    process.wait()
    assert first.exists(), "no run finished before the deadline"
    stamp = first.stat().st_mtime_ns
    partial = pd.read_csv(out / "scores.csv")  # whole, never half-written
    assert set(partial["seed"]) <= {0, 1, 2} and 0 in set(partial["seed"])
    scores = run_study(study, out, workers=1, progress=False)
    assert first.stat().st_mtime_ns == stamp, "a finished run was redone"
    assert sorted(scores.groupby("seed").size().index) == [0, 1, 2]
    assert len(scores) == 3 * 4  # every run: evaluations at 64, 128, 192, 256
    assert not list(out.rglob(".*.csv*")), "a temporary file was left behind"


def test_workers_end_when_the_driver_is_killed(tmp_path):
    study = write_study(tmp_path / "study.yml", seeds=1, methods=("none",), n_timesteps=100_000)
    command = [
        sys.executable,
        "-m",
        "sb3_masked_attention.cli",
        "study",
        "run",
        str(study),
        "--dir",
        str(tmp_path / "out"),
        "--workers",
        "1",
        "--no-progress",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_dir = tmp_path / "out" / "runs" / "none" / "sb3ma-TMaze-v0" / "seed0"
    deadline = time.time() + 120
    while not (run_dir / "tensorboard").exists() and time.time() < deadline:
        time.sleep(0.2)
    process.kill()  # only the driver: its worker must notice and stop
    process.wait()
    time.sleep(3)
    files = sorted(p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file())
    time.sleep(2)
    assert sorted(p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()) == files, (
        "an orphan worker is still training"
    )


def test_second_runner_is_refused(tmp_path):
    study = write_study(tmp_path / "study.yml")
    with study_lock(tmp_path / "out"), pytest.raises(ValueError, match="being run by another process"):
        run_study(study, tmp_path / "out", progress=False)


def test_changed_study_is_refused(tmp_path):
    study = write_study(tmp_path / "study.yml", seeds=1, methods=("none",), n_timesteps=64)
    run_study(study, tmp_path / "out", workers=1, progress=False)
    write_study(study, seeds=1, methods=("none",), n_timesteps=128)
    with pytest.raises(ValueError, match="was started with envs="):
        run_study(study, tmp_path / "out", progress=False)


def test_ray_backend_gives_the_local_results(tmp_path):
    pytest.importorskip("ray")
    study = write_study(tmp_path / "study.yml", seeds=1)
    local = run_study(study, tmp_path / "local", workers=2, progress=False)
    remote = run_study(study, tmp_path / "ray", backend="ray", workers=2, progress=False)
    pd.testing.assert_frame_equal(local, remote)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"envs": None}, "has no 'envs'"),
        ({"seeds": "ten"}, "seeds='ten'"),
        ({"seeds": 0}, "seeds=0"),
        ({"methods": {"m": {"algo": "ppo", "policy": "x"}}}, r"unknown key\(s\) \['policy'\]"),
        ({"methods": {"m": {"algo": "ppo", "conf_file": "nope.yml"}}}, "conf_file 'nope.yml' does not exist"),
        ({"methods": {"m": {"conf_file": "x"}}}, "has no 'algo'"),
        ({"envs": {"CartPoleNoVel-v1": {}}}, "has no 'n_timesteps'"),
    ],
)
def test_bad_study_files_name_the_problem(tmp_path, change, message):
    path = write_study(tmp_path / "study.yml")
    spec = yaml.safe_load(path.read_text())
    spec.update(change)
    spec = {key: value for key, value in spec.items() if value is not None}
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match=message):
        load_study(path)


def test_env_placeholder_in_hyperparams(tmp_path):
    spec = yaml.safe_load(write_study(tmp_path / "s.yml").read_text())
    spec["envs"]["CartPoleNoVel-v1"] = {"n_timesteps": 64}
    spec["methods"]["specialized"]["hyperparams"]["policy_kwargs"] = "dict(pretrained_extractor='trunks/{env}.pt')"
    (tmp_path / "s.yml").write_text(yaml.safe_dump(spec))
    runs = {
        (run.method.name, run.env_id): run.method.hyperparams["policy_kwargs"] for run in load_study(tmp_path / "s.yml").runs
    }
    assert runs[("specialized", "sb3ma/TMaze-v0")] == "dict(pretrained_extractor='trunks/sb3ma-TMaze-v0.pt')"
    assert runs[("specialized", "CartPoleNoVel-v1")] == "dict(pretrained_extractor='trunks/CartPoleNoVel-v1.pt')"
    assert runs[("none", "CartPoleNoVel-v1")] == "dict(head_mask_strategy='none')"
