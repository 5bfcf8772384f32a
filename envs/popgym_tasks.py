"""POPGym memory tasks (Morad et al. 2023, the ``popgym`` package) with their returns documented.

The games, rewards and episode lengths are POPGym's own, so scores sit on POPGym's scale (every task here: optimal
return 1). What these subclasses add: ``optimal_return`` and ``random_return`` (the expected return of uniformly
random actions, exact) for normalised scores, and Autoencode's ``Tuple(Discrete(2), Discrete(4))`` observation as the
equivalent ``MultiDiscrete([2, 4])``, which :class:`~sb3_masked_attention.HistoryWrapper` one-hot encodes.

* ``sb3ma/popgym-RepeatFirstEasy-v0``: say the suit of the first card, at each of 51 steps. Optimal 1, random -1/2.
* ``sb3ma/popgym-CountRecallEasy-v0``: how often has the queried colour been dealt (0-26), at each of 51 steps.
  Optimal 1, random -25/27.
* ``sb3ma/popgym-AutoencodeEasy-v0``: watch 52 suits, then recite them backwards. Optimal 1, random -1/2.
* ``sb3ma/popgym-RepeatPreviousEasy-v0``: say the suit of the card dealt 4 steps ago, at each of 51 steps (the last
  48 rewarded). Optimal 1, random -1/2.
* ``sb3ma/popgym-StatelessCartPoleEasy-v0``: POPGym's PositionOnlyCartPoleEasy (the paper's Stateless CartPole):
  CartPole seeing the cart position and pole angle only (no velocities), 1/200 a step for up to 200 steps. Optimal 1;
  random 0.111 (a Monte Carlo estimate: 20,000 episodes of uniform random actions averaged 0.1109, standard error
  0.0004; CartPole's random return has no closed form).

RepeatFirst's answer is always the oldest observation (the worst case for masks that hide the oldest part of the
history); CountRecall needs the whole episode; Autoencode needs every card, in order.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from popgym.envs.autoencode import AutoencodeEasy
from popgym.envs.count_recall import CountRecallEasy
from popgym.envs.position_only_cartpole import PositionOnlyCartPoleEasy
from popgym.envs.repeat_first import RepeatFirstEasy
from popgym.envs.repeat_previous import RepeatPreviousEasy


class PopgymRepeatFirstEasy(RepeatFirstEasy):
    """POPGym's RepeatFirstEasy: 51 steps rewarded +-1/51; a uniform guess is right 1 time in 4."""

    optimal_return = 1.0
    random_return = -0.5


class PopgymCountRecallEasy(CountRecallEasy):
    """POPGym's CountRecallEasy: 51 steps rewarded +-1/51; a uniform guess among 27 counts is right 1 time in 27.
    ``info["counts"]`` is a copy at each step (POPGym hands out its live array)."""

    optimal_return = 1.0
    random_return = -25.0 / 27.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        obs, info = super().reset(seed=seed, options=options)
        return obs, {**info, "counts": info["counts"].copy()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward, terminated, truncated, {**info, "counts": info["counts"].copy()}


class PopgymAutoencodeEasy(AutoencodeEasy):
    """POPGym's AutoencodeEasy, observing ``MultiDiscrete([2, 4])`` (mode, suit) instead of the equivalent Tuple:
    52 recited cards rewarded +-1/52 (the 51 watching steps are not rewarded)."""

    optimal_return = 1.0
    random_return = -0.5

    def __init__(self) -> None:
        super().__init__()
        self.observation_space = spaces.MultiDiscrete([2, 4])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        obs, info = super().reset(seed=seed, options=options)
        return np.asarray(obs, dtype=np.int64), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = super().step(action)
        return np.asarray(obs, dtype=np.int64), reward, terminated, truncated, info


class PopgymRepeatPreviousEasy(RepeatPreviousEasy):
    """POPGym's RepeatPreviousEasy: name the suit dealt 4 steps ago; 51 steps, the last 48 rewarded +-1/48."""

    optimal_return = 1.0
    random_return = -0.5


class PopgymStatelessCartPoleEasy(PositionOnlyCartPoleEasy):
    """POPGym's PositionOnlyCartPoleEasy: cart position and pole angle, no velocities; 1/200 a step, 200 steps at most.
    ``random_return`` is a Monte Carlo estimate (module docstring)."""

    optimal_return = 1.0
    random_return = 0.111
