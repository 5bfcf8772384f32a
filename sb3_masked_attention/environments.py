"""Environment registration, history-window vector envs, and each env's documented return bounds."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv

from sb3_masked_attention.validation import check_keywords
from sb3_masked_attention.wrappers import HistoryWrapper

#: Return bounds (random policy, optimum) of ids that do not carry them as attributes.
KNOWN_BOUNDS: dict[str, tuple[float, float]] = {
    "CartPoleNoVel-v1": (22.0, 500.0),  # uniform random CartPole lasts about 22 steps on average
    "CartPole-v1": (22.0, 500.0),
    "PendulumNoVel-v1": (-1230.0, -150.0),  # random torques / a good swing-up policy, 200 steps
    "Pendulum-v1": (-1230.0, -150.0),
}


def register_envs() -> None:
    """Register the ``sb3ma/`` environments and rl-zoo's extra ones (``CartPoleNoVel-v1`` and friends)."""
    import rl_zoo3.import_envs  # noqa: F401

    import envs  # noqa: F401


def check_env_id(env_id: str) -> None:
    """Raise ValueError naming ``env_id`` if no environment is registered under it."""
    register_envs()
    try:
        gym.spec(env_id)
    except gym.error.Error as error:
        raise ValueError(f"env {env_id!r} is not registered: {error}") from None


def check_env_kwargs(env_id: str, env_kwargs: dict[str, Any] | None) -> None:
    """Raise ValueError if ``env_id`` is not registered or its constructor does not take one of ``env_kwargs``."""
    from gymnasium.envs.registration import load_env_creator

    check_env_id(env_id)
    if not env_kwargs:
        return
    entry_point = gym.spec(env_id).entry_point
    creator: Any = load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
    check_keywords(creator, env_kwargs, f"env {env_id!r}: keyword argument(s)")


def make_history_vec_env(
    env_id: str,
    history_len: int,
    n_envs: int = 1,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    across_episodes: bool = False,
) -> VecEnv:
    """``make_vec_env`` with every copy wrapped in :class:`HistoryWrapper`."""
    check_env_kwargs(env_id, env_kwargs)
    return make_vec_env(
        env_id,
        n_envs=n_envs,
        seed=seed,
        env_kwargs=env_kwargs,
        wrapper_class=HistoryWrapper,
        wrapper_kwargs=dict(history_len=history_len, across_episodes=across_episodes),
    )


def return_bounds(env_id: str, env_kwargs: dict[str, Any] | None = None) -> tuple[float, float] | None:
    """``(random_return, optimal_return)`` of ``env_id``: :data:`KNOWN_BOUNDS`, else the env's documented
    ``random_return`` / ``optimal_return`` attributes; None if it documents neither.

    :raises ValueError: ``env_id`` is not registered.
    """
    if env_id in KNOWN_BOUNDS:
        return KNOWN_BOUNDS[env_id]
    check_env_id(env_id)
    env = gym.make(env_id, **(env_kwargs or {}))
    try:
        low, high = getattr(env.unwrapped, "random_return", None), getattr(env.unwrapped, "optimal_return", None)
    finally:
        env.close()
    return None if low is None or high is None else (float(low), float(high))
