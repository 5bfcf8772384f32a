import gymnasium as gym
import hypothesis.strategies as st
import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import given, settings
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv

from sb3_masked_attention import HistoryWrapper


class ScriptedEnv(gym.Env):
    """Observation = step counter; reward = 10 * action; episodes of ``length`` steps."""

    def __init__(self, length: int = 100, discrete_obs: bool = False):
        self.length = length
        self.observation_space = spaces.Discrete(length + 1) if discrete_obs else spaces.Box(0, 1000, (1,), np.float32)
        self.action_space = spaces.Discrete(3)
        self.t = 0

    def _obs(self):
        return self.t if isinstance(self.observation_space, spaces.Discrete) else np.array([self.t], np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 10.0 * int(action), self.t >= self.length, False, {}


def test_spaces_for_box_obs_and_discrete_actions():
    env = HistoryWrapper(gym.make("CartPole-v1"), history_len=6)
    space = env.observation_space
    assert set(space.spaces) == {"obs", "prev_action", "prev_reward", "valid"}
    assert space["obs"].shape == (6, 4) and space["prev_action"].shape == (6, 2)
    assert space["prev_reward"].shape == (6, 1) and space["valid"].shape == (6,)
    obs, _ = env.reset(seed=0)
    assert obs["valid"].tolist() == [0, 0, 0, 0, 0, 1]
    assert space.contains(obs)


def test_box_actions_are_raw_and_discrete_obs_one_hot():
    env = HistoryWrapper(gym.make("Pendulum-v1"), history_len=3)
    env.reset(seed=0)
    obs, *_ = env.step(np.array([1.5], dtype=np.float32))
    assert obs["prev_action"][-1].tolist() == [1.5]
    env = HistoryWrapper(ScriptedEnv(discrete_obs=True), history_len=3)
    env.reset(seed=0)
    obs, *_ = env.step(1)
    assert obs["obs"].shape == (3, 101)
    assert obs["obs"][-1].argmax() == 1 and obs["obs"][-2].argmax() == 0 and obs["obs"][0].sum() == 0


@settings(max_examples=50, deadline=None)
@given(history_len=st.integers(1, 8), actions=st.lists(st.integers(0, 2), min_size=0, max_size=20))
def test_window_equals_last_steps_of_the_trajectory(history_len, actions):
    env = HistoryWrapper(ScriptedEnv(length=100), history_len=history_len)
    obs, _ = env.reset(seed=0)
    trajectory = [(0.0, None, 0.0)]  # (observation, previous action, previous reward)
    for t, action in enumerate(actions, start=1):
        obs, reward, *_ = env.step(action)
        trajectory.append((float(t), action, reward))
    window = trajectory[-history_len:]
    pad = history_len - len(window)
    assert obs["valid"].tolist() == [0.0] * pad + [1.0] * len(window)
    assert obs["obs"][pad:, 0].tolist() == [o for o, _, _ in window]
    assert obs["prev_reward"][pad:, 0].tolist() == [r for _, _, r in window]
    for row, (_, action, _) in zip(obs["prev_action"][pad:], window):
        expected = np.zeros(3)
        if action is not None:
            expected[action] = 1
        assert row.tolist() == expected.tolist()
    assert not obs["obs"][:pad].any() and not obs["prev_action"][:pad].any()


def test_window_is_cleared_at_reset_by_default():
    env = HistoryWrapper(ScriptedEnv(length=2), history_len=4)
    env.reset(seed=0)
    env.step(1)
    env.step(2)
    obs, _ = env.reset()
    assert obs["valid"].tolist() == [0, 0, 0, 1]
    assert not obs["prev_action"].any() and not obs["prev_reward"].any()


def test_across_episodes_keeps_window_and_marks_starts():
    env = HistoryWrapper(ScriptedEnv(length=2), history_len=5, across_episodes=True)
    obs, _ = env.reset(seed=0)
    assert "episode_start" in env.observation_space.spaces
    env.step(1)
    env.step(2)  # terminates: reward 20
    obs, _ = env.reset()
    assert obs["valid"].tolist() == [0, 1, 1, 1, 1]
    assert obs["episode_start"].tolist() == [0, 1, 0, 0, 1]
    assert obs["obs"][:, 0].tolist() == [0, 0, 1, 2, 0]
    # The first step of the new episode carries the last action and reward of the previous one (RL^2).
    assert obs["prev_action"][-1].tolist() == [0, 0, 1] and obs["prev_reward"][-1, 0] == 20.0
    assert env.observation_space.contains(obs)


def test_passes_sb3_env_checker():
    check_env(HistoryWrapper(gym.make("CartPole-v1"), history_len=4), warn=False)
    check_env(HistoryWrapper(ScriptedEnv(discrete_obs=True), history_len=4, across_episodes=True), warn=False)


def test_works_inside_subproc_vec_env():
    venv = make_vec_env(
        "CartPole-v1",
        n_envs=2,
        seed=0,
        vec_env_cls=SubprocVecEnv,
        wrapper_class=HistoryWrapper,
        wrapper_kwargs=dict(history_len=5),
    )
    try:
        obs = venv.reset()
        assert obs["obs"].shape == (2, 5, 4) and obs["valid"][:, -1].tolist() == [1, 1]
        obs, *_ = venv.step(np.array([0, 1]))
        assert obs["prev_action"][:, -1].tolist() == [[1, 0], [0, 1]]
    finally:
        venv.close()


@pytest.mark.parametrize("history_len", [0, -3, 2.5, True])
def test_rejects_bad_history_len(history_len):
    with pytest.raises(ValueError, match="history_len"):
        HistoryWrapper(gym.make("CartPole-v1"), history_len=history_len)


def test_rejects_unsupported_observation_space():
    env = gym.make("CartPole-v1")
    env.observation_space = spaces.Tuple((spaces.Discrete(2), spaces.Discrete(3)))
    with pytest.raises(ValueError, match="observation space Tuple"):
        HistoryWrapper(env, history_len=4)


@pytest.mark.parametrize("action", [-1, 3, 1.0, np.int64(7)])
def test_invalid_action_is_refused_before_the_inner_env_steps(action):
    env = HistoryWrapper(ScriptedEnv(), history_len=4)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action .* is not in the action space Discrete\(3\)"):
        env.step(action)
    assert env.unwrapped.t == 0, "the inner env stepped on an invalid action"
    window, *_ = env.step(2)
    assert window["prev_action"][-1].tolist() == [0.0, 0.0, 1.0]


class NonFiniteEnv(ScriptedEnv):
    """ScriptedEnv whose observation or reward becomes ``value`` at step ``at``."""

    def __init__(self, at: int, value: float, where: str):
        super().__init__()
        self.at, self.value, self.where = at, value, where

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        if self.t == self.at:
            if self.where == "obs":
                obs = np.array([self.value], np.float32)
            else:
                reward = self.value
        return obs, reward, terminated, truncated, info


@pytest.mark.parametrize(
    ("value", "where", "message"),
    [
        (np.nan, "obs", r"observation obs\[0\] = nan at step 3 of the episode"),
        (np.inf, "obs", r"observation obs\[0\] = inf at step 3"),
        (np.nan, "reward", "reward nan at step 3 of the episode"),
        (-np.inf, "reward", "reward -inf at step 3"),
    ],
)
def test_non_finite_observation_or_reward_is_refused_at_its_step(value, where, message):
    env = HistoryWrapper(NonFiniteEnv(3, value, where), history_len=4)
    env.reset(seed=0)
    env.step(0), env.step(0)
    with pytest.raises(ValueError, match=message):
        env.step(0)


class SpaceEnv(gym.Env):
    """Observations drawn from ``space`` (seeded); Discrete(2) actions; episodes of 5 steps."""

    def __init__(self, space: spaces.Space):
        self.observation_space, self.action_space = space, spaces.Discrete(2)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        self.t = 0
        self.last = self.observation_space.sample()
        return self.last, {}

    def step(self, action):
        self.t += 1
        self.last = self.observation_space.sample()
        return self.last, 0.0, self.t >= 5, False, {}


def decode_one_hots(encoded: np.ndarray, nvec: np.ndarray) -> np.ndarray:
    """Slow reference: the index of the 1 in each block of a concatenation of one-hots."""
    blocks = np.split(encoded, np.cumsum(nvec)[:-1])
    assert all(block.sum() == 1 for block in blocks)
    return np.array([int(block.argmax()) for block in blocks])


@settings(max_examples=40, deadline=None)
@given(
    nvec=st.lists(st.integers(1, 5), min_size=1, max_size=4),
    start=st.integers(-3, 3),
    two_d=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_multidiscrete_observations_are_concatenated_one_hots(nvec, start, two_d, seed):
    nvec_array = np.array(nvec if not two_d or len(nvec) % 2 else [nvec, nvec[::-1]])
    space = spaces.MultiDiscrete(nvec_array, start=np.full(nvec_array.shape, start))
    env = HistoryWrapper(SpaceEnv(space), history_len=3)
    assert env.observation_space["obs"].shape == (3, int(nvec_array.sum()))
    window, _ = env.reset(seed=seed)
    for _ in range(3):
        assert env.observation_space.contains(window)
        raw = env.unwrapped.last
        decoded = decode_one_hots(window["obs"][-1], nvec_array.reshape(-1))
        assert (decoded + start == np.asarray(raw).reshape(-1)).all()
        window, *_ = env.step(0)


@settings(max_examples=30, deadline=None)
@given(shape=st.sampled_from([3, (2, 2), (1, 4)]), seed=st.integers(0, 1000))
def test_multibinary_observations_are_their_flattened_bits(shape, seed):
    env = HistoryWrapper(SpaceEnv(spaces.MultiBinary(shape)), history_len=2)
    n_bits = int(np.prod(shape))
    assert env.observation_space["obs"].shape == (2, n_bits)
    window, _ = env.reset(seed=seed)
    window, *_ = env.step(1)
    assert env.observation_space.contains(window)
    assert window["obs"].dtype == np.float32
    assert window["obs"][-1].tolist() == np.asarray(env.unwrapped.last, np.float32).reshape(-1).tolist()


@pytest.mark.parametrize(
    ("space", "bad"),
    [(spaces.MultiDiscrete([3, 2]), np.array([3, 0])), (spaces.MultiBinary(3), np.array([0, 2, 1]))],
)
def test_observation_outside_a_discrete_space_is_refused(space, bad):
    env = HistoryWrapper(SpaceEnv(space), history_len=2)
    env.reset(seed=0)
    env.unwrapped.observation_space = space
    env.unwrapped.step = lambda action: (bad, 0.0, False, False, {})
    with pytest.raises(ValueError, match="not in"):
        env.step(0)
