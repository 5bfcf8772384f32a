"""Study runner: spec checks, skipping finished runs, surviving kill -9, the lock, and Ray = local."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from sb3_masked_attention.evaluation.study import StudyFailed, load_study, run_study, study_lock, worker_pool
from sb3_masked_attention.machine import cpu_name, machine_record

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
    assert list(scores.columns) == ["method", "env", "seed", "timesteps", "score", "wall_seconds", "steps_per_s"]
    assert len(scores) == 2 * 2 * 2  # methods x seeds x (evaluations at 64 and 128)
    assert sorted(scores["timesteps"].unique()) == [64, 128]
    for _, run in scores.groupby(["method", "seed"]):  # training clock: grows, excludes evaluations, gives steps/s
        first, last = run.sort_values("timesteps")["wall_seconds"].to_numpy()
        assert 0 < first < last and run["steps_per_s"].nunique() == 1
        assert run["steps_per_s"].iloc[0] == pytest.approx(128 / last, rel=0.5)
    assert set(scores["score"]) <= {-1.0, 0.0, 1.0}
    result = tmp_path / "out" / "runs" / "none" / "sb3ma-TMaze-v0" / "seed1" / "result.csv"
    # what ran, as plain data: the conf file's entry with the study's overrides (a changed conf file shows)
    settings = yaml.safe_load((result.parent / "hyperparams.yml").read_text())
    assert {key: settings[key] for key in TINY_PPO} == TINY_PPO and settings["n_timesteps"] == 128
    assert settings["policy_kwargs"] == {"head_mask_strategy": "none"}
    entry = yaml.safe_load((ROOT / "zoo_configs" / "ppo.yml").read_text())["sb3ma/TMaze-v0"]
    assert settings["policy"] == entry["policy"] and settings["env_wrapper"] == entry["env_wrapper"]
    # and where it ran: the CPU and the versions that decide its numbers
    machine = yaml.safe_load((result.parent / "machine.yml").read_text())
    assert machine == machine_record() and machine["cpu"] == cpu_name() and machine["torch"] == torch.__version__
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
    # the driver's scores.csv, written after a run's result.csv: waiting for the run's file alone raced the driver
    while not (out / "scores.csv").exists() and time.time() < deadline and process.poll() is None:
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
    process.kill()  # only the driver, and not reaped yet (a zombie answers os.kill): its worker must notice and stop
    time.sleep(3)
    files = sorted(p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file())
    time.sleep(2)
    assert sorted(p.stat().st_mtime_ns for p in run_dir.rglob("*") if p.is_file()) == files, (
        "an orphan worker is still training"
    )
    process.wait()


def test_worker_pool_refuses_no_workers_and_runs_in_other_processes():
    with pytest.raises(ValueError, match="workers=0"):
        worker_pool(0)
    with worker_pool(2) as pool:  # the pool count-answers and the study runner share
        pids = set(pool.map(_own_pid, range(8)))
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def _own_pid(_: int) -> int:
    time.sleep(0.05)
    return os.getpid()


def test_second_runner_is_refused(tmp_path, lock_held_elsewhere):
    study = write_study(tmp_path / "study.yml")
    with lock_held_elsewhere(tmp_path / "out"), pytest.raises(ValueError, match="being written by another process"):
        run_study(study, tmp_path / "out", progress=False)
    with study_lock(tmp_path / "out"):  # the lock is free again once that process is gone
        pass


def test_a_finished_study_says_it_has_nothing_to_do(tmp_path, capsys):
    study = write_study(tmp_path / "study.yml", seeds=1, methods=("none",), n_timesteps=64)
    run_study(study, tmp_path / "out", workers=1, progress=False)
    assert "already in" not in capsys.readouterr().out
    run_study(study, tmp_path / "out", workers=1, progress=False)
    assert f"1 of 1 runs already in {tmp_path / 'out'} (kept): nothing to do; pass --dir NEW" in capsys.readouterr().out


def test_changed_study_is_refused(tmp_path):
    study = write_study(tmp_path / "study.yml", seeds=1, methods=("none",), n_timesteps=64)
    run_study(study, tmp_path / "out", workers=1, progress=False)
    write_study(study, seeds=1, methods=("none",), n_timesteps=128)
    with pytest.raises(ValueError, match="was started with envs="):
        run_study(study, tmp_path / "out", progress=False)


def test_runs_of_a_changed_conf_entry_are_not_mixed_with_the_finished_ones(tmp_path):
    """A conf file is not part of the recorded spec: when its entry changed after some runs finished, the study
    refuses to add runs of the new settings beside them, naming the setting, until those runs are moved out."""
    conf = tmp_path / "conf.yml"
    entry = yaml.safe_load((ROOT / "zoo_configs" / "ppo.yml").read_text())["sb3ma/TMaze-v0"]
    conf.write_text(yaml.safe_dump({"sb3ma/TMaze-v0": entry}))
    study = write_study(tmp_path / "study.yml", seeds=2, methods=("none",), n_timesteps=64)
    spec = yaml.safe_load(study.read_text())
    spec["methods"]["none"]["conf_file"] = str(conf)
    study.write_text(yaml.safe_dump(spec))
    run_study(study, tmp_path / "out", workers=1, progress=False)
    runs = tmp_path / "out" / "runs" / "none" / "sb3ma-TMaze-v0"
    record = runs / "seed0" / "hyperparams.yml"  # an older record's form of the same settings: not a change
    older = {**yaml.safe_load(record.read_text()), "policy_kwargs": "dict(head_mask_strategy='none')"}
    record.write_text(yaml.safe_dump(older))
    shutil.rmtree(runs / "seed1")  # a run to redo (killed, or taken out)
    conf.write_text(yaml.safe_dump({"sb3ma/TMaze-v0": {**entry, "gamma": 0.5}}))
    with pytest.raises(
        ValueError,
        match=r"seed0 trained with no gamma \(the algorithm's default\) but the study now gives gamma=0.5 \(1 setting",
    ):
        run_study(study, tmp_path / "out", workers=1, progress=False)
    assert not (runs / "seed1").exists()
    conf.write_text(yaml.safe_dump({"sb3ma/TMaze-v0": entry}))  # the entry it ran: resumes
    scores = run_study(study, tmp_path / "out", workers=1, progress=False)
    assert sorted(scores["seed"].unique()) == [0, 1]


def test_ray_backend_gives_the_local_results(tmp_path):
    pytest.importorskip("ray")
    study = write_study(tmp_path / "study.yml", seeds=1)
    local = run_study(study, tmp_path / "local", workers=2, progress=False)
    remote = run_study(study, tmp_path / "ray", backend="ray", workers=2, progress=False)
    timing = ["wall_seconds", "steps_per_s"]  # clocks differ between any two runs; scores must not
    pd.testing.assert_frame_equal(local.drop(columns=timing), remote.drop(columns=timing))


MARKER = "sb3ma-study-marker"


def _method(**hyperparams):
    return {"algo": "ppo", "conf_file": str(ROOT / "zoo_configs" / "ppo.yml"), "hyperparams": {**TINY_PPO, **hyperparams}}


def _env(**entry):
    return {"sb3ma/TMaze-v0": {"n_timesteps": 64, **entry}}


CODE = "dict(features_extractor_kwargs=__import__('os').system('touch " + MARKER + "'))"


def _listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as /proc/net/tcp* write them) of sockets listening on ``port``."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_local_ray_listens_on_the_loopback_interface_only():
    ray = pytest.importorskip("ray")
    from sb3_masked_attention.evaluation.study import start_local_ray

    loopback = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1 as IPv4 and as IPv4-mapped IPv6
    start_local_ray(1)
    try:
        host, gcs_port = ray.get_runtime_context().gcs_address.rsplit(":", 1)
        node = ray.nodes()[0]
        assert host == "127.0.0.1" and node["NodeManagerAddress"] == "127.0.0.1"
        for port in (int(gcs_port), node["NodeManagerPort"], node["ObjectManagerPort"]):
            assert _listening_addresses(port) and _listening_addresses(port) <= loopback, port
    finally:
        ray.shutdown()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"envs": None}, "has no 'envs'"),
        ({"seeds": "ten"}, "seeds='ten'"),
        ({"seeds": 0}, "seeds=0"),
        ({"seeds": [0, 0]}, r"repeat \[0\]: each seed is one run"),
        ({"seeds": [-1]}, "integers >= 0"),
        ({"seed": 1}, r"study file study.yml has unknown key\(s\) \['seed'\]"),
        ({"eval_frequency": 64}, r"unknown key\(s\) \['eval_frequency'\]"),
        ({"envs": _env(env_kwrgs={"corridor_length": 3})}, r"env 'sb3ma/TMaze-v0' has unknown key\(s\) \['env_kwrgs'\]"),
        (
            {"envs": _env(env_kwargs={"corridor_lenght": 3})},
            r"env 'sb3ma/TMaze-v0': keyword argument\(s\) \['corridor_lenght'\] not accepted",
        ),
        ({"envs": {"NoSuchEnv-v0": {"n_timesteps": 64}}}, "env 'NoSuchEnv-v0' is not registered"),
        ({"envs": {"os:Evil-v0": {"n_timesteps": 64}}}, "'os:Evil-v0' is not usable as a folder name"),
        ({"envs": {"../x": {"n_timesteps": 64}}}, "'../x' is not usable as a folder name"),
        ({"methods": {"../../x": _method()}}, "method '../../x' is not usable as a folder name"),
        ({"methods": {".hidden": _method()}}, "'.hidden' is not usable"),
        ({"name": "a/b"}, "name 'a/b' is not usable"),
        ({"methods": {"m": {"algo": "ppo", "policy": "x"}}}, r"unknown key\(s\) \['policy'\]"),
        ({"methods": {"m": {"algo": "ppo", "conf_file": "nope.yml"}}}, "conf_file 'nope.yml' does not exist"),
        ({"methods": {"m": {"algo": "ppo", "conf_file": "study.yml.py"}}}, "is not a .yml/.yaml file"),
        ({"methods": {"m": {"conf_file": "x"}}}, "has no 'algo'"),
        ({"methods": {"m": {"algo": "ppo_xl"}}}, "algo 'ppo_xl' is unknown to rl-zoo"),
        ({"methods": {"m": _method(bogus=1)}}, "hyperparameter 'bogus' is not read from a received file"),
        ({"methods": {"m": _method(n_timesteps=5)}}, "'n_timesteps' belongs in the env entry"),
        ({"methods": {"m": _method(seed=3)}}, "'seed' is set by the study runner"),
        ({"methods": {"m": _method(env_wrapper="os.system")}}, "'env_wrapper' is not read from a received file"),
        # rl-zoo imports a dotted policy (here the study.py beside the file) and evals replay_buffer_kwargs
        ({"methods": {"m": _method(policy="study.Evil")}}, "policy 'study.Evil' is not a policy name of ppo"),
        ({"methods": {"m": _method(replay_buffer_kwargs=CODE)}}, "'replay_buffer_kwargs' is not read from a received"),
        ({"methods": {"m": _method(action_noise="os.system")}}, "'action_noise' is not read from a received file"),
        ({"methods": {"m": _method(gamma=2)}}, "gamma=2 is outside what SB3 assumes"),
        ({"methods": {"m": _method(n_epochs=0)}}, "n_epochs=0 is outside what SB3 assumes"),
        ({"methods": {"m": _method(vf_coef="os.system")}}, "vf_coef='os.system' is outside what SB3 assumes"),
        ({"methods": {"m": _method(policy_kwargs=CODE)}}, "policy_kwargs=.* is not read: expected dict"),
        # rl-zoo would eval these strings: they must never reach it
        ({"methods": {"m": _method(normalize="__import__('os')")}}, "hyperparams: normalize=.* is not read"),
        ({"methods": {"m": _method(policy_kwargs="dict(pretrained_extractor='trunks/{env}.pt')")}}, "pretrained_extractor"),
        ({"envs": {"CartPoleNoVel-v1": {}}}, "has no 'n_timesteps'"),
    ],
)
def test_bad_study_files_name_the_problem(tmp_path, monkeypatch, change, message):
    monkeypatch.chdir(tmp_path)
    path = write_study(tmp_path / "study.yml")
    for code in ("study.yml.py", "study.py"):
        (tmp_path / code).write_text(f"import os\nos.system('touch {MARKER}')\n")
    spec = yaml.safe_load(path.read_text())
    spec.update(change)
    spec = {key: value for key, value in spec.items() if value is not None}
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match=message):
        load_study(path)
    with pytest.raises(ValueError, match=message):  # and the runner refuses it before any run starts
        run_study(path, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "runs").exists() and not (tmp_path / "out" / "study.yml").exists()
    assert not (tmp_path / MARKER).exists(), "code from the study file ran"


def test_a_key_given_twice_is_refused_at_every_level(tmp_path):
    path = write_study(tmp_path / "study.yml")
    text = path.read_text()
    method = yaml.safe_dump({"none": yaml.safe_load(text)["methods"]["none"]})  # the same method name again
    doubled = text.replace("methods:\n", "methods:\n" + "".join("  " + line + "\n" for line in method.splitlines()), 1)
    path.write_text(doubled)
    with pytest.raises(ValueError, match=r"study.yml': key 'none' appears twice in one mapping \(lines \d+ and \d+\)"):
        load_study(path)
    path.write_text(text + "seeds: 3\n")  # at the top level
    with pytest.raises(ValueError, match="key 'seeds' appears twice"):
        load_study(path)


def test_an_alias_bomb_is_refused_by_its_size(tmp_path):
    path = tmp_path / "study.yml"
    lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]" for p, c in zip("abcdefgh", "bcdefghi")]
    path.write_text("\n".join(lines) + "\n")  # 1e9 values in under 1 KB
    with pytest.raises(ValueError, match=r"stands for 1.23e\+09 values once its aliases are expanded: at most 10000") as error:
        load_study(path)
    assert len(str(error.value)) < 200


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "study.yml"
    path.write_text("name: x\nenvs: {a: 1\nmethods: []\n")
    with pytest.raises(ValueError, match="study file '.*study.yml' is not valid YAML at line 3"):
        load_study(path)


def test_spec_the_policy_rejects_is_refused_before_any_run(tmp_path):
    path = write_study(tmp_path / "study.yml", seeds=1, methods=("none",))
    spec = yaml.safe_load(path.read_text())
    spec["methods"]["none"]["hyperparams"]["policy_kwargs"] = "dict(head_mask_strateg='none')"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match="'none' on env 'sb3ma/TMaze-v0' cannot be built: TypeError: .*head_mask_strateg"):
        run_study(path, tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "runs").exists()
    spec["methods"]["none"]["hyperparams"]["policy_kwargs"] = "dict(head_mask_strategy='none')"  # fixed: the study starts
    path.write_text(yaml.safe_dump(spec))
    assert len(run_study(path, tmp_path / "out", workers=1, progress=False)) == 2


def test_a_failed_run_is_reported_and_the_others_kept(tmp_path):
    path = write_study(tmp_path / "study.yml", seeds=1, methods=("none",))
    spec = yaml.safe_load(path.read_text())
    # ent_coef="auto" (SAC's) passes every check and fails at PPO's first update
    spec["methods"]["broken"] = {**spec["methods"]["none"], "hyperparams": {**TINY_PPO, "ent_coef": "auto"}}
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    with pytest.raises(StudyFailed, match="1 run.* failed, first broken/sb3ma-TMaze-v0/seed0: TypeError") as failure:
        run_study(path, out, workers=2, progress=False)
    assert list(failure.value.failed) == ["broken/sb3ma-TMaze-v0/seed0"]
    assert "Traceback" in (out / "runs" / "broken" / "sb3ma-TMaze-v0" / "seed0" / "error.txt").read_text()
    kept = out / "runs" / "none" / "sb3ma-TMaze-v0" / "seed0" / "result.csv"
    assert kept.exists() and set(pd.read_csv(out / "scores.csv")["method"]) == {"none"}
    stamp = kept.stat().st_mtime_ns
    result = subprocess.run(
        [sys.executable, "-m", "sb3_masked_attention.cli", "study", "run", str(path), "--dir", str(out), "--no-progress"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "broken/sb3ma-TMaze-v0/seed0" in result.stderr
    assert kept.stat().st_mtime_ns == stamp, "a finished run was redone"


def test_env_placeholder_in_hyperparams(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = yaml.safe_load(write_study(tmp_path / "s.yml").read_text())
    spec["envs"]["CartPoleNoVel-v1"] = {"n_timesteps": 64}
    spec["methods"]["specialized"]["hyperparams"]["policy_kwargs"] = "dict(pretrained_extractor='trunks/{env}.pt')"
    (tmp_path / "s.yml").write_text(yaml.safe_dump(spec))
    (tmp_path / "trunks").mkdir()
    for slug in ("sb3ma-TMaze-v0", "CartPoleNoVel-v1"):
        (tmp_path / "trunks" / f"{slug}.pt").touch()
    runs = {
        (run.method.name, run.env_id): run.method.hyperparams["policy_kwargs"] for run in load_study(tmp_path / "s.yml").runs
    }
    # dict(...) strings are read as literals here, and the trunk paths made absolute for the workers
    assert runs[("specialized", "sb3ma/TMaze-v0")] == {"pretrained_extractor": str(tmp_path / "trunks/sb3ma-TMaze-v0.pt")}
    assert runs[("specialized", "CartPoleNoVel-v1")] == {"pretrained_extractor": str(tmp_path / "trunks/CartPoleNoVel-v1.pt")}
    assert runs[("none", "CartPoleNoVel-v1")] == {"head_mask_strategy": "none"}


def test_plain_ppo_settings_are_read_from_a_study_file(tmp_path):
    spec = yaml.safe_load(write_study(tmp_path / "s.yml").read_text())
    spec["methods"]["none"]["hyperparams"].update(vf_coef=0.1, target_kl=0.02, ent_coef=0.0)
    (tmp_path / "s.yml").write_text(yaml.safe_dump(spec))
    run = next(run for run in load_study(tmp_path / "s.yml").runs if run.method.name == "none")
    assert {key: run.method.hyperparams[key] for key in ("vf_coef", "target_kl", "ent_coef")} == {
        "vf_coef": 0.1,
        "target_kl": 0.02,
        "ent_coef": 0.0,
    }


def test_one_env_id_as_two_named_tasks(tmp_path):
    """The same env with different env_kwargs: each entry is a task with its own name, folder and scores."""
    path = write_study(tmp_path / "study.yml", seeds=1, methods=("none",), n_timesteps=64)
    spec = yaml.safe_load(path.read_text())
    spec["envs"] = {
        f"TMaze-c{c}": {"env_id": "sb3ma/TMaze-v0", "n_timesteps": 64, "env_kwargs": {"corridor_length": c}} for c in (2, 5)
    }
    path.write_text(yaml.safe_dump(spec))
    study = load_study(path)
    assert [(run.task_name, run.env_id, run.env_kwargs) for run in study.runs] == [
        ("TMaze-c2", "sb3ma/TMaze-v0", {"corridor_length": 2}),
        ("TMaze-c5", "sb3ma/TMaze-v0", {"corridor_length": 5}),
    ]
    scores = run_study(path, tmp_path / "out", workers=1, progress=False)
    assert sorted(scores["env"].unique()) == ["TMaze-c2", "TMaze-c5"]
    assert (tmp_path / "out" / "runs" / "none" / "TMaze-c5" / "seed0" / "result.csv").exists()
    spec["envs"]["TMaze-c5"]["env_id"] = "sb3ma/NoSuchEnv-v0"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match="NoSuchEnv"):
        load_study(path)


def test_a_method_may_have_its_own_seeds(tmp_path):
    path = write_study(tmp_path / "study.yml", seeds=3, methods=("specialized", "none"), n_timesteps=64)
    spec = yaml.safe_load(path.read_text())
    spec["methods"]["none"]["seeds"] = [1, 5]
    path.write_text(yaml.safe_dump(spec))
    runs = [(run.method.name, run.seed) for run in load_study(path).runs]
    assert runs == [("specialized", 0), ("none", 1), ("specialized", 1), ("specialized", 2), ("none", 5)]  # keys sorted
    spec["methods"]["none"]["seeds"] = [2, 2]
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match=r"method 'none': seeds=\[2, 2\] repeat \[2\]"):
        load_study(path)


def test_a_run_can_keep_its_model_without_changing_what_it_scores(tmp_path):
    import torch
    from stable_baselines3 import PPO

    from sb3_masked_attention.episodes import play_episodes
    from sb3_masked_attention.evaluation.study import execute_run
    from sb3_masked_attention.zoo import make_zoo_model

    run = load_study(write_study(tmp_path / "study.yml", seeds=1, methods=("none",))).runs[0]
    plain = execute_run(run, str(tmp_path / "plain"))
    kept = execute_run(run, str(tmp_path / "kept"), model_path=str(tmp_path / "model.zip"))
    assert [(r["timesteps"], r["score"]) for r in kept] == [(r["timesteps"], r["score"]) for r in plain]
    assert sorted(p.name for p in tmp_path.glob("*.zip")) == ["model.zip"]  # no partial file left
    # the kept model is the trained one: played as the run's last evaluation was, it scores what that scored
    zoo = make_zoo_model("ppo", run.env_id, tmp_path / "zoo", conf_file=run.method.conf_file,
                         hyperparams=run.method.hyperparams, env_kwargs=run.env_kwargs)  # fmt: skip
    model = PPO.load(tmp_path / "model.zip", device="cpu")
    trained, initial = model.policy.state_dict(), zoo.model.policy.state_dict()  # zoo.model: the same seed, untrained
    assert any(not torch.equal(trained[key], initial[key]) for key in initial)
    eval_env = zoo.make_eval_env(1, seed=run.seed + 10_000)
    assert play_episodes(model, eval_env, run.eval_episodes).mean == kept[-1]["score"]


def test_cpu_name_reads_the_model_name_and_falls_back_without_proc(monkeypatch):
    import platform

    from sb3_masked_attention import machine

    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        if names:
            assert cpu_name() == names[0]

    def unreadable(self, *args, **kwargs):
        raise OSError("no /proc here")

    monkeypatch.setattr(machine.Path, "read_text", unreadable)
    assert cpu_name() == (platform.processor() or platform.machine())
