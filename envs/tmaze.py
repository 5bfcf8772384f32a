"""Passive T-Maze: remember a cue seen once, act on it ``corridor_length`` steps later."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_masked_attention.validation import check_int, check_render_mode


class TMazeEnv(gym.Env):
    """A cue (left or right) is shown only at the first step; the agent then walks a corridor
    of ``corridor_length`` steps (any action moves it forward) and at the junction turns:
    action 0 = left, 1 = right. The correct turn gives +1, the wrong one -1, and ends the episode.

    Observation ``(cue, at_junction, progress)``: ``cue`` is -1 (left) or +1 (right) at the first
    step and 0 afterwards; ``at_junction`` is 1 at the decision step; ``progress`` runs from 0 to 1
    along the corridor. A policy that remembers the cue for ``corridor_length`` steps succeeds
    every time (return 1); a memoryless one cannot beat 50% (expected return 0).

    ``render()`` returns a ``(24, 8 * (corridor_length + 2), 3)`` uint8 picture: the corridor, the
    agent (red) and the rewarded arm (green).

    :param corridor_length: steps between the cue and the junction (>= 1).
    :param render_mode: ``"rgb_array"`` or None.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 4}
    optimal_return = 1.0
    random_return = 0.0

    def __init__(self, corridor_length: int = 20, render_mode: str | None = None) -> None:
        check_int("corridor_length", corridor_length)
        self.corridor_length = int(corridor_length)
        self.render_mode = check_render_mode(render_mode)
        self.observation_space = spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self._position = 0
        self._goal = 0

    def _obs(self) -> np.ndarray:
        cue = (2.0 * self._goal - 1.0) if self._position == 0 else 0.0
        at_junction = float(self._position == self.corridor_length)
        return np.array([cue, at_junction, self._position / self.corridor_length], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._position = 0
        self._goal = int(self.np_random.integers(2))
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._position < self.corridor_length:
            self._position += 1
            return self._obs(), 0.0, False, False, {}
        success = int(action) == self._goal
        return self._obs(), 1.0 if success else -1.0, True, False, {"is_success": success}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        cell = 8
        image = np.full((3 * cell, (self.corridor_length + 2) * cell, 3), 40, dtype=np.uint8)
        image[cell : 2 * cell, : (self.corridor_length + 1) * cell] = 200  # corridor
        image[:, (self.corridor_length + 1) * cell :] = 200  # junction arms
        goal_row = 2 if self._goal else 0
        image[goal_row * cell : (goal_row + 1) * cell, (self.corridor_length + 1) * cell :] = (60, 180, 60)
        image[cell : 2 * cell, self._position * cell : (self._position + 1) * cell] = (220, 60, 60)
        return image
