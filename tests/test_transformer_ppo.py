"""TransformerPPO: the memory read equals a causal pass, training replays the rollout exactly, one observation stored
per step, and predict/save/load/evaluate_policy behave as RecurrentPPO's."""

from __future__ import annotations

import copy
import subprocess
import sys

import gymnasium as gym
import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_masked_attention import HistoryWrapper
from sb3_masked_attention.attention import TransformerBlock
from sb3_masked_attention.environments import register_envs
from sb3_masked_attention.episodes import play_episodes
from sb3_masked_attention.masks import head_window_mask, memory_head_mask, memory_window_sizes
from sb3_masked_attention.transformer_ppo import TransformerMemory, TransformerPPO

FRACTIONS = [0.0, 0.3, 0.6, 0.9]
TINY = dict(memory_len=8, d_model=16, n_heads=4, n_layers=2, head_mask_strategy=FRACTIONS)


def token_env(env_id: str, n_envs: int = 3, across_episodes: bool = False, **env_kwargs):
    register_envs()
    return make_vec_env(
        env_id,
        n_envs=n_envs,
        seed=0,
        env_kwargs=env_kwargs,
        wrapper_class=HistoryWrapper,
        wrapper_kwargs=dict(history_len=1, across_episodes=across_episodes),
    )


@settings(max_examples=60, deadline=None)
@given(
    memory_len=st.integers(1, 12),
    data=st.data(),
    fractions=st.lists(st.floats(0.0, 0.99), min_size=1, max_size=6),
)
def test_memory_mask_is_the_newest_row_of_the_head_window_mask(memory_len, data, fractions):
    n_valid = data.draw(st.integers(0, memory_len))
    valid = torch.zeros(1, memory_len + 1, dtype=torch.bool)
    valid[0, memory_len - n_valid :] = True
    expected = head_window_mask(valid, fractions)[0, :, -1]
    assert torch.equal(memory_head_mask(torch.tensor([n_valid]), memory_len, fractions)[0, :, 0], expected)


@settings(max_examples=40, deadline=None)
@given(memory_len=st.integers(1, 12), fractions=st.lists(st.floats(0.0, 0.99), min_size=1, max_size=6))
def test_the_window_size_table_is_memory_head_mask(memory_len, fractions):
    """A rollout step looks its mask up (a slot is read when its age is below the head's window size) instead of
    building it: the same mask as memory_head_mask for every count of valid slots."""
    sizes = memory_window_sizes(memory_len, fractions)
    n_valid = torch.arange(memory_len + 1)
    age = torch.arange(memory_len, -1, -1)  # memory_head_mask's order: oldest first, the token itself (age 0) last
    looked_up = age[None, None, :] < sizes[n_valid][:, :, None]
    assert torch.equal(looked_up[:, :, None], memory_head_mask(n_valid, memory_len, fractions))


@pytest.mark.parametrize(
    "variant", [{}, dict(gated=True, rotary_base=32.0), dict(episode_positions=True), dict(episode_time=True)]
)
def test_stepping_one_token_at_a_time_equals_a_causal_pass(variant):
    """With a memory as long as the sequence, the memory read is exactly causal attention over it."""
    torch.manual_seed(0)
    space = token_env("sb3ma/TMaze-v0", n_envs=1, corridor_length=3).observation_space
    memory = TransformerMemory(
        space, memory_len=12, d_model=16, n_heads=4, n_layers=2, head_mask_strategy=FRACTIONS, **variant
    ).eval()
    tokens = torch.randn(2, 10, memory.token_size)
    state = memory.initial_state(2)
    stepped = []
    with torch.no_grad():
        for t in range(10):
            features, _, _ = memory.step(tokens[:, t], state, torch.full((2,), float(t == 0)))
            stepped.append(features)
        if variant.get("episode_time"):  # the t-th token reads t earlier ones, of a memory of 12
            tokens = torch.cat([tokens, (torch.arange(10.0) / 12).expand(2, 10)[..., None]], dim=-1)
        x = memory.embed(tokens)
        if variant.get("episode_positions"):  # the t-th token of the episode reads t earlier ones
            x = x + memory.position_embed.weight[:10]
        mask = head_window_mask(torch.ones(2, 10, dtype=torch.bool), FRACTIONS)
        for block in memory.blocks:
            assert isinstance(block, TransformerBlock)
            x, _ = block(x, mask=mask)
        causal = memory.ln_final(x)
    torch.testing.assert_close(torch.stack(stepped, dim=1), causal, atol=1e-5, rtol=1e-5)


class ReplayCheck(BaseCallback):
    """At the end of each rollout, recompute every sample's log-prob and value as training will (current
    weights, memory read from the stored streams) and record the largest difference to the rollout's."""

    def __init__(self) -> None:
        super().__init__()
        self.differences: list[tuple[float, float]] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        model, buffer = self.model, copy.deepcopy(self.model.rollout_buffer)  # get() flattens: leave PPO's intact
        model.policy.set_training_mode(True)
        rollout = buffer.rollout_observations(model.device) if model.policy.exact_memory else None
        with torch.no_grad(), model.policy.replay(buffer.streams(model.device), rollout):
            data = next(buffer.get(None))
            actions = data.actions.long().flatten() if isinstance(model.action_space, gym.spaces.Discrete) else data.actions
            values, log_prob, _ = model.policy.evaluate_actions(data.observations, actions)
        self.differences.append(
            ((log_prob - data.old_log_prob).abs().max().item(), (values.flatten() - data.old_values).abs().max().item())
        )


class CountWithTwoDials(gym.Env):
    """MultiDiscrete actions: set dial 0 to the step number mod 3 and dial 1 to the first observation's sign."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.MultiDiscrete([3, 2])

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.sign = 0, int(self.np_random.integers(2))
        return np.array([2.0 * self.sign - 1.0, 0.0], np.float32), {}

    def step(self, action):
        reward = float(action[0] == self.t % 3) + float(action[1] == self.sign)
        self.t += 1
        return np.array([0.0, self.t / 7], np.float32), reward, self.t == 7, False, {}


@pytest.mark.parametrize(
    ("env_id", "env_kwargs", "across_episodes"),
    [
        ("sb3ma/TMaze-v0", {"corridor_length": 3}, False),  # discrete; episodes end inside every rollout
        ("sb3ma/TMaze-v0", {"corridor_length": 3}, True),  # the memory runs across episodes
        ("Pendulum-v1", {}, False),  # continuous actions
        (CountWithTwoDials, {}, False),  # MultiDiscrete actions (one-hot per dial)
        ("sb3ma/popgym-CountRecallEasy-v0", {}, False),  # MultiDiscrete observations (one-hot per part)
    ],
)
def test_training_reproduces_the_rollout(env_id, env_kwargs, across_episodes):
    env = token_env(env_id, across_episodes=across_episodes, **env_kwargs)
    model = TransformerPPO("TransformerMemoryPolicy", env, n_steps=40, batch_size=60, n_epochs=2, seed=0, policy_kwargs=TINY)
    check = ReplayCheck()
    model.learn(3 * 120, callback=check)
    assert len(check.differences) == 3  # the second and third rollouts follow updates: the memory cache is refreshed
    for log_prob_difference, value_difference in check.differences:
        assert log_prob_difference < 1e-5 and value_difference < 1e-5, check.differences


class NoiseLog(BaseCallback):
    """The gSDE exploration matrices each rollout step sampled with (their identity and shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.matrices: list[torch.Tensor] = []

    def _on_step(self) -> bool:
        self.matrices.append(self.model.policy.action_dist.exploration_matrices)
        return True


def test_gsde_draws_one_exploration_matrix_per_env_every_sde_sample_freq_steps_and_replays():
    env = token_env("Pendulum-v1")
    model = TransformerPPO(
        "TransformerMemoryPolicy", env, n_steps=12, batch_size=36, n_epochs=2, seed=0, policy_kwargs=TINY,
        use_sde=True, sde_sample_freq=4,
    )  # fmt: skip
    noise, check = NoiseLog(), ReplayCheck()
    model.learn(2 * 36, callback=[noise, check])
    assert len(noise.matrices) == 24 and all(matrix.shape[0] == 3 for matrix in noise.matrices)  # one per env
    drawn = [i for i in range(1, 24) if noise.matrices[i] is not noise.matrices[i - 1]]
    assert drawn == [4, 8, 12, 16, 20]  # every 4 steps, and again at each rollout's start (step 12)
    assert not torch.equal(noise.matrices[0], noise.matrices[4])
    assert len(check.differences) == 2 and max(max(pair) for pair in check.differences) < 1e-5, check.differences
    actions = np.stack([model.predict(env.reset(), deterministic=False)[0] for _ in range(2)])
    assert actions.shape == (2, 3, 1) and np.isfinite(actions).all()


def test_gsde_model_saves_and_loads(tmp_path):
    env = token_env("Pendulum-v1", n_envs=2)
    model = TransformerPPO(
        "TransformerMemoryPolicy", env, n_steps=8, batch_size=16, seed=0, policy_kwargs=TINY, use_sde=True, sde_sample_freq=4
    )
    model.learn(16)
    model.save(tmp_path / "sde.zip")
    loaded = TransformerPPO.load(tmp_path / "sde.zip", env=env)
    assert loaded.use_sde and loaded.sde_sample_freq == 4
    obs = env.reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    torch.testing.assert_close(model.policy.log_std, loaded.policy.log_std)


def trained_and_reloaded(env, tmp_path, **policy_kwargs):
    """A TINY TransformerPPO with ``policy_kwargs`` after two rollouts (each replayed to 1e-5 in its first epoch) and
    its save loaded again (greedy actions equal)."""
    model = TransformerPPO(
        "TransformerMemoryPolicy",
        env,
        n_steps=40,
        batch_size=60,
        n_epochs=2,
        seed=0,
        policy_kwargs=dict(TINY, **policy_kwargs),
    )
    check = ReplayCheck()
    model.learn(2 * 120, callback=check)
    assert len(check.differences) == 2 and max(max(pair) for pair in check.differences) < 1e-5, check.differences
    model.save(tmp_path / "model.zip")
    loaded = TransformerPPO.load(tmp_path / "model.zip", env=env)
    obs = env.reset()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    return model, loaded


def test_gated_memory_with_a_short_rotary_base_replays_and_saves(tmp_path):
    env = token_env("sb3ma/TMaze-v0", corridor_length=3)
    model, loaded = trained_and_reloaded(env, tmp_path, gated=True, rotary_base=16.0)
    block = model.policy.memory.layers()[0]
    assert block.gates is not None and block.attn.rotary is not None
    torch.testing.assert_close(block.attn.rotary.inv_freq, 16.0 ** (-torch.arange(0, 4, 2) / 4))
    assert loaded.policy.memory.layers()[0].gates is not None
    torch.testing.assert_close(loaded.policy.memory.layers()[0].attn.rotary.inv_freq, block.attn.rotary.inv_freq)
    with pytest.raises(ValueError, match="gated='yes'"):
        TransformerPPO("TransformerMemoryPolicy", env, policy_kwargs=dict(TINY, gated="yes"))


@pytest.mark.parametrize("env_id", ["sb3ma/TMaze-v0", "Pendulum-v1"])
def test_exact_memory_replays_the_rollout_and_saves(env_id, tmp_path):
    env = token_env(env_id, **({"corridor_length": 3} if env_id == "sb3ma/TMaze-v0" else {}))
    _, loaded = trained_and_reloaded(env, tmp_path, exact_memory=True)
    assert loaded.policy.exact_memory
    with pytest.raises(ValueError, match="exact_memory=1"):
        TransformerPPO("TransformerMemoryPolicy", env, policy_kwargs=dict(TINY, exact_memory=1))


@pytest.mark.parametrize("exact_memory", [False, True])
def test_episode_positions_replay_the_rollout_save_and_tell_the_steps_apart(exact_memory, tmp_path):
    env = token_env("sb3ma/TMaze-v0", corridor_length=3)
    model, loaded = trained_and_reloaded(env, tmp_path, episode_positions=True, exact_memory=exact_memory)
    memory = model.policy.memory
    assert memory.position_embed is not None and memory.position_embed.weight.shape == (8 + 1, 16)
    # the same token at the episode's first step and at its fifth: different block inputs (without: the same)
    token = torch.randn(1, memory.token_size).expand(2, -1)
    steps = memory.embed_tokens(token, torch.tensor([0, 4]))
    assert not torch.allclose(steps[0], steps[1])
    torch.testing.assert_close(steps[1] - steps[0], memory.position_embed.weight[4] - memory.position_embed.weight[0])
    torch.testing.assert_close(loaded.policy.memory.position_embed.weight, memory.position_embed.weight)
    assert TransformerPPO("TransformerMemoryPolicy", env, policy_kwargs=TINY).policy.memory.position_embed is None
    with pytest.raises(ValueError, match="episode_positions=1"):
        TransformerPPO("TransformerMemoryPolicy", env, policy_kwargs=dict(TINY, episode_positions=1))


@pytest.mark.parametrize("exact_memory", [False, True])
def test_episode_time_replays_the_rollout_saves_and_is_linear_in_the_step(exact_memory, tmp_path):
    env = token_env("sb3ma/TMaze-v0", corridor_length=3)
    model, loaded = trained_and_reloaded(env, tmp_path, episode_time=True, exact_memory=exact_memory)
    memory = model.policy.memory
    plain = TransformerPPO("TransformerMemoryPolicy", env, policy_kwargs=TINY).policy.memory
    assert memory.token_size == plain.token_size and memory.embed.in_features == plain.embed.in_features + 1
    # the same token at an episode's steps 0, 2 and 4 of a memory of 8: block inputs 1/4 and 1/2 of the time column
    # apart
    token = torch.randn(1, memory.token_size).expand(3, -1)
    steps = memory.embed_tokens(token, torch.tensor([0, 2, 4]))
    time_column = memory.embed.weight[:, -1]
    torch.testing.assert_close(steps[1] - steps[0], time_column / 4)
    torch.testing.assert_close(steps[2] - steps[0], time_column / 2)
    assert loaded.policy.memory.episode_time and not plain.episode_time
    torch.testing.assert_close(loaded.policy.memory.embed.weight, memory.embed.weight)
    with pytest.raises(ValueError, match="episode_time='yes'"):
        TransformerPPO("TransformerMemoryPolicy", env, policy_kwargs=dict(TINY, episode_time="yes"))


def test_exact_memory_reads_the_rollout_as_the_current_weights_encode_it(tmp_path):
    """After an update, an exact read of a token whose episode began in the rollout equals stepping that episode's
    tokens through the updated memory from empty; the stale read (stored block inputs) does not."""
    env = token_env("sb3ma/TMaze-v0", corridor_length=3)
    model = TransformerPPO(
        "TransformerMemoryPolicy", env, n_steps=16, batch_size=48, n_epochs=3, learning_rate=3e-3, seed=0,
        policy_kwargs=dict(TINY, exact_memory=True),
    )  # fmt: skip
    model.learn(48)  # one rollout, then the update: the buffer's block inputs are the old weights'
    buffer, policy = model.rollout_buffer, model.policy
    rollout = buffer.rollout_observations(model.device)
    streams = buffer.streams(model.device)
    env_index, step_index = rollout["_memory_env"].long(), rollout["_memory_step"].long()
    tokens = policy._tokens({key: value for key, value in rollout.items() if not key.startswith("_")})
    with torch.no_grad():
        exact = policy.memory.read_streams(tokens, streams, env_index, step_index, rollout["_memory_valid"].long(), True)
        stale = policy.memory.read_streams(tokens, streams, env_index, step_index, rollout["_memory_valid"].long())
        starts = torch.as_tensor(buffer.episode_starts.T.reshape(-1))  # env by env, as the rollout's observations
        checked = 0
        for e in range(3):
            rows = torch.nonzero(env_index == e).flatten()
            state, began = policy.memory.initial_state(1), False
            for row in rows:
                began = began or bool(starts[row])
                features, _, _ = policy.memory.step(tokens[row : row + 1], state, starts[row : row + 1])
                if began:  # the episode began inside the rollout: its whole memory is the rollout's
                    torch.testing.assert_close(exact[row], features[0], atol=1e-5, rtol=1e-5)
                    checked += 1
    assert checked > 30
    assert (exact - stale).abs().max() > 1e-3  # the stored block inputs are stale after the update


def test_vecnormalize_and_subprocvecenv():
    """Normalising the observation and reward keys works (and the flags are refused); envs in subprocesses."""
    from stable_baselines3.common.vec_env import SubprocVecEnv, VecNormalize

    from envs.tmaze import TMazeEnv

    wrapper = dict(wrapper_class=HistoryWrapper, wrapper_kwargs=dict(history_len=1))
    env = make_vec_env(lambda: TMazeEnv(corridor_length=3), n_envs=2, seed=0, vec_env_cls=SubprocVecEnv, **wrapper)
    try:
        with pytest.raises(ValueError, match=r"normalises the observation keys \['prev_action', 'valid'\]"):
            TransformerPPO("TransformerMemoryPolicy", VecNormalize(env), policy_kwargs=TINY)
        normalized = VecNormalize(env, norm_obs_keys=["obs", "prev_reward"])
        model = TransformerPPO("TransformerMemoryPolicy", normalized, n_steps=16, batch_size=32, seed=0, policy_kwargs=TINY)
        check = ReplayCheck()
        model.learn(64, callback=check)
        assert len(check.differences) == 2 and max(max(pair) for pair in check.differences) < 1e-5
        assert normalized.obs_rms["obs"].count > 1  # the statistics moved
        with pytest.raises(ValueError, match="normalises the observation keys"):
            model.set_env(VecNormalize(env, norm_obs_keys=["obs", "valid"]))
    finally:
        env.close()


class OnlySomeAllowed(gym.Env):
    """Invalid actions change with time (MaskablePPO's ``action_masks()``); taking one is an error."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, multi: bool = False) -> None:
        self.action_space = gym.spaces.MultiDiscrete([4, 3]) if multi else gym.spaces.Discrete(4)

    def action_masks(self) -> np.ndarray:
        first = [self.t % 2 == 0, self.t % 2 == 1, True, False]
        return np.array(
            [*first, True, self.t % 3 != 0, False] if isinstance(self.action_space, gym.spaces.MultiDiscrete) else first
        )

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        picks = np.atleast_1d(action)
        sizes = np.atleast_1d(getattr(self.action_space, "nvec", 4))
        allowed = np.split(self.action_masks(), np.cumsum(sizes)[:-1])
        if not all(mask[pick] for mask, pick in zip(allowed, picks)):
            raise AssertionError(f"invalid action {action} at step {self.t}")
        self.t += 1
        return np.array([self.t / 6], np.float32), float(picks[0] == 2), self.t == 6, False, {}


@pytest.mark.parametrize("multi", [False, True])
def test_invalid_action_masks_in_rollouts_training_and_predict(multi):
    env = token_env(lambda: OnlySomeAllowed(multi), n_envs=2)
    model = TransformerPPO("TransformerMemoryPolicy", env, n_steps=16, batch_size=32, n_epochs=2, seed=0, policy_kwargs=TINY)
    check = ReplayCheck()
    model.learn(64, callback=check)  # the env raises on any invalid action
    assert model.rollout_buffer.action_masks is not None and not model.rollout_buffer.action_masks.all()
    assert max(max(pair) for pair in check.differences) < 1e-5  # training reads the same masks
    returns = play_episodes(model, env, 6).returns  # play_episodes passes the env's masks to predict
    assert len(returns) == 6
    with pytest.raises(AssertionError, match="invalid action"):  # without masks, invalid actions are drawn
        TransformerPPO("TransformerMemoryPolicy", env, use_action_masks=False, n_steps=64, seed=0, policy_kwargs=TINY).learn(
            128
        )


def test_predict_refuses_mistakes_with_one_value_error_naming_the_argument():
    env = token_env(lambda: OnlySomeAllowed(True), n_envs=2)
    model = TransformerPPO("TransformerMemoryPolicy", env, n_steps=8, batch_size=16, seed=0, policy_kwargs=TINY)
    obs = env.reset()
    masks = np.stack(env.env_method("action_masks"))
    _, state = model.predict(obs, None, np.ones(2), action_masks=masks)
    with pytest.raises(ValueError, match=r"episode_start has 3 entries .*one per env \(2\)"):
        model.predict(obs, state, np.ones(3), action_masks=masks)
    with pytest.raises(ValueError, match=r"state holds .* for 2 env\(s\) of this model"):
        model.predict(obs, state.select([0]), np.ones(2), action_masks=masks)  # another env count
    other = TransformerPPO("TransformerMemoryPolicy", env, n_steps=8, batch_size=16, policy_kwargs={**TINY, "memory_len": 5})
    with pytest.raises(ValueError, match="state holds"):
        model.predict(obs, other.policy.initial_state(2), np.ones(2), action_masks=masks)  # another model's memory
    with pytest.raises(ValueError, match="state is a tuple"):
        model.predict(obs, (np.zeros(2),), np.ones(2), action_masks=masks)
    with pytest.raises(ValueError, match=r"action_masks has shape \(2, 6\): expected 7 flags per env"):
        model.predict(obs, state, np.zeros(2), action_masks=masks[:, :6])
    none_allowed = masks.copy()
    none_allowed[1, 4:] = False
    with pytest.raises(ValueError, match=r"allows no action for env\(s\) \[1\] in action dimension 1"):
        model.predict(obs, state, np.zeros(2), action_masks=none_allowed)


def test_an_env_without_the_token_wrapper_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"wrap the env in HistoryWrapper\(env, history_len=1\)"):
        TransformerPPO("TransformerMemoryPolicy", make_vec_env("CartPole-v1", n_envs=1))


def test_the_buffer_stores_each_observation_once():
    env = token_env("sb3ma/TMaze-v0", corridor_length=3)
    for memory_len in (4, 64):
        model = TransformerPPO(
            "TransformerMemoryPolicy", env, n_steps=16, batch_size=48, policy_kwargs={**TINY, "memory_len": memory_len}
        )
        model.learn(48)
        buffer = model.rollout_buffer
        assert buffer.hidden.shape == (16, 3, 2, 16)  # per step and env: one block input per layer
        assert buffer.prefix.shape == (2, 3, memory_len, 16)  # per env: the memory the rollout began with
        assert buffer.observations["obs"].size == 16 * 3 * env.observation_space["obs"].shape[-1]


def test_predict_save_load_and_evaluate_policy(tmp_path):
    env = token_env("sb3ma/TMaze-v0", n_envs=2, corridor_length=3)
    model = TransformerPPO("TransformerMemoryPolicy", env, n_steps=32, batch_size=64, seed=0, policy_kwargs=TINY)
    model.learn(64)
    model.save(tmp_path / "tx.zip")
    mean, _ = evaluate_policy(model, env, n_eval_episodes=4, deterministic=True)
    assert np.isfinite(mean)

    rollout = tmp_path / "rollout.py"
    rollout.write_text(
        "import sys, numpy as np\n"
        "from stable_baselines3.common.env_util import make_vec_env\n"
        "from sb3_masked_attention import HistoryWrapper\n"
        "from sb3_masked_attention.environments import register_envs\n"
        "from sb3_masked_attention.transformer_ppo import TransformerPPO\n"
        "register_envs()\n"
        "model = TransformerPPO.load(sys.argv[1])\n"
        "env = make_vec_env('sb3ma/TMaze-v0', n_envs=2, seed=0, env_kwargs={'corridor_length': 3},\n"
        "                   wrapper_class=HistoryWrapper, wrapper_kwargs={'history_len': 1})\n"
        "obs, state, starts, actions = env.reset(), None, np.ones(2), []\n"
        "for _ in range(12):\n"
        "    action, state = model.predict(obs, state, starts, deterministic=True)\n"
        "    obs, _, starts, _ = env.step(action)\n"
        "    actions.append(action.tolist())\n"
        "print(actions)\n"
    )
    runs = [
        subprocess.run([sys.executable, str(rollout), str(tmp_path / "tx.zip")], capture_output=True, text=True)
        for _ in range(2)
    ]
    assert all(run.returncode == 0 for run in runs), runs[0].stderr[-2000:]
    assert runs[0].stdout == runs[1].stdout
    # ... and they are the actions of the model that was saved
    obs, state, starts, actions = env.reset(), None, np.ones(2), []
    fresh = token_env("sb3ma/TMaze-v0", n_envs=2, corridor_length=3)
    obs = fresh.reset()
    for _ in range(12):
        action, state = model.predict(obs, state, starts, deterministic=True)
        obs, _, starts, _ = fresh.step(action)
        actions.append(action.tolist())
    assert runs[0].stdout.strip() == str(actions)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="HistoryWrapper\\(env, history_len=1\\)"):
        TransformerMemory(HistoryWrapper(gym.make("CartPole-v1"), 4).observation_space)
    with pytest.raises(ValueError, match="memory_len=0"):
        TransformerMemory(HistoryWrapper(gym.make("CartPole-v1"), 1).observation_space, memory_len=0)
    with pytest.raises(ValueError, match="memory_len=100000000 is larger than 16384"):  # refused before allocating
        TransformerMemory(HistoryWrapper(gym.make("CartPole-v1"), 1).observation_space, memory_len=10**8)


def test_rl_zoo_trains_and_enjoys_ppo_tx_through_sb3ma_zoo(tmp_path):
    """`sb3ma zoo train|enjoy` run rl-zoo's own scripts with ppo_tx registered, every rl-zoo flag passed through."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "zoo_configs", tmp_path / "zoo_configs")
    common = ["--algo", "ppo_tx", "--env", "sb3ma/TMaze-v0", "--gym-packages", "envs", "--env-kwargs", "corridor_length:3"]
    train = [*common, "--conf-file", "zoo_configs/ppo_tx.yml", "-n", "512", "--seed", "1"]
    for args in (["train", *train], ["enjoy", *common, "-f", "logs/", "--no-render", "-n", "50"]):
        result = subprocess.run(
            [sys.executable, "-m", "sb3_masked_attention.cli", "zoo", *args], cwd=tmp_path, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "logs" / "ppo_tx" / "sb3ma-TMaze-v0_1" / "sb3ma-TMaze-v0.zip").exists()
    assert "Mean reward" in result.stdout


def test_ppo_tx_yml_has_an_entry_for_every_memory_env():
    from pathlib import Path

    import yaml

    import envs

    entries = yaml.safe_load((Path(__file__).resolve().parents[1] / "zoo_configs" / "ppo_tx.yml").read_text())
    token_envs = set(envs.ENV_IDS) - set(envs.TERRITORY_IDS)  # Dict image observations: no one-step tokens
    assert token_envs | {"CartPoleNoVel-v1", "PendulumNoVel-v1", "default"} <= set(entries)
    assert all(entry["policy"] == "TransformerMemoryPolicy" for entry in entries.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CI has none; run where one is lent)")
def test_on_cuda_every_tensor_stays_on_the_device_and_training_replays_the_rollout():
    """device="cuda" end to end: the memory, the buffer's replay data and the update live on the GPU, and the first
    epoch still reproduces the rollout."""
    env = token_env("sb3ma/TMaze-v0", corridor_length=3)
    model = TransformerPPO(
        "TransformerMemoryPolicy", env, n_steps=40, batch_size=60, n_epochs=2, seed=0, policy_kwargs=TINY, device="cuda"
    )
    check = ReplayCheck()
    model.learn(2 * 120, callback=check)
    memory = model._memory
    assert memory is not None
    for tensor in (memory.hidden, memory.kv, memory.n_valid, memory.head, memory.position):
        assert tensor.device.type == "cuda"
    buffer = model.rollout_buffer
    assert buffer.hidden.device.type == buffer.prefix.device.type == buffer.n_valid.device.type == "cuda"
    for log_prob_difference, value_difference in check.differences:
        assert log_prob_difference < 1e-5 and value_difference < 1e-5, check.differences
    actions, state = model.predict(env.reset(), deterministic=True)
    assert actions.shape == (3,) and state.kv.device.type == "cuda"


def test_a_token_without_the_previous_action_replays_and_saves(tmp_path):
    env = token_env("sb3ma/TMaze-v0", corridor_length=3)
    full = TransformerMemory(env.observation_space, **TINY)
    kwargs = dict(TINY, token_inputs=["obs", "prev_reward"])
    model = TransformerPPO("TransformerMemoryPolicy", env, n_steps=40, batch_size=60, n_epochs=2, seed=0, policy_kwargs=kwargs)
    memory = model.policy.memory
    action_size = int(np.prod(env.observation_space["prev_action"].shape[1:]))
    assert memory.token_keys == ["obs", "prev_reward"] and memory.embed.in_features == full.embed.in_features - action_size
    obs = {key: torch.as_tensor(value) for key, value in env.reset().items()}
    tokens = memory.tokens(obs)
    expected = torch.cat([obs["obs"].reshape(3, -1), obs["prev_reward"].reshape(3, -1)], -1).float()  # 3 envs
    torch.testing.assert_close(tokens, expected)
    check = ReplayCheck()
    model.learn(2 * 120, callback=check)
    assert max(max(pair) for pair in check.differences) < 1e-5, check.differences  # first epoch replays the rollout
    model.save(tmp_path / "inputs.zip")
    loaded = TransformerPPO.load(tmp_path / "inputs.zip", env=env)
    assert loaded.policy.memory.token_keys == ["obs", "prev_reward"]
    observation = env.reset()
    np.testing.assert_array_equal(
        model.predict(observation, deterministic=True)[0], loaded.predict(observation, deterministic=True)[0]
    )
    for bad in (["prev_reward"], ["obs", "obs"], ["obs", "reward"], "obs"):
        with pytest.raises(ValueError, match="token_inputs="):
            TransformerPPO("TransformerMemoryPolicy", env, policy_kwargs=dict(TINY, token_inputs=bad))


def _orthogonal_with_gain(weight: torch.Tensor, gain: float) -> bool:
    """Whether a (square or wide) weight's rows are orthogonal with norm ``gain``, as SB3's init_weights draws them."""
    w = weight.detach()
    rows = w if w.shape[0] <= w.shape[1] else w.T
    return torch.allclose(rows @ rows.T, gain**2 * torch.eye(len(rows)), atol=1e-4)


def test_ortho_init_is_sb3_s_by_default_and_off_keeps_pytorch_s_initialisation(tmp_path):
    """SB3's ActorCriticPolicy re-draws a features extractor orthogonally (gain sqrt 2): on by default, as in SB3."""
    env = token_env("sb3ma/TMaze-v0", corridor_length=3)
    ortho = TransformerPPO("TransformerMemoryPolicy", env, seed=0, policy_kwargs=TINY).policy
    pytorch = TransformerPPO("TransformerMemoryPolicy", env, seed=0, policy_kwargs=dict(TINY, ortho_init=False)).policy

    def layers(policy):
        return [policy.memory.embed, *(m for m in policy.memory.blocks.modules() if isinstance(m, torch.nn.Linear))]

    assert ortho.ortho_init and not pytorch.ortho_init
    assert not any(_orthogonal_with_gain(layer.weight, 2**0.5) for layer in layers(pytorch))
    assert all(_orthogonal_with_gain(layer.weight, 2**0.5) for layer in layers(ortho))
    assert _orthogonal_with_gain(ortho.action_net.weight, 0.01) and not _orthogonal_with_gain(pytorch.action_net.weight, 0.01)
    model = TransformerPPO("TransformerMemoryPolicy", env, seed=0, policy_kwargs=dict(TINY, ortho_init=False))
    model.save(tmp_path / "pytorch.zip")
    assert not TransformerPPO.load(tmp_path / "pytorch.zip", env=env).policy.ortho_init  # the choice is saved
    with pytest.raises(ValueError, match="ortho_init='no'"):
        TransformerPPO("TransformerMemoryPolicy", env, policy_kwargs=dict(TINY, ortho_init="no"))
    with pytest.raises(ValueError, match="ortho_init_memory=1"):
        TransformerPPO("TransformerMemoryPolicy", env, policy_kwargs=dict(TINY, ortho_init_memory=1))


@pytest.mark.parametrize("gated", [False, True])
def test_ortho_init_memory_chooses_the_memory_s_initialisation_apart_from_the_heads(gated, tmp_path):
    env = token_env("sb3ma/TMaze-v0", corridor_length=3)
    kwargs = dict(TINY, gated=gated)
    torch.manual_seed(0)
    own = TransformerMemory(env.observation_space, **{k: v for k, v in kwargs.items()})
    sb3 = TransformerPPO("TransformerMemoryPolicy", env, seed=0, policy_kwargs=dict(kwargs, ortho_init=True)).policy
    heads_only = TransformerPPO(
        "TransformerMemoryPolicy", env, seed=0, policy_kwargs=dict(kwargs, ortho_init=True, ortho_init_memory=False)
    )
    policy = heads_only.policy
    # the memory is drawn as the policy's own TransformerMemory would be (gate biases too), the heads as SB3 draws them
    for (name, value), (_, expected) in zip(policy.memory.state_dict().items(), own.state_dict().items()):
        torch.testing.assert_close(value, expected, rtol=0, atol=0, msg=name)
    for name in ("action_net", "value_net", "mlp_extractor"):
        for value, expected in zip(getattr(policy, name).parameters(), getattr(sb3, name).parameters()):
            torch.testing.assert_close(value, expected, rtol=0, atol=0)
    memory_only = TransformerPPO(
        "TransformerMemoryPolicy", env, seed=0, policy_kwargs=dict(kwargs, ortho_init=False, ortho_init_memory=True)
    )
    assert _orthogonal_with_gain(memory_only.policy.memory.embed.weight, 2**0.5)
    assert not _orthogonal_with_gain(memory_only.policy.action_net.weight, 0.01)
    heads_only.save(tmp_path / "heads.zip")
    loaded = TransformerPPO.load(tmp_path / "heads.zip", env=env).policy
    assert loaded.ortho_init and not loaded.ortho_init_memory


@pytest.mark.parametrize(
    ("env_id", "extra"),
    [("sb3ma/TMaze-v0", {}), ("Pendulum-v1", {}), ("sb3ma/TMaze-v0", dict(exact_memory=True, gated=True))],
)
def test_a_critic_with_its_own_memory_replays_the_rollout(env_id, extra):
    env = token_env(env_id, **({"corridor_length": 3} if env_id == "sb3ma/TMaze-v0" else {}))
    kwargs = dict(TINY, share_features_extractor=False, **extra)
    model = TransformerPPO("TransformerMemoryPolicy", env, n_steps=40, batch_size=60, n_epochs=2, seed=0, policy_kwargs=kwargs)
    check = ReplayCheck()
    model.learn(3 * 120, callback=check)
    assert len(check.differences) == 3 and max(max(pair) for pair in check.differences) < 1e-5, check.differences
    policy, buffer = model.policy, model.rollout_buffer
    assert [type(memory) for memory in policy.memories()] == [TransformerMemory, TransformerMemory]
    assert policy.pi_features_extractor is not policy.vf_features_extractor
    assert model._memory.kv.shape == (4, 3, 2, 4, 9, 4)  # the actor's 2 layers, then the critic's 2
    assert buffer.hidden.shape == (40, 3, 4, 16) and buffer.prefix.shape == (4, 3, 8, 16)
    n_parameters = sum(parameter.numel() for parameter in policy.parameters())
    shared = TransformerPPO("TransformerMemoryPolicy", env, seed=0, policy_kwargs=dict(TINY, **extra)).policy
    n_memory = sum(parameter.numel() for parameter in shared.memory.parameters())
    assert n_parameters == sum(parameter.numel() for parameter in shared.parameters()) + n_memory


def test_the_critic_s_memory_gives_the_values_and_the_actor_s_the_actions():
    """Stepping the paired memory equals stepping each memory alone; perturbing one memory's weights moves only its
    head's outputs (the actor's log-probs or the critic's values)."""
    env = token_env("sb3ma/TMaze-v0", corridor_length=3)
    policy = TransformerPPO(
        "TransformerMemoryPolicy", env, seed=0, policy_kwargs=dict(TINY, share_features_extractor=False)
    ).policy.eval()
    tokens = torch.randn(12, 3, policy.memory.embed.in_features)
    starts = torch.zeros(12, 3)
    starts[0], starts[5, 1] = 1.0, 1.0  # env 1 starts a new episode at step 5

    def run(policy):
        state, alone = policy.initial_state(3), [memory.initial_state(3) for memory in policy.memories()]
        out = []
        with torch.no_grad():
            for t in range(12):
                (pi, vf), hidden, _ = policy.step_memories(tokens[t], state, starts[t])
                for memory, own, features in zip(policy.memories(), alone, (pi, vf), strict=True):
                    torch.testing.assert_close(memory.step(tokens[t], own, starts[t])[0], features, rtol=0, atol=0)
                assert hidden.shape == (3, 4, 16)
                distribution, values = policy._heads((pi, vf))
                out.append((distribution.distribution.logits, values))
        return torch.stack([logits for logits, _ in out]), torch.stack([values for _, values in out])

    logits, values = run(policy)
    critic_moved, actor_moved = copy.deepcopy(policy), copy.deepcopy(policy)
    with torch.no_grad():  # a random change (a uniform shift of every channel would be undone by the layer norms)
        for moved in (critic_moved.vf_features_extractor, actor_moved.pi_features_extractor):
            moved.embed.weight.add_(torch.randn_like(moved.embed.weight))
    logits_c, values_c = run(critic_moved)
    logits_a, values_a = run(actor_moved)
    torch.testing.assert_close(logits_c, logits, rtol=0, atol=0)
    torch.testing.assert_close(values_a, values, rtol=0, atol=0)
    assert (values_c - values).abs().max() > 1e-3 and (logits_a - logits).abs().max() > 1e-3


def test_a_critic_with_its_own_memory_saves_loads_and_keeps_its_initialisation(tmp_path):
    env = token_env("sb3ma/TMaze-v0", n_envs=2, corridor_length=3)
    kwargs = dict(TINY, share_features_extractor=False, ortho_init=True, ortho_init_memory=False)
    model = TransformerPPO("TransformerMemoryPolicy", env, n_steps=16, batch_size=32, seed=0, policy_kwargs=kwargs)
    for memory in model.policy.memories():  # both memories keep their own initialisation, the heads get SB3's
        assert not _orthogonal_with_gain(memory.embed.weight, 2**0.5)
    assert _orthogonal_with_gain(model.policy.action_net.weight, 0.01)
    sb3 = TransformerPPO("TransformerMemoryPolicy", env, seed=0, policy_kwargs=dict(kwargs, ortho_init_memory=True))
    assert all(_orthogonal_with_gain(memory.embed.weight, 2**0.5) for memory in sb3.policy.memories())
    model.learn(32)
    model.save(tmp_path / "critic.zip")
    loaded = TransformerPPO.load(tmp_path / "critic.zip", env=env)
    assert not loaded.policy.share_features_extractor and len(loaded.policy.memories()) == 2
    for (name, value), (_, expected) in zip(loaded.policy.state_dict().items(), model.policy.state_dict().items()):
        torch.testing.assert_close(value, expected, rtol=0, atol=0, msg=name)
    obs, starts = env.reset(), np.ones(2)
    state_a = state_b = None
    for _ in range(6):
        action_a, state_a = model.predict(obs, state_a, starts, deterministic=True)
        action_b, state_b = loaded.predict(obs, state_b, starts, deterministic=True)
        np.testing.assert_array_equal(action_a, action_b)
        obs, _, starts, _ = env.step(action_a)
    torch.testing.assert_close(state_a.kv, state_b.kv, rtol=0, atol=0)
    with pytest.raises(ValueError, match="shape \\(2, 2, 2, 4, 9, 4\\): expected \\(4, 2, 2"):  # one memory's state
        model.predict(obs, model.policy.memory.initial_state(2), starts)
    with pytest.raises(ValueError, match="share_features_extractor='no'"):
        TransformerPPO("TransformerMemoryPolicy", env, policy_kwargs=dict(TINY, share_features_extractor="no"))
