"""The one evaluation loop: play episodes with any SB3 / sb3-contrib model on a VecEnv.

Recurrent states are carried (RecurrentPPO, TransformerPPO), invalid-action masks are used when the model is
maskable (MaskablePPO, or a ``predict`` that takes ``action_masks``) and the env provides them, and each env copy
plays its share of the episodes (as SB3's ``evaluate_policy`` does), so short episodes are not over-represented when
``num_envs > 1``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.utils import is_masking_supported
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

from sb3_masked_attention.validation import check_int


@dataclass
class Episodes:
    """Returns of the played episodes, and the final ``info`` value of each requested key per episode."""

    returns: list[float]
    finals: dict[str, list[float]] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))


def play_episodes(
    model: BaseAlgorithm,
    env: VecEnv,
    n_episodes: int,
    deterministic: bool = True,
    info_keys: Sequence[str] = (),
    on_action: Callable[[np.ndarray], None] | None = None,
) -> Episodes:
    """Play ``n_episodes`` episodes of ``model`` on ``env`` (reset first) and return what they scored.

    :param info_keys: keys of the episodes' last ``info`` to collect (e.g. ``"is_success"``).
    :param on_action: called with each step's actions before the env takes them, when the env's state is what the
        model acted on (a diagnostic reads it there: ``bench/memory_v2_answers.py``).
    """
    n_episodes = check_int("n_episodes", n_episodes)
    n_envs = env.num_envs
    targets = np.array([(n_episodes + i) // n_envs for i in range(n_envs)])  # as evaluate_policy splits them
    counts = np.zeros(n_envs, dtype=int)
    maskable = isinstance(model, MaskablePPO) or (
        "action_masks" in inspect.signature(model.predict).parameters and is_masking_supported(env)
    )
    result = Episodes([], {key: [] for key in info_keys})
    running = np.zeros(n_envs)
    obs: Any = env.reset()
    state, starts = None, np.ones(n_envs, dtype=bool)
    while (counts < targets).any():
        kwargs = {"action_masks": np.stack(env.env_method("action_masks"))} if maskable else {}
        action, state = model.predict(obs, state=state, episode_start=starts, deterministic=deterministic, **kwargs)
        if on_action is not None:
            on_action(action)
        obs, reward, done, infos = env.step(action)
        running += reward
        for i in np.flatnonzero(done):
            if counts[i] < targets[i]:
                counts[i] += 1
                result.returns.append(float(running[i]))
                for key in info_keys:
                    if key in infos[i]:
                        result.finals[key].append(float(infos[i][key]))
            running[i] = 0.0
        starts = done
    return result
