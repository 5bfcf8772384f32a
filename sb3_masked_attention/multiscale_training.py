"""Train PPO / MaskablePPO with the multi-scale extractors on TerritoryControl, top to bottom, resumably.

A run directory holds ``run_config.json`` (the settings; a resumed run must match them),
``checkpoints/`` (atomic, the newest two kept), ``evaluations.csv`` (one row per evaluation,
appended), ``best_model.zip``, ``final_model.zip``, ``monitor/`` (episode CSVs) and
``tensorboard/`` (losses, ``eval/*``, and ``attention/*`` from :class:`AttentionLoggingCallback`).
Running the same command again after a kill resumes from the newest checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from sb3_masked_attention.callbacks import (
    AtomicCheckpointCallback,
    AttentionLoggingCallback,
    EvaluationLogCallback,
    checkpoints,
)
from sb3_masked_attention.io import atomic_path, write_text_atomic
from sb3_masked_attention.validation import check_int

TERRITORY_ID = "sb3ma/TerritoryControl-v0"
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "maskable_ppo": MaskablePPO}
#: PPO settings for the multi-scale policy (any can be overridden with ``ppo_kwargs``).
MULTISCALE_PPO_KWARGS: dict[str, Any] = {"n_epochs": 4, "learning_rate": 2.5e-4, "ent_coef": 0.01, "gamma": 0.99}
#: Settings that define a run: resuming with any of them changed is refused.
_IDENTITY = ("algo", "attention", "env_kwargs", "n_envs", "batch_size", "n_steps", "seed", "ppo_kwargs")


def train_multiscale(
    output_dir: str | os.PathLike,
    *,
    map_name: str = "plains",
    map_size: int = 1024,
    num_bots: int = 10,
    max_steps: int = 1000,
    local_view_size: int = 256,
    total_timesteps: int = 1_000_000,
    n_envs: int = 8,
    batch_size: int = 128,
    n_steps: int = 128,
    attention: bool = True,
    algo: str = "maskable_ppo",
    device: str = "auto",
    seed: int = 0,
    checkpoint_freq: int = 50_000,
    eval_freq: int = 25_000,
    eval_episodes: int = 5,
    attention_log_freq: int = 10_000,
    ppo_kwargs: dict[str, Any] | None = None,
    subprocess_envs: bool = True,
    progress_bar: bool = True,
    verbose: int = 1,
) -> BaseAlgorithm:
    """Train (or resume) ``algo`` with ``MultiScaleAttentionPolicy`` on TerritoryControl and return the model.

    :param attention: :class:`MultiScaleExtractorWithAttention` if True, else :class:`MultiScaleExtractor`.
    :param algo: ``"maskable_ppo"`` (invalid targets masked) or ``"ppo"`` (invalid targets are no-ops).
    :param checkpoint_freq: environment steps between checkpoints; ``eval_freq`` likewise between evaluations.
    Other parameters: see :class:`envs.territory.TerritoryControlEnv` and SB3's PPO.
    """
    if algo not in ALGORITHMS:
        raise ValueError(f"algo={algo!r} is unknown: expected one of {sorted(ALGORITHMS)}")
    for name, value in (
        ("total_timesteps", total_timesteps),
        ("n_envs", n_envs),
        ("batch_size", batch_size),
        ("n_steps", n_steps),
        ("checkpoint_freq", checkpoint_freq),
        ("eval_freq", eval_freq),
        ("eval_episodes", eval_episodes),
        ("attention_log_freq", attention_log_freq),
    ):
        check_int(name, value)
    from envs.territory import TerritoryControlEnv  # by class, so SubprocVecEnv workers import it themselves

    env_kwargs = {
        "map_name": map_name,
        "map_size": map_size,
        "num_bots": num_bots,
        "max_steps": max_steps,
        "local_view_size": local_view_size,
    }
    TerritoryControlEnv(**env_kwargs)  # a bad map or size fails here, before anything is written
    ppo_kwargs = {**MULTISCALE_PPO_KWARGS, **(ppo_kwargs or {})}
    config = {
        "algo": algo,
        "attention": attention,
        "env_kwargs": env_kwargs,
        "n_envs": n_envs,
        "batch_size": batch_size,
        "n_steps": n_steps,
        "seed": seed,
        "ppo_kwargs": ppo_kwargs,
        "total_timesteps": total_timesteps,
    }
    output_dir = Path(output_dir)
    _check_resume(output_dir / "run_config.json", config)
    final_path = output_dir / "final_model.zip"
    algorithm = ALGORITHMS[algo]
    if final_path.exists():
        model = algorithm.load(final_path, device=device)
        if model.num_timesteps >= total_timesteps:
            if verbose:
                print(f"{output_dir} is finished ({model.num_timesteps} steps): nothing to do")
            return model

    env_cls = SubprocVecEnv if subprocess_envs and n_envs > 1 else DummyVecEnv
    env = make_vec_env(
        TerritoryControlEnv,
        n_envs=n_envs,
        seed=seed,
        env_kwargs=env_kwargs,
        vec_env_cls=env_cls,
        monitor_dir=str(output_dir / "monitor"),
        monitor_kwargs={"override_existing": False},
    )
    eval_env = make_vec_env(TerritoryControlEnv, n_envs=1, seed=seed + 10_000, env_kwargs=env_kwargs)
    found = checkpoints(output_dir / "checkpoints")
    if found:
        model = algorithm.load(found[-1], env=env, device=device, tensorboard_log=str(output_dir / "tensorboard"))
        if verbose:
            print(f"resuming {output_dir} from {found[-1].name} ({model.num_timesteps} steps done)")
    else:
        model = algorithm(
            "MultiScaleAttentionPolicy",
            env,
            n_steps=n_steps,
            batch_size=batch_size,
            seed=seed,
            device=device,
            policy_kwargs={"multiscale_extractor": "attention" if attention else "plain"},
            tensorboard_log=str(output_dir / "tensorboard"),
            verbose=verbose,
            **ppo_kwargs,
        )
    callbacks = CallbackList(
        [
            AtomicCheckpointCallback(checkpoint_freq, output_dir / "checkpoints"),
            EvaluationLogCallback(
                eval_env,
                output_dir / "evaluations.csv",
                eval_freq=eval_freq,
                n_eval_episodes=eval_episodes,
                best_model_path=output_dir / "best_model.zip",
                info_keys=("territory_share", "rank", "is_success"),
                verbose=verbose,
            ),
            AttentionLoggingCallback(log_freq=attention_log_freq),
        ]
    )
    remaining = total_timesteps - model.num_timesteps
    try:
        if remaining > 0:
            model.learn(
                remaining, callback=callbacks, tb_log_name="run", reset_num_timesteps=not found, progress_bar=progress_bar
            )
        with atomic_path(final_path, suffix=".zip") as tmp:
            model.save(tmp)
    finally:
        env.close()
        eval_env.close()
    return model


def _check_resume(path: Path, config: dict[str, Any]) -> None:
    """Write the run's settings, or check that a resumed run has the same ones (naming the first that differs)."""
    config = json.loads(json.dumps(config))  # tuples -> lists, as they come back from the file
    if path.exists():
        before = json.loads(path.read_text())
        for key in _IDENTITY:
            if before.get(key) != config.get(key):
                raise ValueError(
                    f"{path.parent} was started with {key}={before.get(key)!r}, not {config.get(key)!r}: "
                    "use another --output-dir or the original settings"
                )
    write_text_atomic(path, json.dumps(config, indent=2) + "\n")
