"""Train and evaluate PPO with the head-masked transformer on any gymnasium id, top to bottom."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecEnv

from sb3_masked_attention.io import atomic_path
from sb3_masked_attention.strategies import HeadMaskStrategy, resolve_head_mask_strategy
from sb3_masked_attention.validation import check_int
from sb3_masked_attention.wrappers import HistoryWrapper

#: PPO settings that learn the memory tasks quickly; any of them can be overridden.
DEFAULT_PPO_KWARGS: dict[str, Any] = dict(n_steps=64, batch_size=256, n_epochs=4, learning_rate=1e-3, ent_coef=0.01)


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


def register_envs() -> None:
    """Register the ``sb3ma/`` environments and rl-zoo's extra ones (``CartPoleNoVel-v1`` and friends)."""
    import rl_zoo3.import_envs  # noqa: F401

    import envs  # noqa: F401


def make_history_vec_env(
    env_id: str,
    history_len: int,
    n_envs: int = 1,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    across_episodes: bool = False,
) -> VecEnv:
    """``make_vec_env`` with every copy wrapped in :class:`HistoryWrapper`."""
    register_envs()
    return make_vec_env(
        env_id,
        n_envs=n_envs,
        seed=seed,
        env_kwargs=env_kwargs,
        wrapper_class=HistoryWrapper,
        wrapper_kwargs=dict(history_len=history_len, across_episodes=across_episodes),
    )


def return_bounds(env_id: str, env_kwargs: dict[str, Any] | None = None) -> tuple[float, float] | None:
    """``(random_return, optimal_return)`` if the environment documents them, else None."""
    env = gym.make(env_id, **(env_kwargs or {}))
    try:
        low, high = getattr(env.unwrapped, "random_return", None), getattr(env.unwrapped, "optimal_return", None)
    finally:
        env.close()
    return None if low is None or high is None else (float(low), float(high))


def train_head_masked_ppo(
    env_id: str,
    *,
    head_mask_strategy: HeadMaskStrategy = "specialized",
    history_len: int = 16,
    total_timesteps: int = 50_000,
    n_envs: int = 8,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    extractor_kwargs: dict[str, Any] | None = None,
    ppo_kwargs: dict[str, Any] | None = None,
    output_dir: str | os.PathLike | None = None,
    progress_bar: bool = False,
    verbose: int = 0,
) -> PPO:
    """Train ``PPO("HeadMaskedTransformerPolicy")`` on ``env_id`` seen through a history window.

    :param env_id: a registered gymnasium id.
    :param head_mask_strategy: strategy name or one fraction per head.
    :param history_len: steps in the window.
    :param total_timesteps: environment steps to train for.
    :param n_envs: parallel environments.
    :param seed: seed of the model and environments.
    :param env_kwargs: keyword arguments of the environment.
    :param extractor_kwargs: extra ``HeadMaskedTransformerExtractor`` arguments (``d_model``, ``n_layers`` ...).
    :param ppo_kwargs: PPO arguments overriding :data:`DEFAULT_PPO_KWARGS`.
    :param output_dir: where to write ``model.zip`` and TensorBoard logs (nothing is written if None).
    :param progress_bar: show SB3's progress bar.
    :return: the trained model.
    """
    check_int("total_timesteps", total_timesteps)
    check_int("n_envs", n_envs)
    extractor_kwargs = {**(extractor_kwargs or {}), "head_mask_strategy": head_mask_strategy}
    resolve_head_mask_strategy(head_mask_strategy, extractor_kwargs.get("n_heads", 8))  # fail before building envs
    venv = make_history_vec_env(env_id, history_len, n_envs=n_envs, seed=seed, env_kwargs=env_kwargs)
    kwargs = {**DEFAULT_PPO_KWARGS, **(ppo_kwargs or {})}
    kwargs["policy_kwargs"] = {
        "net_arch": [64],
        **kwargs.get("policy_kwargs", {}),
        "features_extractor_kwargs": extractor_kwargs,
    }
    tensorboard_log = None if output_dir is None else str(Path(output_dir) / "tensorboard")
    model = PPO("HeadMaskedTransformerPolicy", venv, seed=seed, verbose=verbose, tensorboard_log=tensorboard_log, **kwargs)
    model.learn(total_timesteps, progress_bar=progress_bar)
    if output_dir is not None:
        with atomic_path(Path(output_dir) / "model.zip") as tmp:
            model.save(tmp)
    return model


def evaluate(
    model: PPO,
    env_id: str,
    *,
    history_len: int,
    n_episodes: int = 50,
    seed: int = 10_000,
    env_kwargs: dict[str, Any] | None = None,
) -> Evaluation:
    """Deterministic evaluation on fresh environments (seeded apart from training)."""
    venv = make_history_vec_env(env_id, history_len, n_envs=1, seed=seed, env_kwargs=env_kwargs)
    returns, _ = evaluate_policy(model, venv, n_eval_episodes=n_episodes, deterministic=True, return_episode_rewards=True)
    venv.close()
    mean = float(np.mean(returns))
    bounds = return_bounds(env_id, env_kwargs)
    normalized = None if bounds is None else (mean - bounds[0]) / (bounds[1] - bounds[0])
    return Evaluation(mean, float(np.std(returns)), n_episodes, normalized)
