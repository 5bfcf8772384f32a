"""Gymnasium wrappers that turn an environment into a history-observation task."""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from sb3_masked_attention.validation import check_int

#: Keys of a :class:`HistoryWrapper` observation (``episode_start`` only with ``across_episodes=True``).
OBS_KEY, ACTION_KEY, REWARD_KEY, VALID_KEY, EPISODE_START_KEY = "obs", "prev_action", "prev_reward", "valid", "episode_start"


def _encoded_size(space: spaces.Space) -> int:
    """Width of an action (or a discrete observation) once encoded: one-hots for Discrete/MultiDiscrete, flat values."""
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    if isinstance(space, spaces.MultiDiscrete):
        return int(np.sum(space.nvec))
    if isinstance(space, (spaces.Box, spaces.MultiBinary)):
        return int(np.prod(space.shape))
    raise ValueError(
        f"HistoryWrapper does not support action space {space}: expected Discrete, MultiDiscrete, MultiBinary or Box"
    )


def _one_hot(value: Any, space: spaces.Discrete | spaces.MultiDiscrete) -> np.ndarray:
    """Concatenated one-hots of a Discrete or MultiDiscrete value (``start`` subtracted), float32."""
    nvec = np.asarray(space.n if isinstance(space, spaces.Discrete) else space.nvec).reshape(-1)
    flat = np.asarray(value).reshape(-1) - np.asarray(space.start).reshape(-1)
    offsets = np.concatenate(([0], np.cumsum(nvec)[:-1]))
    encoded = np.zeros(int(nvec.sum()), dtype=np.float32)
    encoded[offsets + flat] = 1.0
    return encoded


class HistoryWrapper(gym.Wrapper):
    """Observe the last ``history_len`` steps instead of the current observation.

    Position ``t`` of the window (oldest first, newest last) holds the observation ``o_t``
    and the action and reward that led to it, ``a_{t-1}`` and ``r_{t-1}``. The observation is
    a ``spaces.Dict``:

    * ``obs``: ``(history_len, *obs_shape)`` for Box observations; Discrete ones are one-hot
      ``(history_len, n)``, MultiDiscrete ones concatenated one-hots ``(history_len, sum(nvec))`` and
      MultiBinary ones their flattened bits ``(history_len, n_bits)``, all float32;
    * ``prev_action``: ``(history_len, A)`` float32, one-hot for Discrete (concatenated one-hots for
      MultiDiscrete), the raw flattened action for Box and MultiBinary;
    * ``prev_reward``: ``(history_len, 1)`` float32;
    * ``valid``: ``(history_len,)`` float32, 1 for a real step, 0 for padding (the window is
      left-padded until it fills);
    * ``episode_start`` (only with ``across_episodes=True``): ``(history_len,)`` float32, 1 at the
      first step of each episode in the window.

    Every observation and reward must be finite and every action one of the action space (Box actions: the
    right size and finite; out-of-bounds values are the env's to clip): a step that breaks this raises
    ValueError naming the key, the value and the step, before the inner env steps on a bad action, instead of
    NaN features that fail later in PPO.

    With ``across_episodes=False`` the window is cleared at every reset. With
    ``across_episodes=True`` it survives resets (in-context / meta-RL tasks); the first step of
    an episode then carries the previous episode's last action and reward, as in RL^2.

    :param env: environment with a Box, Discrete, MultiDiscrete or MultiBinary observation space.
    :param history_len: number of steps in the window (>= 1).
    :param across_episodes: keep the window across episode resets.
    """

    def __init__(self, env: gym.Env, history_len: int = 16, across_episodes: bool = False) -> None:
        super().__init__(env)
        self.history_len = check_int("history_len", history_len)
        self.across_episodes = bool(across_episodes)

        obs_space = env.observation_space
        if isinstance(obs_space, spaces.Box):
            self._obs_shape: tuple[int, ...] = obs_space.shape
            obs_low, obs_high, obs_dtype = obs_space.low, obs_space.high, obs_space.dtype
        elif isinstance(obs_space, (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
            self._obs_shape = (_encoded_size(obs_space),)
            obs_low, obs_high, obs_dtype = np.zeros(self._obs_shape), np.ones(self._obs_shape), np.dtype(np.float32)
        else:
            raise ValueError(
                f"HistoryWrapper does not support observation space {obs_space}: "
                "expected Box, Discrete, MultiDiscrete or MultiBinary"
            )
        self._obs_pad = np.clip(np.zeros(self._obs_shape), obs_low, obs_high).astype(obs_dtype)

        act_space = env.action_space
        self._action_size = _encoded_size(act_space)
        if isinstance(act_space, spaces.Box):
            act_low, act_high = act_space.low.reshape(-1), act_space.high.reshape(-1)
        else:
            act_low, act_high = np.zeros(self._action_size), np.ones(self._action_size)
        self._action_pad = np.clip(np.zeros(self._action_size), act_low, act_high).astype(np.float32)
        # a Discrete action's one-hot is a row of this table, its range two numbers: the per-step work of a wrapper that
        # runs for every env step of every rollout
        if isinstance(act_space, spaces.Discrete):
            self._discrete_actions: tuple[int, int, np.ndarray] | None = (
                int(act_space.start),
                int(act_space.n),
                np.eye(int(act_space.n), dtype=np.float32),
            )
        else:
            self._discrete_actions = None

        T = self.history_len
        window: dict[str, spaces.Space] = {
            OBS_KEY: spaces.Box(
                np.broadcast_to(obs_low, (T, *self._obs_shape)).astype(obs_dtype),
                np.broadcast_to(obs_high, (T, *self._obs_shape)).astype(obs_dtype),
                dtype=obs_dtype,
            ),
            ACTION_KEY: spaces.Box(
                np.broadcast_to(act_low, (T, self._action_size)).astype(np.float32),
                np.broadcast_to(act_high, (T, self._action_size)).astype(np.float32),
                dtype=np.float32,
            ),
            REWARD_KEY: spaces.Box(-np.inf, np.inf, (T, 1), dtype=np.float32),
            VALID_KEY: spaces.Box(0.0, 1.0, (T,), dtype=np.float32),
        }
        if self.across_episodes:
            window[EPISODE_START_KEY] = spaces.Box(0.0, 1.0, (T,), dtype=np.float32)
        self.observation_space = spaces.Dict(window)
        self._buffers: dict[str, np.ndarray] = {
            key: np.zeros(space.shape or (), dtype=np.dtype(space.dtype)) for key, space in window.items()
        }
        self._clear()
        self._last_action = self._action_pad
        self._last_reward = 0.0
        self._stepped = False
        self._step_in_episode = 0

    def _clear(self) -> None:
        for buffer in self._buffers.values():
            buffer[...] = 0
        self._buffers[OBS_KEY][...] = self._obs_pad
        self._buffers[ACTION_KEY][...] = self._action_pad

    def _encode_obs(self, obs: Any) -> np.ndarray:
        space = self.env.observation_space
        if isinstance(space, (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
            if not space.contains(obs):
                raise ValueError(f"HistoryWrapper: the env returned observation {obs!r} at {self._where()}: not in {space}")
            if isinstance(space, spaces.MultiBinary):
                return np.asarray(obs, dtype=np.float32).reshape(-1)
            return _one_hot(obs, space)
        encoded = np.asarray(obs, dtype=space.dtype).reshape(self._obs_shape)
        finite = np.isfinite(encoded)
        if not finite.all():
            index = tuple(int(i) for i in np.argwhere(~finite)[0])
            raise ValueError(
                f"HistoryWrapper: the env returned observation {OBS_KEY}{list(index)} = {encoded[index]} at {self._where()}: "
                "expected finite values"
            )
        return encoded

    def _where(self) -> str:
        return f"step {self._step_in_episode} of the episode"

    def _check_action(self, action: Any) -> None:
        """Refuse an action outside the action space before the inner env acts on it."""
        space = self.env.action_space
        if self._discrete_actions is not None and isinstance(action, (int, np.integer)) and not isinstance(action, bool):
            start, n, _ = self._discrete_actions
            if start <= action < start + n:
                return
            raise ValueError(f"HistoryWrapper.step: action {action!r} is not in the action space {space}")
        if isinstance(space, spaces.Box):
            flat = np.asarray(action, dtype=np.float64).reshape(-1)
            if flat.size != self._action_size or not np.isfinite(flat).all():
                expected = f"expected {self._action_size} finite values"
                raise ValueError(f"HistoryWrapper.step: action {action!r} is invalid: {expected}")
            return
        value = np.asarray(action)
        if isinstance(space, spaces.Discrete) and value.size == 1:  # SB3 passes a scalar, some callers shape (1,)
            value = value.reshape(())
        if not (np.issubdtype(value.dtype, np.integer) or value.dtype == bool) or not space.contains(value):
            raise ValueError(f"HistoryWrapper.step: action {action!r} is not in the action space {space}")

    def _encode_action(self, action: Any) -> np.ndarray:
        if self._discrete_actions is not None:
            start, _, one_hots = self._discrete_actions
            return one_hots[int(np.asarray(action).reshape(-1)[0]) - start]
        space = self.env.action_space
        if isinstance(space, (spaces.Discrete, spaces.MultiDiscrete)):
            return _one_hot(action, space)
        return np.asarray(action, dtype=np.float32).reshape(-1)

    def _push(self, obs: Any, action: np.ndarray, reward: float, episode_start: bool) -> dict[str, np.ndarray]:
        step: dict[str, Any] = {OBS_KEY: self._encode_obs(obs), ACTION_KEY: action, REWARD_KEY: reward, VALID_KEY: 1.0}
        if self.across_episodes:
            step[EPISODE_START_KEY] = float(episode_start)
        for key, value in step.items():
            buffer = self._buffers[key]
            if self.history_len > 1:
                buffer[:-1] = buffer[1:]
            buffer[-1] = value
        return {key: buffer.copy() for key, buffer in self._buffers.items()}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        self._step_in_episode = 0
        if self.across_episodes and self._stepped:
            action, reward = self._last_action, self._last_reward
        else:
            self._clear()
            action, reward = self._action_pad, 0.0
        return self._push(obs, action, reward, episode_start=True), info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict]:
        self._check_action(action)
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._step_in_episode += 1
        if not np.isfinite(float(reward)):
            raise ValueError(f"HistoryWrapper: the env returned reward {reward} at {self._where()}: expected a finite value")
        self._last_action, self._last_reward, self._stepped = self._encode_action(action), float(reward), True
        return self._push(obs, self._last_action, float(reward), episode_start=False), reward, terminated, truncated, info
