"""``sb3ma train`` and ``sb3ma demo``: train an env's ``zoo_configs/ppo.yml`` entry, as ``rl_zoo3.train`` would,
then evaluate it.

The model is built by rl-zoo's own ``ExperimentManager`` from the env's entry (an env without one gets the
file's ``default`` entry), so ``sb3ma train --env X`` and ``python -m rl_zoo3.train --algo ppo --env X
--conf-file zoo_configs/ppo.yml`` train the same thing. Command-line options override single entries.

``--output-dir`` holds ``model.zip`` (SB3's format), ``train_config.json`` (what built the model),
``vecnormalize.npz`` (and rl-zoo's ``vecnormalize.pkl``) when the entry normalises, rl-zoo's ``zoo/`` folder and
TensorBoard logs. :func:`load_trained` rebuilds the model from ``train_config.json`` and reads only the weights
of ``model.zip`` (no unpickling): a run folder from elsewhere cannot run code.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stable_baselines3.common.vec_env import unwrap_vec_normalize

from sb3_masked_attention.environments import check_env_id, return_bounds
from sb3_masked_attention.episodes import play_episodes
from sb3_masked_attention.io import atomic_path, hold_folder_lock, release_folder_lock, write_text_atomic
from sb3_masked_attention.strategies import HeadMaskStrategy, resolve_head_mask_strategy
from sb3_masked_attention.validation import check_int
from sb3_masked_attention.weights import load_weights, restore_normalization, save_normalization
from sb3_masked_attention.zoo import (
    HISTORY_WRAPPER,
    PROJECT_PPO_CONFIG,
    ZooRun,
    literal_dict,
    make_zoo_model,
    received_hyperparams,
    zoo_entry,
)

SETTINGS_FILE = "train_config.json"


@dataclass(frozen=True)
class DemoConfig:
    """``sb3ma demo``: a T-maze whose cue must be remembered for 10 steps (a memoryless policy scores 0)."""

    env_id: str = "sb3ma/TMaze-v0"
    corridor_length: int = 10
    history_len: int = 12
    total_timesteps: int = 20_000


@dataclass(frozen=True)
class Evaluation:
    """Returns of ``n_episodes`` deterministic episodes, and their normalised mean when the env documents its bounds."""

    mean_return: float
    std_return: float
    n_episodes: int
    normalized: float | None

    def __str__(self) -> str:
        text = f"mean return {self.mean_return:.3f} ± {self.std_return:.3f} over {self.n_episodes} episodes"
        return text if self.normalized is None else f"{text} (normalised score {self.normalized:.3f})"


def entry_overrides(
    entry: dict[str, Any],
    head_mask_strategy: HeadMaskStrategy | None = None,
    history_len: int | None = None,
    n_envs: int | None = None,
) -> dict[str, Any]:
    """rl-zoo ``-params`` overrides that change one thing each in a zoo entry: the head-mask strategy (merged into
    its ``policy_kwargs``), the ``HistoryWrapper`` length (other wrapper arguments kept) and ``n_envs``."""
    overrides: dict[str, Any] = {}
    if head_mask_strategy is not None:
        if entry.get("policy") != "HeadMaskedTransformerPolicy":
            raise ValueError(
                f"strategy={head_mask_strategy!r} needs a HeadMaskedTransformerPolicy entry, not {entry.get('policy')!r}"
            )
        resolve_head_mask_strategy(head_mask_strategy, 8)
        policy_kwargs = literal_dict(entry.get("policy_kwargs", "dict()"))
        overrides["policy_kwargs"] = {**policy_kwargs, "head_mask_strategy": head_mask_strategy}
    if history_len is not None:
        check_int("history_len", history_len)
        wrappers = entry.get("env_wrapper") or []
        wrappers = [wrappers] if isinstance(wrappers, (str, dict)) else list(wrappers)
        names = [next(iter(w)) if isinstance(w, dict) else w for w in wrappers]
        if HISTORY_WRAPPER not in names:
            raise ValueError(f"history_len={history_len} needs an entry with {HISTORY_WRAPPER} in its env_wrapper")
        index = names.index(HISTORY_WRAPPER)
        old = wrappers[index][HISTORY_WRAPPER] if isinstance(wrappers[index], dict) else {}
        wrappers[index] = {HISTORY_WRAPPER: {**(old or {}), "history_len": history_len}}
        overrides["env_wrapper"] = wrappers
    if n_envs is not None:
        overrides["n_envs"] = check_int("n_envs", n_envs)
    return overrides


def train(
    env_id: str,
    *,
    head_mask_strategy: HeadMaskStrategy | None = None,
    history_len: int | None = None,
    total_timesteps: int | None = None,
    n_envs: int | None = None,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    hyperparams: dict[str, Any] | None = None,
    conf_file: str | os.PathLike = PROJECT_PPO_CONFIG,
    output_dir: str | os.PathLike | None = None,
    progress_bar: bool = False,
    verbose: int = 0,
) -> ZooRun:
    """Train PPO on ``env_id`` with its ``conf_file`` entry; None keeps the entry's value.

    :param head_mask_strategy: strategy name or one fraction per head.
    :param history_len: steps in the ``HistoryWrapper`` window.
    :param total_timesteps: environment steps (default: the entry's ``n_timesteps``).
    :param n_envs: parallel environments.
    :param hyperparams: further overrides, as rl-zoo's ``-params`` takes them.
    :param output_dir: a new or empty folder (locked while training; a run is not resumed) for ``model.zip``, TensorBoard
        logs and rl-zoo's ``zoo/`` folder (its config); None: nowhere.
    :return: the trained model and the rl-zoo manager that makes its evaluation envs.
    """
    check_env_id(env_id)
    entry = zoo_entry(conf_file, env_id)
    overrides = {**entry_overrides(entry, head_mask_strategy, history_len, n_envs), **(hyperparams or {})}
    if output_dir is not None:
        _claim_empty_folder(Path(output_dir))
    log_folder = Path(output_dir) / "zoo" if output_dir is not None else Path(tempfile.mkdtemp(prefix="sb3ma-train-"))
    tensorboard = "" if output_dir is None else str(Path(output_dir) / "tensorboard")
    try:
        run = make_zoo_model(
            "ppo",
            env_id,
            log_folder,
            conf_file=conf_file,
            hyperparams=overrides,
            env_kwargs=env_kwargs,
            seed=seed,
            tensorboard_log=tensorboard,
            verbose=verbose,
        )
        steps = check_int("total_timesteps", total_timesteps if total_timesteps is not None else run.n_timesteps)
    except Exception as error:
        if output_dir is not None:  # refused before training: the folder was empty, so leave it so (the fix reruns)
            for leftover in Path(output_dir).iterdir():
                if leftover.name != ".lock":
                    shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
            release_folder_lock(output_dir)
        if isinstance(error, TypeError):  # a keyword the policy or algorithm does not take
            raise ValueError(f"PPO on {env_id!r} cannot be built from these settings: {error}") from None
        raise
    run.model.learn(steps, progress_bar=progress_bar, tb_log_name="run")
    if output_dir is not None:
        own_conf = Path(conf_file).resolve() == PROJECT_PPO_CONFIG
        settings = {
            "env_id": env_id,
            "env_kwargs": dict(env_kwargs or {}),
            "seed": seed,
            "conf_file": "zoo_configs/ppo.yml" if own_conf else str(Path(conf_file).resolve()),
            "hyperparams": overrides,
        }
        write_text_atomic(Path(output_dir) / SETTINGS_FILE, json.dumps(settings, indent=2) + "\n")
        with atomic_path(Path(output_dir) / "model.zip") as tmp:
            run.model.save(tmp)
        run.save_normalization(Path(output_dir) / "vecnormalize.pkl")  # rl-zoo's (a pickle) ...
        normalize = unwrap_vec_normalize(run.train_env)
        if normalize is not None:
            save_normalization(normalize, Path(output_dir) / "vecnormalize.npz")  # ... and arrays, read without pickle
        release_folder_lock(output_dir)
    return run


def _claim_empty_folder(path: Path) -> None:
    """Lock ``path`` for this run (one writer) and refuse it unless it is new or empty: ``sb3ma train`` does not
    resume, so a folder holding a run (finished or killed) is never trained into again."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"--output-dir {str(path)!r} is a file, not a folder")
    hold_folder_lock(path, "output folder")
    if any(entry.name != ".lock" for entry in path.iterdir()):
        release_folder_lock(path)
        raise ValueError(
            f"--output-dir {str(path)!r} is not empty: `sb3ma train` does not resume a run (a killed run would restart "
            "at step 0 over its files); give a new folder, or delete this one to start over"
        )


def trained_settings(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``train_config.json`` of an ``sb3ma train --output-dir`` folder (env_id, env_kwargs, seed, conf_file,
    hyperparams); ValueError naming the folder if it is not one."""
    run_dir = Path(run_dir)
    where = f"run folder {str(run_dir)!r}"
    if not (run_dir / SETTINGS_FILE).is_file() or not (run_dir / "model.zip").is_file():
        raise ValueError(f"{where} lacks {SETTINGS_FILE} or model.zip: expected the --output-dir of `sb3ma train`")
    try:
        settings = json.loads((run_dir / SETTINGS_FILE).read_text())
        return {
            "env_id": str(settings["env_id"]),
            "env_kwargs": dict(settings["env_kwargs"]),
            "seed": int(settings["seed"]),
            "conf_file": str(settings["conf_file"]),
            "hyperparams": dict(settings["hyperparams"]),
        }
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{where}: {SETTINGS_FILE} is not readable ({type(error).__name__}: {error})") from None


def load_trained(run_dir: str | os.PathLike, device: str = "cpu") -> ZooRun:
    """The model of an ``sb3ma train --output-dir`` folder, rebuilt from its ``train_config.json`` with the project's
    zoo entry and given the weights of ``model.zip`` and the ``vecnormalize.npz`` statistics, without unpickling.

    :raises ValueError: not such a folder, settings that name code, or weights that do not fit.
    """
    run_dir = Path(run_dir)
    where = f"run folder {str(run_dir)!r}"
    settings = trained_settings(run_dir)
    env_id, env_kwargs, seed = settings["env_id"], settings["env_kwargs"], settings["seed"]
    conf_file, hyperparams = settings["conf_file"], settings["hyperparams"]
    if conf_file != "zoo_configs/ppo.yml":
        raise ValueError(
            f"{where} was trained with conf_file {conf_file!r}: an rl-zoo file is code, so only the project's own "
            "zoo_configs/ppo.yml is rebuilt from; load model.zip with PPO.load if you trust both"
        )
    hyperparams = received_hyperparams("ppo", hyperparams, where, history_wrapper=True)
    with tempfile.TemporaryDirectory(prefix="sb3ma-load-") as log_folder:
        run = make_zoo_model(
            "ppo",
            env_id,
            log_folder,
            hyperparams=hyperparams,
            env_kwargs=env_kwargs,
            seed=seed,
            device=device,
            conf_file=PROJECT_PPO_CONFIG,
        )
    load_weights(run.model, run_dir / "model.zip")
    normalize = unwrap_vec_normalize(run.train_env)
    if normalize is not None:
        if not (run_dir / "vecnormalize.npz").is_file():
            raise ValueError(f"{where} normalises observations but has no vecnormalize.npz")
        restore_normalization(normalize, run_dir / "vecnormalize.npz")
        normalize.training = False
    return run


def evaluate(run: ZooRun, n_episodes: int = 50, seed: int = 10_000) -> Evaluation:
    """Deterministic evaluation on fresh environments wrapped as in training (frozen normalisation)."""
    env = run.make_eval_env(1, seed=seed)
    episodes = play_episodes(run.model, env, n_episodes)
    env.close()
    bounds = return_bounds(run.manager.env_name.gym_id, run.manager.env_kwargs)
    normalized = None if bounds is None else (episodes.mean - bounds[0]) / (bounds[1] - bounds[0])
    return Evaluation(episodes.mean, episodes.std, n_episodes, normalized)
