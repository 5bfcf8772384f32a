"""Resumable studies: every (method, env, seed) training run of a study file, evaluated periodically.

The study file and its checks are in :mod:`~sb3_masked_attention.evaluation.study_spec`; the whole file is
checked, and each (method, env) model built once, before any run starts.

The study directory holds ``study.yml`` (a copy of the spec; a restart must match it),
``runs/<method>/<env>/seed<k>/`` (rl-zoo logs, TensorBoard, ``hyperparams.yml``: the settings the run trained with,
its conf file's entry with the study's overrides, as rl-zoo's ``config.yml``, so that a record shows what ran even
after the conf file changes, and so that runs left to do are not added beside finished runs of other settings
(refused, naming the setting); ``machine.yml``: its CPU and library versions, as a run repeats step for step on the
same kind of CPU only; and ``result.csv`` once the run has finished: its evaluations and its wall time in
``seconds``, to size a study's budget) and
``scores.csv`` (``method,env,seed,timesteps,score``, rebuilt from the finished runs).
Each finished run's result is written atomically, and ``scores.csv`` too: a study killed at any
point (kill -9 included) and started again skips finished runs and starts unfinished ones afresh.
A run that fails leaves ``error.txt`` in its folder; the other runs go on and are kept, and the study
ends with :class:`StudyFailed` naming the failed runs (rerunning retries them).
A lock file refuses a second runner on the same directory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from sb3_masked_attention.episodes import play_episodes
from sb3_masked_attention.evaluation.study_spec import DICT_KEYS, Method, Run, Study, check_buildable, load_study
from sb3_masked_attention.io import atomic_path, hold_folder_lock, release_folder_lock, write_text_atomic
from sb3_masked_attention.runs import refuse_changes
from sb3_masked_attention.validation import check_int

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

__all__ = ["Method", "Run", "Study", "StudyFailed", "load_study", "run_study", "worker_pool"]

SCORE_COLUMNS = ["method", "env", "seed", "timesteps", "score"]
#: Timing columns of a run's rows (training wall-clock at each evaluation, training steps/s of the run); runs
#: finished before they were recorded lack them, and scores.csv then leaves them out.
TIMING_COLUMNS = ["wall_seconds", "steps_per_s"]
BACKENDS = ("local", "ray")
#: Each run's settings as rl-zoo resolved them (plain YAML), beside its result.csv.
SETTINGS_FILE = "hyperparams.yml"
#: Each run folder's record of the machine it ran on (runs repeat step for step on the same kind of CPU only).
MACHINE_FILE = "machine.yml"


class StudyFailed(RuntimeError):
    """Some runs of a study failed (the finished ones are kept); ``failed`` maps run keys to their errors."""

    def __init__(self, directory: Path, failed: dict[str, str]) -> None:
        self.failed = failed
        key, error = next(iter(failed.items()))
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        super().__init__(
            f"{len(failed)} run(s) of the study in {str(directory)!r} failed, first {key}: {error}{more}; "
            f"see runs/<run>/error.txt; finished runs are kept and a rerun retries the failed ones"
        )


# ---------------------------------------------------------------- one run (in a worker)
def execute_run(run: Run, run_dir: str, torch_threads: int = 1, model_path: str | None = None) -> list[dict[str, Any]]:
    """Train one run from scratch, evaluating every ``eval_freq`` steps and at the end; return the score rows.

    Runs in a worker process (local pool or Ray): one torch thread, rl-zoo builds the model.

    :param model_path: a ``.zip`` file to save the trained model to as well (for a diagnostic that studies the policy
        itself; studies keep only scores). Saving comes after the last evaluation: the rows are the run's without it.
    """
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import sync_envs_normalization

    from sb3_masked_attention.machine import machine_record
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
    settings = {**zoo.settings, "n_timesteps": run.n_timesteps}  # the study's budget, not the entry's
    write_text_atomic(run_path / SETTINGS_FILE, yaml.safe_dump(settings, sort_keys=False))
    write_text_atomic(run_path / MACHINE_FILE, yaml.safe_dump(machine_record(), sort_keys=False))
    model, train_env, eval_env = zoo.model, zoo.train_env, zoo.make_eval_env(1, seed=run.seed + 10_000)
    rows: list[dict[str, Any]] = []
    evaluating = 0.0  # seconds spent in evaluations so far: not training time

    def evaluate() -> None:
        nonlocal evaluating
        began = time.perf_counter()
        sync_envs_normalization(train_env, eval_env)
        score = play_episodes(model, eval_env, run.eval_episodes).mean
        training = began - start - evaluating  # wall-clock of training alone when this evaluation began
        rows.append({"method": run.method.name, "env": run.task_name, "seed": run.seed, "timesteps": model.num_timesteps,
                     "score": score, "wall_seconds": round(training, 2)})  # fmt: skip
        evaluating += time.perf_counter() - began

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
    if model_path is not None:  # atomically: a killed save leaves no model that looks whole
        partial = f"{model_path}.partial.zip"
        model.save(partial)
        os.replace(partial, model_path)
    eval_env.close()
    train_env.close()
    seconds = time.perf_counter() - start  # training and evaluations: what a study budget is made of
    steps_per_s = round(model.num_timesteps / max(seconds - evaluating, 1e-9), 1)  # training alone
    return [{**row, "seconds": round(seconds, 2), "steps_per_s": steps_per_s} for row in rows]


# ---------------------------------------------------------------- the study (driver)
@contextlib.contextmanager
def study_lock(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory`` for the block (released by the OS even on kill -9)."""
    taken = hold_folder_lock(directory, "study directory")
    try:
        yield
    finally:
        if taken:
            release_folder_lock(directory)


def _check_spec(directory: Path, spec: dict[str, Any]) -> bool:
    """Refuse a spec that differs from the one the directory was started with; return whether there was one."""
    saved = directory / "study.yml"
    if saved.exists():
        refuse_changes(yaml.safe_load(saved.read_text()), spec, f"study directory {str(directory)!r}")
    return saved.exists()


def result_path(directory: Path, run: Run) -> Path:
    return directory / "runs" / run.key / "result.csv"


def collect_scores(directory: Path, study: Study) -> pd.DataFrame:
    """The finished runs' rows, in study order; written atomically to ``scores.csv``."""
    frames = [pd.read_csv(result_path(directory, run)) for run in study.runs if result_path(directory, run).exists()]
    scores = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=SCORE_COLUMNS)
    timed = [column for column in TIMING_COLUMNS if frames and all(column in frame.columns for frame in frames)]
    scores = scores[SCORE_COLUMNS + timed]
    with atomic_path(directory / "scores.csv") as tmp:
        scores.to_csv(tmp, index=False)
    return scores


def _finish(directory: Path, study: Study, run: Run, rows: list[dict[str, Any]]) -> None:
    with atomic_path(result_path(directory, run)) as tmp:
        pd.DataFrame(rows, columns=[*SCORE_COLUMNS, "wall_seconds", "seconds", "steps_per_s"]).to_csv(tmp, index=False)
    collect_scores(directory, study)


def run_study(
    study_file: str | os.PathLike,
    directory: str | os.PathLike | None = None,
    backend: str = "local",
    workers: int = 2,
    address: str | None = None,
    progress: bool = True,
    verbose: int = 1,
) -> pd.DataFrame:
    """Run every unfinished run of ``study_file``; return the scores of all finished runs.

    :param directory: the study directory (default ``runs/<name>``).
    :param verbose: 1: say how many runs are already in the directory (kept, not rerun) before starting.
    :param backend: ``"local"`` (a process pool of ``workers``) or ``"ray"`` (``address`` of an existing
        cluster, or a local Ray on 127.0.0.1 when None; one CPU per run).
    :raises ValueError: the study file has a mistake (nothing has run).
    :raises StudyFailed: some runs failed; every other run finished and was kept.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is unknown: expected one of {list(BACKENDS)}")
    workers = check_int("workers", workers)
    study = load_study(study_file)
    directory = Path(directory) if directory is not None else Path("runs") / study.name
    with study_lock(directory):
        started = _check_spec(directory, study.spec)
        todo = [run for run in study.runs if not result_path(directory, run).exists()]
        if todo:
            _refuse_mixed_settings(directory, study, check_buildable(study, todo))
        if not started:  # recorded once the whole spec has been checked, so a refused spec can be fixed and rerun
            write_text_atomic(directory / "study.yml", yaml.safe_dump(study.spec, sort_keys=False))
        done = len(study.runs) - len(todo)
        if verbose and done:
            rest = f"running the other {len(todo)}" if todo else "nothing to do"
            print(f"{done} of {len(study.runs)} runs already in {directory} (kept): {rest}; pass --dir NEW to rerun them all")
        bar = _progress(len(study.runs), done, progress)
        failed: dict[str, str] = {}
        if todo:
            submit = _run_local if backend == "local" else _run_ray
            for run, outcome in submit(todo, directory, workers, address):
                if isinstance(outcome, BaseException):
                    failed[run.key] = _record_failure(directory, run, outcome)
                else:
                    _finish(directory, study, run, outcome)
                bar.update(1)
                bar.set_postfix_str(run.key)
        bar.close()
        scores = collect_scores(directory, study)
    if failed:
        raise StudyFailed(directory, failed)
    return scores


def _refuse_mixed_settings(directory: Path, study: Study, built: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Refuse to add runs to a (method, env) whose finished runs trained with other settings than the study gives
    now (its conf file's entry changed since): the new runs would be averaged with another entry's. Runs finished
    before ``hyperparams.yml`` was recorded are not checked.

    :param built: each (method, task)'s settings now (:func:`check_buildable`).
    :raises ValueError: naming the run folder, the first differing setting, then and now.
    """
    for run in study.runs:
        record = result_path(directory, run).parent / SETTINGS_FILE
        now = built.get((run.method.name, run.task_name))
        if now is None or not result_path(directory, run).exists() or not record.exists():
            continue
        then = _comparable(yaml.safe_load(record.read_text()) or {})
        now = _comparable({**now, "n_timesteps": run.n_timesteps})
        differing = sorted(key for key in then.keys() | now.keys() if then.get(key) != now.get(key))
        if differing:
            key = differing[0]
            raise ValueError(
                f"{record.parent} trained with {_setting(then, key)} but the study now gives {_setting(now, key)} "
                f"({len(differing)} setting(s) differ: {', '.join(differing)}); its new runs would be averaged with "
                f"another entry's: move the finished runs of method {run.method.name!r} on {run.task_name!r} out of "
                f"{directory} (keep them as an archive) or pass --dir NEW"
            )


def _setting(settings: dict[str, Any], key: str) -> str:
    return f"{key}={settings[key]!r}" if key in settings else f"no {key} (the algorithm's default)"


def _comparable(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings with rl-zoo's ``"dict(...)"`` strings read as dicts, as older records kept them as strings."""
    from sb3_masked_attention.zoo import literal_dict

    plain = dict(settings)
    for key in DICT_KEYS:
        if isinstance(plain.get(key), str):
            with contextlib.suppress(ValueError):  # code (``nn.ReLU``) stays a string: compared as written
                plain[key] = literal_dict(plain[key])
    return plain


def _record_failure(directory: Path, run: Run, error: BaseException) -> str:
    """Write the run's ``error.txt`` (the traceback); return the error in one line."""
    text = "".join(traceback.format_exception(error))
    write_text_atomic(directory / "runs" / run.key / "error.txt", text)
    line = (str(error).strip().splitlines() or [""])[0][:200]
    return f"{type(error).__name__}: {line}"


def _progress(total: int, done: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="study runs", unit="run", disable=not enabled)


def exit_with_driver(driver_pid: int) -> None:
    """End this process when ``driver_pid`` dies (kill -9 included), so no orphan keeps training into a run directory
    that the restarted driver is about to reuse: :func:`worker_pool`'s initializer, and the first call of a child
    that a driver starts as a command (``bench/multiscale_study.py``).

    :param driver_pid: the process to outlive by at most a second.
    """
    import threading

    def watch() -> None:
        while _alive(driver_pid):
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs: a killed process its parent has not reaped yet (a zombie) still answers ``os.kill(pid,
    0)``, so Linux's process state is read where there is one."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (not Linux), or just reaped: os.kill answers on the next look
    return state not in ("Z", "X")


def start_local_ray(num_cpus: int) -> None:
    """Start a local Ray whose servers (gcs, raylet, workers) listen on 127.0.0.1 only, dashboard off.

    Ray binds its servers to the loopback interface when the node's address is 127.0.0.1, which it picks
    only where it does not expect a cluster (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, macOS's default). The
    variable is set for the processes Ray starts and Ray's copy of it for this one, then restored.
    """
    import ray
    from ray._private import ray_constants

    variable, previous = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    enabled = ray_constants.ENABLE_RAY_CLUSTER
    os.environ[variable], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = enabled
        if previous is None:
            del os.environ[variable]
        else:
            os.environ[variable] = previous


Outcome = list[dict[str, Any]] | BaseException  # a run's score rows, or the error it failed with


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A pool of ``workers`` processes for long runs: started by a forkserver (clean: no torch threads or locks
    inherited from this process), each ending when this process dies, kill -9 included, so that no orphan keeps
    training into a run folder or holds the cores after its driver is stopped.

    :param workers: how many processes (at least 1).
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    check_int("workers", workers, minimum=1)
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("forkserver"),
        initializer=exit_with_driver,
        initargs=(os.getpid(),),
    )


def _run_local(todo: list[Run], directory: Path, workers: int, address: str | None) -> Iterator[tuple[Run, Outcome]]:
    from concurrent.futures import as_completed

    with worker_pool(workers) as pool:
        futures = {pool.submit(execute_run, run, str(directory / "runs" / run.key)): run for run in todo}
        for future in as_completed(futures):
            error = future.exception()
            yield futures[future], error if error is not None else future.result()


def _run_ray(todo: list[Run], directory: Path, workers: int, address: str | None) -> Iterator[tuple[Run, Outcome]]:
    try:
        import ray
    except ImportError:
        raise ValueError("backend='ray' needs Ray: pip install 'sb3-masked-attention[ray]'") from None
    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            start_local_ray(workers)
    remote = ray.remote(num_cpus=1)(execute_run)
    pending = {remote.remote(run, str(directory.resolve() / "runs" / run.key)): run for run in todo}
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            run = pending.pop(done[0])
            try:
                outcome: Outcome = ray.get(done[0])
            except ray.exceptions.RayTaskError as error:
                outcome = error.as_instanceof_cause() if isinstance(error.cause, BaseException) else error
            yield run, outcome
    finally:
        if started:
            ray.shutdown()
