"""Train PPO / MaskablePPO with the multi-scale extractors on TerritoryControl, top to bottom, resumably.

The PPO settings (``n_envs``, ``n_timesteps``, ``n_steps``, ``batch_size``, ``n_epochs``, ``learning_rate``,
``ent_coef``) and the extractor's size (``policy_kwargs``) are the preset's entry in ``zoo_configs/ppo.yml``
(``sb3ma/TerritoryControl-{preset}-v0``), so this command and ``rl_zoo3.train`` train the same thing; the game
and run settings are :class:`MultiscaleConfig`.

A run directory holds ``train_config.json`` (the settings; a resumed run must match them),
``checkpoints/`` (rollout-aligned, atomic, the newest two kept: :mod:`~sb3_masked_attention.checkpoints`),
``evaluations.csv`` (one row per evaluation, appended), ``best_model.zip``, ``final_model.zip``, ``monitor/``
(SB3's episode CSVs, read by ``stable_baselines3.common.monitor.load_results``) and ``tensorboard/`` (losses,
``eval/*``, and ``attention/*`` from :class:`AttentionLoggingCallback`). Running the same command again after a
kill resumes from the newest checkpoint to exactly the run it would have been: the training envs restart at each
checkpoint from seeds of the run's seed and the step, evaluations restart their env the same way, and the rows the
killed sitting logged after the checkpoint are dropped and replayed.

Curriculum: ``init_from`` (``--init-from MODEL``) starts a new run from a model trained on another preset. The
extractors do not depend on the map size, so the network is the source model's (its ``policy_kwargs`` replace the
zoo entry's) and every weight is copied, except the action head's target rows when the number of bots differs:
"wait", "neutral land" and the troop fractions keep their rows and bot ``k`` takes the source's bot ``k mod n``
(bots are interchangeable seats). The optimizer and the step count start afresh.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

from sb3_masked_attention.callbacks import AttentionLoggingCallback, EvaluationLogCallback
from sb3_masked_attention.checkpoints import RolloutCheckpointCallback, newest_checkpoint, run_logger
from sb3_masked_attention.io import atomic_path, write_text_atomic
from sb3_masked_attention.runs import RunDir
from sb3_masked_attention.validation import check_int, check_keywords
from sb3_masked_attention.weights import load_matching_weights, load_weights, saved_policy_kwargs, saved_timesteps
from sb3_masked_attention.zoo import PROJECT_PPO_CONFIG, check_setting_ranges, literal_dict, zoo_entry

PRESETS = ("small", "medium", "full")
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "maskable_ppo": MaskablePPO}
#: The entries of the zoo_configs entry that are PPO keyword arguments (the rest is rl-zoo's business).
PPO_KEYS = ("n_steps", "batch_size", "n_epochs", "learning_rate", "ent_coef", "gamma", "gae_lambda", "clip_range")


@dataclass(frozen=True)
class MultiscaleConfig:
    """``sb3ma train-multiscale``: the game and the run (PPO settings come from the preset's zoo entry).

    :param preset: ``small``, ``medium`` or ``full`` (``envs.territory.PRESETS``); the fields left None take its values.
    :param map_name: ``plains``, ``islands``, ``continents`` or a ``.png``/``.npy`` map file.
    :param map_size: map side in tiles.
    :param num_bots: opponents.
    :param bot_level: the bots' scripted level (``envs.territory_policies.LEVELS``).
    :param max_steps: game length.
    :param local_view_size: side of the local map window, at most ``map_size`` (None: ``min(256, map_size)``).
    :param map_resolution: side of the global and local map observations, 16 to 256 (None: the preset's).
    :param tactical_size: side of the tactical map observation, 8 to ``map_size`` (None: the preset's).
    :param action_interval: game ticks per agent step (None: the preset's); 4 is the bots' cadence.
    :param attention: :class:`MultiScaleExtractorWithAttention` if True, else :class:`MultiScaleExtractor`.
    :param algo: ``"maskable_ppo"`` (invalid targets masked) or ``"ppo"`` (invalid targets are no-ops).
    :param checkpoint_freq: environment steps between checkpoints.
    :param eval_freq: environment steps between evaluations (0: none; a throughput measurement, say).
    :param eval_episodes: episodes per evaluation.
    :param attention_log_freq: environment steps between TensorBoard attention logs (0: none).
    :param subprocess_envs: SubprocVecEnv (else DummyVecEnv).
    :param init_from: a model ``.zip`` of this command (any preset) to start a new run from (see the module doc).
    """

    preset: str = "full"
    map_name: str = "plains"
    map_size: int | None = None
    num_bots: int | None = None
    bot_level: str | None = None
    max_steps: int | None = None
    local_view_size: int | None = None
    map_resolution: int | None = None
    tactical_size: int | None = None
    action_interval: int | None = None
    attention: bool = True
    algo: str = "maskable_ppo"
    device: str = "auto"
    seed: int = 0
    checkpoint_freq: int = 50_000
    eval_freq: int = 25_000
    eval_episodes: int = 5
    attention_log_freq: int = 10_000
    subprocess_envs: bool = True
    init_from: str | None = None

    def env_kwargs(self) -> dict[str, Any]:
        """The environment's arguments: the preset and the settings that override it."""
        given = {
            "map_size": self.map_size,
            "num_bots": self.num_bots,
            "bot_level": self.bot_level,
            "max_steps": self.max_steps,
            "local_view_size": self.local_view_size,
            "map_resolution": self.map_resolution,
            "tactical_size": self.tactical_size,
            "action_interval": self.action_interval,
        }
        return {"preset": self.preset, "map_name": self.map_name, **{k: v for k, v in given.items() if v is not None}}

    def zoo_id(self) -> str:
        if self.preset not in PRESETS:
            raise ValueError(f"preset={self.preset!r} is unknown: expected one of {list(PRESETS)}")
        return f"sb3ma/TerritoryControl-{self.preset}-v0"


def train_multiscale(
    output_dir: str | os.PathLike,
    config: MultiscaleConfig | None = None,
    *,
    total_timesteps: int | None = None,
    n_envs: int | None = None,
    ppo_kwargs: dict[str, Any] | None = None,
    policy_kwargs: dict[str, Any] | None = None,
    progress_bar: bool = True,
    verbose: int = 1,
    callback: BaseCallback | None = None,
    **overrides: Any,
) -> BaseAlgorithm:
    """Train (or resume) ``config.algo`` with ``MultiScaleAttentionPolicy`` on TerritoryControl and return the model.

    :param config: map and run settings (default :class:`MultiscaleConfig`); ``overrides`` replace its fields.
    :param total_timesteps: environment steps (default: the zoo entry's ``n_timesteps``); may grow on resume.
    :param n_envs: parallel environments (default: the zoo entry's).
    :param ppo_kwargs: PPO arguments over the zoo entry's (``n_steps``, ``batch_size``, ``learning_rate`` ...).
    :param policy_kwargs: policy arguments over the zoo entry's (e.g. ``features_extractor_kwargs``).
    :param callback: an SB3 callback run with the command's own (checkpoints, evaluations, attention logs).
    """
    config = replace(config or MultiscaleConfig(), **overrides)
    if config.algo not in ALGORITHMS:
        raise ValueError(f"algo={config.algo!r} is unknown: expected one of {sorted(ALGORITHMS)}")
    entry = zoo_entry(PROJECT_PPO_CONFIG, config.zoo_id())
    total_timesteps = check_int("total_timesteps", int(total_timesteps or entry["n_timesteps"]))
    n_envs = check_int("n_envs", int(n_envs or entry["n_envs"]))
    ppo_kwargs = {**{key: entry[key] for key in PPO_KEYS if key in entry}, **(ppo_kwargs or {})}
    for name in ("checkpoint_freq", "eval_episodes"):
        check_int(name, getattr(config, name))
    for name in ("eval_freq", "attention_log_freq"):
        check_int(name, getattr(config, name), minimum=0)
    given_here = ("self", "policy", "env", "seed", "device", "verbose", "policy_kwargs", "tensorboard_log")
    check_keywords(ALGORITHMS[config.algo], ppo_kwargs, "ppo_kwargs", exclude=given_here)
    check_setting_ranges(ppo_kwargs, "ppo_kwargs")
    from envs.territory import TerritoryControlEnv  # by class, so SubprocVecEnv workers import it themselves

    env_kwargs = config.env_kwargs()
    TerritoryControlEnv(**env_kwargs)  # a bad map or size fails here, before anything is written
    given_policy_kwargs = dict(policy_kwargs or {})
    policy_kwargs = {**literal_dict(entry.get("policy_kwargs", {})), **given_policy_kwargs}
    extractor = "attention" if config.attention else "plain"
    if config.init_from is not None:
        policy_kwargs = {**saved_policy_kwargs(config.init_from), **given_policy_kwargs}  # the source's network
        if policy_kwargs.get("multiscale_extractor", extractor) != extractor:
            raise ValueError(
                f"init_from={config.init_from!r} holds the {policy_kwargs['multiscale_extractor']!r} extractor, this run "
                f"trains {extractor!r}: expected the same extractor (--no-attention selects 'plain')"
            )
    policy_kwargs["multiscale_extractor"] = extractor
    identity = {
        "algo": config.algo,
        "attention": config.attention,
        "env_kwargs": env_kwargs,
        "n_envs": n_envs,
        "seed": config.seed,
        "ppo_kwargs": ppo_kwargs,
        "policy_kwargs": json.loads(json.dumps(policy_kwargs, default=repr)),  # classes recorded by name
        "total_timesteps": total_timesteps,
        "init_from": config.init_from,
    }
    run = RunDir(output_dir, identity, grow=("total_timesteps",), defaults={"init_from": None})
    final_path = run.path / "final_model.zip"
    finished = final_path.exists() and saved_timesteps(final_path) >= total_timesteps
    monitors = [run.path / "monitor" / f"{rank}.monitor.csv" for rank in range(n_envs)]
    logs = [run.path / "evaluations.csv", *monitors]
    # before the monitors are opened for appending: the killed sitting's rows after the checkpoint are dropped
    resume = None if finished else newest_checkpoint(run.path / "checkpoints", logs)
    for monitor in monitors:  # SB3's header, so that stable_baselines3.common.monitor.load_results reads the folder
        if not monitor.exists():
            header = {"t_start": time.time(), "env_id": config.zoo_id()}
            write_text_atomic(monitor, "#" + json.dumps(header) + "\nr,l,t\n")
    env_cls = SubprocVecEnv if config.subprocess_envs and n_envs > 1 else DummyVecEnv
    env = make_vec_env(
        TerritoryControlEnv,
        n_envs=n_envs,
        seed=config.seed,
        env_kwargs=env_kwargs,
        vec_env_cls=env_cls,
        monitor_dir=str(run.path / "monitor"),
        monitor_kwargs={"override_existing": False},
    )
    eval_env = make_vec_env(TerritoryControlEnv, n_envs=1, seed=config.seed + 10_000, env_kwargs=env_kwargs)
    # The run's own models are read back weights-only into a model rebuilt from its settings: nothing unpickled.
    model = ALGORITHMS[config.algo](
        "MultiScaleAttentionPolicy",
        env,
        seed=config.seed,
        device=config.device,
        verbose=verbose,
        policy_kwargs=policy_kwargs,
        **ppo_kwargs,
    )
    run.record()  # the settings built a model: recorded now, never before
    if finished:
        load_weights(model, final_path)
        env.close()
        eval_env.close()
        if verbose:
            print(f"{run.path} is finished ({model.num_timesteps} steps): nothing to do")
        run.close()
        return model
    model.set_logger(run_logger(run.tensorboard / "run", 0 if resume is None else resume[1]["timesteps"], verbose))
    if resume is not None:
        load_weights(model, resume[0])
        if verbose:
            print(f"resuming {run.path} from {resume[0].name} ({model.num_timesteps} steps done)")
    elif config.init_from is not None:
        report = load_matching_weights(model, config.init_from, adapt=action_rows_adapter(env.action_space))
        if verbose:
            print(
                f"starting from {config.init_from}: {len(report['copied'])} tensors copied, "
                f"{len(report['adapted'])} adapted ({', '.join(report['adapted']) or 'none'}), {len(report['fresh'])} fresh"
            )
    callbacks = _callbacks(config, run.path, eval_env, callback, logs, None if resume is None else resume[1], verbose)
    remaining = total_timesteps - model.num_timesteps
    try:
        if remaining > 0:
            model.learn(
                remaining,
                callback=CallbackList(callbacks),
                tb_log_name="run",
                reset_num_timesteps=resume is None,
                progress_bar=progress_bar,
            )
        with atomic_path(final_path, suffix=".zip") as tmp:
            model.save(tmp)
    finally:
        env.close()
        eval_env.close()
    run.close()
    return model


def _callbacks(
    config: MultiscaleConfig,
    path: Path,
    eval_env: Any,
    extra: BaseCallback | None,
    logs: list[Path],
    resume: dict[str, Any] | None,
    verbose: int,
) -> list[BaseCallback]:
    """Checkpoints, then evaluations and attention logs unless their frequency is 0, then the caller's callback."""
    checkpoints = RolloutCheckpointCallback(config.checkpoint_freq, path / "checkpoints", config.seed, logs, resume)
    callbacks: list[BaseCallback] = [checkpoints]
    if config.eval_freq:
        callbacks.append(
            EvaluationLogCallback(
                eval_env,
                path / "evaluations.csv",
                eval_freq=config.eval_freq,
                n_eval_episodes=config.eval_episodes,
                best_model_path=path / "best_model.zip",
                info_keys=("territory_share", "rank", "is_success"),
                seed=config.seed + 10_000,
                verbose=verbose,
            )
        )
    if config.attention_log_freq:
        callbacks.append(AttentionLoggingCallback(log_freq=config.attention_log_freq))
    if extra is not None:
        callbacks.append(extra)
    return callbacks


def action_rows_adapter(action_space: Any) -> Any:
    """For :func:`load_matching_weights`: the action head of a model with another number of bots, row by row.

    TerritoryControl's action is ``MultiDiscrete([num_bots + 2, n_fractions])``, so the action head has one row per
    target (wait, neutral, bot 1..n) then one per troop fraction. Wait, neutral and the fractions keep their rows;
    bot ``k`` takes the source's bot ``k mod n_source``.
    """
    n_targets, n_fractions = (int(n) for n in action_space.nvec)

    def adapt(name: str, saved: torch.Tensor, current: torch.Tensor) -> torch.Tensor | None:
        if not name.startswith("action_net.") or saved.shape[1:] != current.shape[1:]:
            return None
        source_targets = saved.shape[0] - n_fractions
        if source_targets < 3 or current.shape[0] != n_targets + n_fractions:
            return None
        rows = [0, 1, *(2 + k % (source_targets - 2) for k in range(n_targets - 2))]
        rows += [source_targets + j for j in range(n_fractions)]
        return saved[rows].clone()

    return adapt
