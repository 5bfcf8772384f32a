"""Learning histories for Algorithm Distillation: a source RL algorithm learns each training goal from
scratch, and every transition of its whole learning run is recorded.

Dataset file (``.npz``, written atomically), ``R`` learning runs of ``N`` steps each:

=================  ====================  =========================================================
key                shape / dtype         meaning
=================  ====================  =========================================================
``observations``   (R, N, obs_dim) f32   observation the action was chosen in
``actions``        (R, N) int64          the source algorithm's action
``rewards``        (R, N) f32            reward of that step
``timesteps``      (R, N) int64          step index inside its episode (0 = first step)
``goals``          (R, 2) int64          the run's goal cell
``meta``           () str                JSON: env_id, env_kwargs, source, episodes, episode_length,
                                         n_actions, obs_low, obs_high, seed
=================  ====================  =========================================================

Runs have equal length because Dark Room episodes are fixed-length (truncated, never terminated).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

from sb3_masked_attention.io import load_npz, save_npz
from sb3_masked_attention.validation import check_int

SOURCES = ("q-learning", "ppo")
KEYS = ("observations", "actions", "rewards", "timesteps", "goals")


@dataclass
class Histories:
    """Learning histories (see the module docstring for every field)."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    timesteps: np.ndarray
    goals: np.ndarray
    meta: dict[str, Any]

    @property
    def n_runs(self) -> int:
        return self.actions.shape[0]

    def episode_returns(self) -> np.ndarray:
        """Return of every episode of every run: ``(R, episodes)``."""
        episodes, length = self.meta["episodes"], self.meta["episode_length"]
        return self.rewards.reshape(self.n_runs, episodes, length).sum(axis=2)


class OptimisticQLearner:
    """Tabular Q-learning with optimistic initial values and epsilon-greedy actions (ties broken at random).

    Optimism makes it explore systematically (untried actions look best) until it finds reward, then
    exploit: on Dark Room it finds the goal in a few episodes and walks straight to it afterwards,
    so one learning run shows the whole improvement in a short context.

    :param n_actions: discrete actions.
    :param initial_value: optimistic Q for untried (state, action) pairs.
    :param gamma: discount.
    :param learning_rate: step size of the update.
    :param epsilon: probability of a uniformly random action.
    :param rng: random generator.
    """

    def __init__(
        self,
        n_actions: int,
        rng: np.random.Generator,
        initial_value: float = 1.0,
        gamma: float = 0.9,
        learning_rate: float = 1.0,
        epsilon: float = 0.02,
    ) -> None:
        self.n_actions = check_int("n_actions", n_actions)
        self.rng, self.initial_value, self.gamma = rng, initial_value, gamma
        self.learning_rate, self.epsilon = learning_rate, epsilon
        self.q: dict[tuple, np.ndarray] = {}

    def _values(self, obs: np.ndarray) -> np.ndarray:
        key = tuple(np.asarray(obs).ravel().tolist())
        if key not in self.q:
            self.q[key] = np.full(self.n_actions, self.initial_value)
        return self.q[key]

    def act(self, obs: np.ndarray) -> int:
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.n_actions))
        values = self._values(obs)
        return int(self.rng.choice(np.flatnonzero(values == values.max())))

    def update(self, obs: np.ndarray, action: int, reward: float, next_obs: np.ndarray, terminated: bool) -> None:
        target = reward + (0.0 if terminated else self.gamma * self._values(next_obs).max())
        values = self._values(obs)
        values[action] += self.learning_rate * (target - values[action])

    def replay(self, transitions: Sequence[tuple[np.ndarray, int, float, np.ndarray, bool]]) -> None:
        """Update on an episode's transitions newest first: a reward found at the end reaches its start at once."""
        for transition in reversed(transitions):
            self.update(*transition)


def q_learning_run(env: gym.Env, episodes: int, seed: int) -> list[tuple[np.ndarray, int, float, int]]:
    learner = OptimisticQLearner(int(cast(Any, env.action_space).n), np.random.default_rng(seed))
    record = []
    obs, _ = env.reset(seed=seed)
    for _ in range(episodes):
        done, episode = False, cast(list, [])  # (obs, action, reward, next_obs, terminated)
        while not done:
            action = learner.act(obs)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            learner.update(obs, action, float(reward), next_obs, terminated)
            record.append((obs, action, float(reward), len(episode)))
            episode.append((obs, action, reward, next_obs, terminated))
            obs, done = next_obs, terminated or truncated
        learner.replay(episode)
        obs, _ = env.reset()
    return record


class _Recorder(gym.Wrapper):
    """Records every (observation, action, reward, step in episode) an SB3 algorithm takes while learning."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.record: list[tuple[np.ndarray, int, float, int]] = []
        self._obs: Any = None
        self._t = 0

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        self._obs, info = self.env.reset(**kwargs)
        self._t = 0
        return self._obs, info

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.record.append((self._obs, int(action), float(reward), self._t))
        self._obs, self._t = obs, self._t + 1
        return obs, reward, terminated, truncated, info


def _ppo_run(env: gym.Env, episodes: int, seed: int) -> list[tuple[np.ndarray, int, float, int]]:
    from stable_baselines3 import PPO

    recorder = _Recorder(env)
    steps = episodes * int(cast(Any, env.unwrapped).episode_length)
    n_steps = min(512, steps)
    model = PPO("MlpPolicy", recorder, n_steps=n_steps, batch_size=min(64, n_steps), seed=seed, device="cpu", verbose=0)
    model.learn(steps)
    return recorder.record[:steps]


RUNNERS: dict[str, Callable[[gym.Env, int, int], list]] = {"q-learning": q_learning_run, "ppo": _ppo_run}


def collect_histories(
    env_id: str = "sb3ma/Darkroom-v0",
    episodes: int = 60,
    runs_per_goal: int = 16,
    source: str = "q-learning",
    goals: Sequence[tuple[int, int]] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> Histories:
    """Record ``runs_per_goal`` learning runs of ``episodes`` episodes on each goal.

    :param env_id: a Dark Room id (the env takes ``goal=(x, y)`` and has fixed-length episodes).
    :param episodes: episodes per learning run.
    :param runs_per_goal: independent learning runs per goal (different seeds).
    :param source: ``"q-learning"`` (:class:`OptimisticQLearner`, seconds) or ``"ppo"`` (SB3 PPO, minutes).
    :param goals: goal cells; default the env's training goals (``goals="train"``).
    :param env_kwargs: extra env arguments (``size``, ``episode_length``...).
    :param seed: base seed; run ``i`` uses ``seed + i``.
    :param progress: show a progress bar.
    """
    import envs  # noqa: F401  (registers the sb3ma/ ids)

    episodes, runs_per_goal = check_int("episodes", episodes), check_int("runs_per_goal", runs_per_goal)
    if source not in SOURCES:
        raise ValueError(f"source={source!r} is unknown: expected one of {list(SOURCES)}")
    env_kwargs = dict(env_kwargs or {})
    probe = gym.make(env_id, **env_kwargs).unwrapped
    if not hasattr(probe, "goals") or not hasattr(probe, "episode_length"):
        raise ValueError(f"env_id={env_id!r} is not a Dark Room env: expected an env with goals and a fixed episode_length")
    goals = [(int(g[0]), int(g[1])) for g in (probe.goals if goals is None else goals)]
    if not goals:
        raise ValueError("goals is empty: expected at least one goal cell")
    jobs = [(goal, run) for goal in goals for run in range(runs_per_goal)]
    columns: list[list] = [[], [], [], []]
    for index, (goal, _) in enumerate(tqdm(jobs, desc=f"{source} learning runs", unit="run", disable=not progress)):
        env = gym.make(env_id, goal=goal, **env_kwargs)
        record = RUNNERS[source](env, episodes, seed + index)
        for column, values in zip(columns, zip(*record)):
            column.append(values)
    observations, actions, rewards, timesteps = (np.asarray(c) for c in columns)
    space = probe.observation_space
    meta = {
        "env_id": env_id,
        "env_kwargs": env_kwargs,
        "source": source,
        "episodes": episodes,
        "episode_length": int(probe.episode_length),
        "n_actions": int(cast(Any, probe.action_space).n),
        "obs_low": np.asarray(cast(Any, space).low).tolist(),
        "obs_high": np.asarray(cast(Any, space).high).tolist(),
        "seed": seed,
    }
    return Histories(
        observations.astype(np.float32),
        actions.astype(np.int64),
        rewards.astype(np.float32),
        timesteps.astype(np.int64),
        np.asarray([g for g, _ in jobs], dtype=np.int64),
        meta,
    )


def save_histories(histories: Histories, path: str | os.PathLike) -> None:
    """Write ``histories`` to an ``.npz`` file atomically."""
    save_npz(path, {key: getattr(histories, key) for key in KEYS}, histories.meta)


def load_histories(path: str | os.PathLike) -> Histories:
    """Read a dataset written by :func:`save_histories`, checking that its arrays agree."""
    arrays, meta = load_npz(path, (*KEYS, "meta"), "dataset", "sb3ma ad collect")
    assert meta is not None  # load_npz checked it is there
    histories = Histories(**{key: arrays[key] for key in KEYS}, meta=meta)
    runs, steps = histories.actions.shape
    if steps != meta["episodes"] * meta["episode_length"]:
        raise ValueError(
            f"dataset {str(path)!r} has {steps} steps per run, not episodes x episode_length = "
            f"{meta['episodes']} x {meta['episode_length']}"
        )
    for key in ("observations", "rewards", "timesteps"):
        if getattr(histories, key).shape[:2] != (runs, steps):
            raise ValueError(
                f"dataset {str(path)!r}: {key} has shape {getattr(histories, key).shape}, expected ({runs}, {steps}, ...)"
            )
    return histories
