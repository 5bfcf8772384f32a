"""Repeat Previous: output the symbol shown ``k`` steps ago (a memory task of exact range ``k``)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_masked_attention.validation import check_int, check_render_mode

_PALETTE = np.array(
    [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (250, 190, 212),
        (0, 128, 128),
        (170, 110, 40),
    ],
    dtype=np.uint8,
)


class RepeatPreviousEnv(gym.Env):
    """Each step shows a uniformly random symbol (one-hot of ``n_symbols``); the action is a symbol.
    From step ``k`` on, the action earns +1 if it equals the symbol shown ``k`` steps earlier;
    the first ``k`` actions earn nothing. Episodes last ``episode_length`` steps (terminated).

    The optimal return is ``episode_length - k``; a random or memoryless policy earns
    ``(episode_length - k) / n_symbols`` in expectation (the symbols are independent).

    ``render()`` returns a ``(16, 8 * episode_length, 3)`` uint8 picture: the symbols shown so far
    (top), the current step (white) and the step whose symbol is the answer (grey).

    :param k: how many steps back to repeat (>= 1).
    :param n_symbols: alphabet size (>= 2).
    :param episode_length: steps per episode (> k).
    :param render_mode: ``"rgb_array"`` or None.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, k: int = 4, n_symbols: int = 4, episode_length: int = 32, render_mode: str | None = None) -> None:
        for name, value, minimum in (("k", k, 1), ("n_symbols", n_symbols, 2), ("episode_length", episode_length, 2)):
            check_int(name, value, minimum)
        if k >= episode_length:
            raise ValueError(f"k={k} is invalid: expected k < episode_length={episode_length}")
        self.k, self.n_symbols, self.episode_length = int(k), int(n_symbols), int(episode_length)
        self.render_mode = check_render_mode(render_mode)
        self.observation_space = spaces.Box(0.0, 1.0, (self.n_symbols,), dtype=np.float32)
        self.action_space = spaces.Discrete(self.n_symbols)
        self.optimal_return = float(self.episode_length - self.k)
        self.random_return = self.optimal_return / self.n_symbols
        self._symbols = np.zeros(self.episode_length, dtype=np.int64)
        self._t = 0

    def _obs(self) -> np.ndarray:
        one_hot = np.zeros(self.n_symbols, dtype=np.float32)
        if self._t < self.episode_length:  # the final observation, after the last action, is blank
            one_hot[self._symbols[self._t]] = 1.0
        return one_hot

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._symbols = self.np_random.integers(self.n_symbols, size=self.episode_length)
        self._t = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        # The action answers the current step t: target is the symbol of step t - k.
        reward = float(self._t >= self.k and int(action) == self._symbols[self._t - self.k])
        self._t += 1
        return self._obs(), reward, self._t >= self.episode_length, False, {}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        cell, now = 8, min(self._t, self.episode_length - 1)
        image = np.full((2 * cell, self.episode_length * cell, 3), 30, dtype=np.uint8)
        for t in range(now + 1):  # symbols shown so far
            image[:cell, t * cell + 1 : (t + 1) * cell - 1] = _PALETTE[self._symbols[t] % len(_PALETTE)]
        image[cell + 2 :, now * cell + 1 : (now + 1) * cell - 1] = 255  # current step
        if now >= self.k:  # the step whose symbol is the answer
            image[cell + 2 :, (now - self.k) * cell + 1 : (now - self.k + 1) * cell - 1] = 120
        return image
