"""Dark Room (Algorithm Distillation, Laskin et al. 2022) and its harder variants.

The agent walks a ``size x size`` grid it cannot see: it observes only its own ``(x, y)``
and must find a hidden goal from rewards alone, so across episodes with the same goal an
agent with memory can do far better than one without.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_masked_attention.validation import check_int, check_render_mode

#: Actions: no-op, up (y - 1), down (y + 1), left (x - 1), right (x + 1).
MOVES = np.array([(0, 0), (0, -1), (0, 1), (-1, 0), (1, 0)], dtype=np.int64)


def goal_split(size: int, split: str) -> list[tuple[int, int]]:
    """The documented goal split of a ``size x size`` grid.

    A cell ``(x, y)`` is a *test* goal when ``(x + 3 * y) % 5 == 2`` (about a fifth of the cells,
    spread over every row and column) and a *train* goal otherwise; ``"all"`` is every cell.
    Pure arithmetic, so the split never changes across library versions.
    """
    cells = [(x, y) for y in range(size) for x in range(size)]
    if split == "all":
        return cells
    if split not in ("train", "test"):
        raise ValueError(f"goals={split!r} is unknown: expected 'train', 'test' or 'all'")
    is_test = [(x + 3 * y) % 5 == 2 for x, y in cells]
    return [cell for cell, test in zip(cells, is_test) if test == (split == "test")]


def _check_cell(name: str, cell: Any, size: int) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in cell)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={cell!r} is invalid: expected a pair (x, y) of integers") from None
    if not (0 <= x < size and 0 <= y < size):
        raise ValueError(f"{name}={cell!r} is outside the {size}x{size} grid: expected 0 <= x, y < {size}")
    return x, y


@functools.lru_cache(maxsize=8)
def _random_walk(size: int) -> np.ndarray:
    """Transition matrix ``(size*size, size*size)`` of the uniformly random policy (walls clip moves)."""
    n = size * size
    matrix = np.zeros((n, n))
    for x in range(size):
        for y in range(size):
            for dx, dy in MOVES:
                nx, ny = min(max(x + dx, 0), size - 1), min(max(y + dy, 0), size - 1)
                matrix[y * size + x, ny * size + nx] += 1.0 / len(MOVES)
    return matrix


@functools.lru_cache(maxsize=8)
def _key_to_door_random_return(
    size: int,
    episode_length: int,
    start: tuple[int, int],
    keys: tuple[tuple[int, int], ...],
    doors: tuple[tuple[int, int], ...],
) -> float:
    walk = _random_walk(size)
    n = size * size
    door_index = np.array([y * size + x for x, y in doors])
    rows = np.arange(len(doors))
    total = 0.0
    for key in keys:
        k = key[1] * size + key[0]
        no_key = np.zeros(n)
        no_key[start[1] * size + start[0]] = 1.0
        carrying = np.zeros((len(doors), n))  # key holders that have not opened door d yet
        expected = 0.0
        for _ in range(episode_length):
            no_key, carrying = no_key @ walk, carrying @ walk
            expected += carrying[rows, door_index].sum() / len(doors)  # door opened this step
            carrying[rows, door_index] = 0.0
            expected += no_key[k]  # key picked up this step: the door needs a later step
            carrying[:, k] += no_key[k]
            no_key[k] = 0.0
        total += expected
    return float(total / len(keys))


class _GridEnv(gym.Env):
    """Shared grid mechanics: position, moves, observation, rendering.

    ``render()`` returns a ``(8 * size, 8 * size, 3)`` uint8 picture (72x72 for the default 9x9):
    the agent in red, the goal green, the key yellow (grey once held), the door blue.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}
    _CELL = 8

    def __init__(self, size: int, episode_length: int, render_mode: str | None) -> None:
        self.size = check_int("size", size, minimum=2)
        self.episode_length = check_int("episode_length", episode_length)
        self.render_mode = check_render_mode(render_mode)
        self.observation_space = spaces.Box(0.0, float(size - 1), (2,), dtype=np.float32)
        self.action_space = spaces.Discrete(len(MOVES))
        self.start = (size // 2, size // 2)
        self._pos = np.array(self.start)
        self._t = 0

    def _move(self, action: Any) -> tuple[int, int]:
        self._pos = np.clip(self._pos + MOVES[int(action)], 0, self.size - 1)
        self._t += 1
        return int(self._pos[0]), int(self._pos[1])

    def _obs(self) -> np.ndarray:
        return self._pos.astype(np.float32)

    def _draw(self, marks: list[tuple[tuple[int, int], tuple[int, int, int]]]) -> np.ndarray:
        c = self._CELL
        image = np.full((self.size * c, self.size * c, 3), 30, dtype=np.uint8)
        image[::c, :] = image[:, ::c] = 60  # grid lines
        for (x, y), colour in [*marks, ((int(self._pos[0]), int(self._pos[1])), (220, 60, 60))]:
            image[y * c + 2 : (y + 1) * c - 1, x * c + 2 : (x + 1) * c - 1] = colour
        return image


class DarkroomEnv(_GridEnv):
    """Dark Room: a 9x9 grid, start at the centre, 5 actions (no-op, up, down, left, right),
    observation = the agent's ``(x, y)``, reward 1 on every step that ends on the hidden goal,
    episodes of 20 steps (truncated).

    The goal is drawn uniformly per episode from ``goal_split(size, goals)`` (see :func:`goal_split`),
    or fixed with ``goal=(x, y)``. With ``reward_once=True`` (``sb3ma/DarkroomHard-v0``) only the
    first arrival on the goal is rewarded.

    ``optimal_return`` and ``random_return`` are exact expectations over the goal distribution
    (the random policy's by dynamic programming over its position distribution).

    :param goal: a fixed goal cell, or None to draw one per episode.
    :param goals: ``"train"``, ``"test"`` or ``"all"`` cells to draw from.
    :param size: grid side.
    :param episode_length: steps per episode.
    :param reward_once: reward only the first arrival on the goal.
    :param render_mode: ``"rgb_array"`` or None.
    """

    def __init__(
        self,
        goal: tuple[int, int] | None = None,
        goals: str = "train",
        size: int = 9,
        episode_length: int = 20,
        reward_once: bool = False,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(size, episode_length, render_mode)
        self.goals = [_check_cell("goal", goal, self.size)] if goal is not None else goal_split(self.size, goals)
        self.reward_once = bool(reward_once)
        self.goal = self.goals[0]
        self._reached = False
        self.optimal_return = float(np.mean([self.optimal_return_for(g) for g in self.goals]))
        self.random_return = float(np.mean([self.random_return_for(g) for g in self.goals]))

    def optimal_return_for(self, goal: tuple[int, int]) -> float:
        """Best return for ``goal``: walk straight there (``d`` steps), then stay."""
        distance = abs(goal[0] - self.start[0]) + abs(goal[1] - self.start[1])
        if self.reward_once:
            return 1.0 if distance <= self.episode_length else 0.0
        return float(max(0, self.episode_length - max(distance, 1) + 1))

    def random_return_for(self, goal: tuple[int, int]) -> float:
        """Expected return of the uniformly random policy for ``goal`` (exact)."""
        walk = _random_walk(self.size)
        goal_index = goal[1] * self.size + goal[0]
        mass = np.zeros(self.size * self.size)
        mass[self.start[1] * self.size + self.start[0]] = 1.0
        expected = 0.0
        for _ in range(self.episode_length):
            mass = mass @ walk
            expected += mass[goal_index]
            if self.reward_once:  # absorb: later visits earn nothing
                mass[goal_index] = 0.0
        return float(expected)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.goal = self.goals[int(self.np_random.integers(len(self.goals)))]
        self._pos, self._t, self._reached = np.array(self.start), 0, False
        return self._obs(), {"goal": self.goal}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        on_goal = self._move(action) == self.goal
        reward = float(on_goal and not (self.reward_once and self._reached))
        self._reached |= on_goal
        return self._obs(), reward, False, self._t >= self.episode_length, {"goal": self.goal}

    def render(self) -> np.ndarray | None:
        return self._draw([(self.goal, (60, 180, 60))]) if self.render_mode == "rgb_array" else None


class DarkroomHardEnv(DarkroomEnv):
    """``sb3ma/DarkroomHard-v0``: Dark Room rewarded only the first time the goal is reached."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(reward_once=True, **kwargs)


class DarkKeyToDoorEnv(_GridEnv):
    """Dark Key-To-Door: reward 1 for reaching a hidden key, then 1 for reaching a hidden door
    once the key is held; 50-step episodes (truncated). Observation = the agent's ``(x, y)``.

    Key and door are drawn uniformly per episode (independently, any cells), or fixed with
    ``key=(x, y)`` and ``door=(x, y)``. Optimal and random returns are exact expectations.

    :param key: fixed key cell, or None to draw one per episode.
    :param door: fixed door cell, or None to draw one per episode.
    :param size: grid side.
    :param episode_length: steps per episode.
    :param render_mode: ``"rgb_array"`` or None.
    """

    def __init__(
        self,
        key: tuple[int, int] | None = None,
        door: tuple[int, int] | None = None,
        size: int = 9,
        episode_length: int = 50,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(size, episode_length, render_mode)
        cells = goal_split(self.size, "all")
        self.keys = [_check_cell("key", key, self.size)] if key is not None else cells
        self.doors = [_check_cell("door", door, self.size)] if door is not None else cells
        self.key, self.door = self.keys[0], self.doors[0]
        self._has_key = self._done = False
        self.optimal_return = float(np.mean([[self.optimal_return_for(k, d) for d in self.doors] for k in self.keys]))
        self.random_return = self._random_return()

    def optimal_return_for(self, key: tuple[int, int], door: tuple[int, int]) -> float:
        to_key = abs(key[0] - self.start[0]) + abs(key[1] - self.start[1])
        to_door = max(abs(door[0] - key[0]) + abs(door[1] - key[1]), 1)  # the door is reached by a step after the key
        to_key = max(to_key, 1)
        return float(to_key <= self.episode_length) + float(to_key + to_door <= self.episode_length)

    def _random_return(self) -> float:
        """Expected random-policy return, averaged over key and door draws (exact)."""
        return _key_to_door_random_return(self.size, self.episode_length, self.start, tuple(self.keys), tuple(self.doors))

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.key = self.keys[int(self.np_random.integers(len(self.keys)))]
        self.door = self.doors[int(self.np_random.integers(len(self.doors)))]
        self._pos, self._t, self._has_key, self._done = np.array(self.start), 0, False, False
        return self._obs(), {"key": self.key, "door": self.door}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        cell = self._move(action)
        reward = 0.0
        if not self._has_key and cell == self.key:
            self._has_key, reward = True, 1.0
        elif self._has_key and not self._done and cell == self.door:
            self._done, reward = True, 1.0
        return self._obs(), reward, False, self._t >= self.episode_length, {"key": self.key, "door": self.door}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        key_colour = (90, 90, 90) if self._has_key else (230, 200, 40)
        return self._draw([(self.door, (60, 120, 220)), (self.key, key_colour)])
