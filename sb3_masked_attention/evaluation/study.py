"""Resumable studies: every (method, env, seed) training run of a study file, evaluated periodically.

A study file (YAML) names the methods, the envs and the seeds::

    name: heads
    seeds: 10                      # or a list of seeds
    eval_freq: 5000                # env steps between evaluations
    eval_episodes: 20
    envs:
      sb3ma/TMaze-v0: {n_timesteps: 60000, env_kwargs: {corridor_length: 40}}
      CartPoleNoVel-v1: {n_timesteps: 50000}
    methods:
      specialized:                 # a zoo_configs entry plus overrides
        algo: ppo
        conf_file: zoo_configs/ppo.yml
        hyperparams: {policy_kwargs: "dict(head_mask_strategy='specialized')"}
      recurrent_ppo: {algo: ppo_lstm, conf_file: zoo_configs/ppo_lstm.yml}

``conf_file`` is relative to the study file (default: rl-zoo's own file for ``algo``). In ``hyperparams``
strings, ``{env}`` becomes the env id with ``/`` replaced by ``-`` (e.g. one pretrained trunk per env:
``policy_kwargs: "dict(pretrained_extractor='trunks/{env}.pt')"``).

The study directory holds ``study.yml`` (a copy of the spec; a restart must match it),
``runs/<method>/<env>/seed<k>/`` (rl-zoo logs, TensorBoard, and ``result.csv`` once the run has
finished: its evaluations and its wall time in ``seconds``, to size a study's budget) and
``scores.csv`` (``method,env,seed,timesteps,score``, rebuilt from the finished runs).
Each finished run's result is written atomically, and ``scores.csv`` too: a study killed at any
point (kill -9 included) and started again skips finished runs and starts unfinished ones afresh.
A lock file refuses a second runner on the same directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from sb3_masked_attention.episodes import play_episodes
from sb3_masked_attention.io import atomic_path, write_text_atomic
from sb3_masked_attention.runs import refuse_changes
from sb3_masked_attention.validation import check_int

SCORE_COLUMNS = ["method", "env", "seed", "timesteps", "score"]
BACKENDS = ("local", "ray")


@dataclass(frozen=True)
class Method:
    """An rl-zoo algorithm, its hyperparameter file and overrides (as ``-params`` takes them)."""

    name: str
    algo: str
    conf_file: str | None = None
    hyperparams: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    method: Method
    env_id: str
    seed: int
    n_timesteps: int
    env_kwargs: dict[str, Any]
    eval_freq: int
    eval_episodes: int

    @property
    def key(self) -> str:
        return f"{self.method.name}/{self.env_id.replace('/', '-')}/seed{self.seed}"


@dataclass(frozen=True)
class Study:
    name: str
    runs: tuple[Run, ...]
    spec: dict[str, Any]


def _require(spec: dict, key: str, kind: type, where: str) -> Any:
    if key not in spec:
        raise ValueError(f"{where} has no {key!r}")
    if not isinstance(spec[key], kind):
        raise ValueError(f"{where}: {key}={spec[key]!r} is invalid: expected a {kind.__name__}")
    return spec[key]


def _for_env(method: Method, env_id: str) -> Method:
    """``method`` with ``{env}`` in its hyperparameter strings replaced by the env's slug."""
    slug = env_id.replace("/", "-")
    fill = lambda value: value.replace("{env}", slug) if isinstance(value, str) else value  # noqa: E731
    return Method(method.name, method.algo, method.conf_file, {key: fill(value) for key, value in method.hyperparams.items()})


def load_study(path: str | os.PathLike) -> Study:
    """Parse and check a study file; raise ValueError naming the bad entry."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"study file {str(path)!r} does not exist")
    spec = yaml.safe_load(path.read_text())
    if not isinstance(spec, dict):
        raise ValueError(f"study file {str(path)!r} is not a YAML mapping")
    where = f"study file {path.name}"
    name = str(spec.get("name", path.stem))
    seeds = spec.get("seeds", 3)
    seeds = list(range(check_int("seeds", seeds))) if isinstance(seeds, int) else seeds
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"{where}: seeds={spec.get('seeds')!r} is invalid: expected a count or a list of integers")
    eval_freq = check_int("eval_freq", spec.get("eval_freq", 5000))
    eval_episodes = check_int("eval_episodes", spec.get("eval_episodes", 10))
    envs = _require(spec, "envs", dict, where)
    methods = _require(spec, "methods", dict, where)
    if not envs or not methods:
        raise ValueError(f"{where}: expected at least one env and one method")
    parsed_methods = []
    for method_name, entry in methods.items():
        entry = entry or {}
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: method {method_name!r} must be a mapping with 'algo'")
        algo = _require(entry, "algo", str, f"{where}: method {method_name!r}")
        unknown = set(entry) - {"algo", "conf_file", "hyperparams"}
        if unknown:
            raise ValueError(
                f"{where}: method {method_name!r} has unknown key(s) {sorted(unknown)}: expected algo, conf_file, hyperparams"
            )
        conf_file = entry.get("conf_file")
        if conf_file is not None:
            conf_path = (path.parent / conf_file).resolve()
            if not conf_path.is_file():
                raise ValueError(
                    f"{where}: method {method_name!r} conf_file {conf_file!r} does not exist (relative to the study file)"
                )
            conf_file = str(conf_path)
        parsed_methods.append(Method(str(method_name), algo, conf_file, dict(entry.get("hyperparams") or {})))
    runs = []
    for env_id, entry in envs.items():
        entry = entry or {}
        n_timesteps = check_int(
            f"envs[{env_id!r}].n_timesteps", _require(entry, "n_timesteps", int, f"{where}: env {env_id!r}")
        )
        env_kwargs = dict(entry.get("env_kwargs") or {})
        env_methods = [_for_env(method, str(env_id)) for method in parsed_methods]
        for seed in seeds:
            for method in env_methods:
                runs.append(Run(method, str(env_id), seed, n_timesteps, env_kwargs, eval_freq, eval_episodes))
    return Study(name, tuple(runs), spec)


# ---------------------------------------------------------------- one run (in a worker)
def execute_run(run: Run, run_dir: str, torch_threads: int = 1) -> list[dict[str, Any]]:
    """Train one run from scratch, evaluating every ``eval_freq`` steps and at the end; return the score rows.

    Runs in a worker process (local pool or Ray): one torch thread, rl-zoo builds the model.
    """
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import sync_envs_normalization

    from sb3_masked_attention.zoo import make_zoo_model

    torch.set_num_threads(torch_threads)
    run_path = Path(run_dir)
    if run_path.exists():
        shutil.rmtree(run_path)  # an unfinished earlier attempt: start afresh
    run_path.mkdir(parents=True)
    zoo = make_zoo_model(
        run.method.algo,
        run.env_id,
        run_path / "zoo",
        conf_file=run.method.conf_file,
        hyperparams=run.method.hyperparams,
        env_kwargs=run.env_kwargs,
        seed=run.seed,
        tensorboard_log=str(run_path / "tensorboard"),
    )
    model, train_env, eval_env = zoo.model, zoo.train_env, zoo.make_eval_env(1, seed=run.seed + 10_000)
    rows: list[dict[str, Any]] = []

    def evaluate() -> None:
        sync_envs_normalization(train_env, eval_env)
        score = play_episodes(model, eval_env, run.eval_episodes).mean
        rows.append(
            {"method": run.method.name, "env": run.env_id, "seed": run.seed, "timesteps": model.num_timesteps, "score": score}
        )

    class Periodic(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.next_eval = run.eval_freq

        def _on_step(self) -> bool:
            if self.num_timesteps >= self.next_eval:
                self.next_eval += run.eval_freq
                evaluate()
            return True

    start = time.perf_counter()
    model.learn(run.n_timesteps, callback=Periodic(), tb_log_name="run")
    if not rows or rows[-1]["timesteps"] != model.num_timesteps:
        evaluate()
    eval_env.close()
    train_env.close()
    seconds = time.perf_counter() - start  # training and evaluations: what a study budget is made of
    return [{**row, "seconds": round(seconds, 2)} for row in rows]


# ---------------------------------------------------------------- the study (driver)
@contextlib.contextmanager
def study_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` (released by the OS even on kill -9)."""
    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / ".lock", "a+")  # noqa: SIM115  (held for the whole block)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise ValueError(
            f"study directory {str(directory)!r} is being run by another process: wait for it or stop it"
        ) from None
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _check_spec(directory: Path, spec: dict[str, Any]) -> None:
    saved = directory / "study.yml"
    if saved.exists():
        refuse_changes(yaml.safe_load(saved.read_text()), spec, f"study directory {str(directory)!r}")
    else:
        write_text_atomic(saved, yaml.safe_dump(spec, sort_keys=False))


def result_path(directory: Path, run: Run) -> Path:
    return directory / "runs" / run.key / "result.csv"


def collect_scores(directory: Path, study: Study) -> pd.DataFrame:
    """The finished runs' rows, in study order; written atomically to ``scores.csv``."""
    frames = [pd.read_csv(result_path(directory, run)) for run in study.runs if result_path(directory, run).exists()]
    scores = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SCORE_COLUMNS)
    scores = scores[SCORE_COLUMNS]
    with atomic_path(directory / "scores.csv") as tmp:
        scores.to_csv(tmp, index=False)
    return scores


def _finish(directory: Path, study: Study, run: Run, rows: list[dict[str, Any]]) -> None:
    with atomic_path(result_path(directory, run)) as tmp:
        pd.DataFrame(rows, columns=[*SCORE_COLUMNS, "seconds"]).to_csv(tmp, index=False)
    collect_scores(directory, study)


def run_study(
    study_file: str | os.PathLike,
    directory: str | os.PathLike | None = None,
    backend: str = "local",
    workers: int = 2,
    address: str | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run every unfinished run of ``study_file``; return the scores of all finished runs.

    :param directory: the study directory (default ``runs/<name>``).
    :param backend: ``"local"`` (a process pool of ``workers``) or ``"ray"`` (``address`` of an existing
        cluster, or a local Ray when None; one CPU per run).
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is unknown: expected one of {list(BACKENDS)}")
    workers = check_int("workers", workers)
    study = load_study(study_file)
    directory = Path(directory) if directory is not None else Path("runs") / study.name
    with study_lock(directory):
        _check_spec(directory, study.spec)
        todo = [run for run in study.runs if not result_path(directory, run).exists()]
        bar = _progress(len(study.runs), len(study.runs) - len(todo), progress)
        if todo:
            submit = _run_local if backend == "local" else _run_ray
            for run, rows in submit(todo, directory, workers, address):
                _finish(directory, study, run, rows)
                bar.update(1)
                bar.set_postfix_str(run.key)
        bar.close()
        return collect_scores(directory, study)


def _progress(total: int, done: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="study runs", unit="run", disable=not enabled)


def _exit_with_driver(driver_pid: int) -> None:
    """Pool initializer: end this worker when the driver dies (kill -9 included), so no orphan keeps
    training into a run directory that the restarted study is about to reuse."""
    import threading

    def watch() -> None:
        while True:
            time.sleep(1.0)
            try:
                os.kill(driver_pid, 0)
            except ProcessLookupError:
                os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _run_local(todo: list[Run], directory: Path, workers: int, address: str | None) -> Iterator[tuple[Run, list]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # forkserver: workers start clean (no torch threads or locks inherited from the driver).
    with ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=_exit_with_driver,
        initargs=(os.getpid(),),
    ) as pool:
        futures = {pool.submit(execute_run, run, str(directory / "runs" / run.key)): run for run in todo}
        for future in as_completed(futures):
            yield futures[future], future.result()


def _run_ray(todo: list[Run], directory: Path, workers: int, address: str | None) -> Iterator[tuple[Run, list]]:
    try:
        import ray
    except ImportError:
        raise ValueError("backend='ray' needs Ray: pip install 'sb3-masked-attention[ray]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(
            address=address,
            num_cpus=None if address else workers,
            include_dashboard=False,
            log_to_driver=False,
            ignore_reinit_error=True,
        )
    remote = ray.remote(num_cpus=1)(execute_run)
    pending = {remote.remote(run, str(directory.resolve() / "runs" / run.key)): run for run in todo}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            run = pending.pop(done[0])
            yield run, ray.get(done[0])
    finally:
        if started:
            ray.shutdown()
