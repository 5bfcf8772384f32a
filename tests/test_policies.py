import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from sb3_masked_attention import (
    HeadMaskedTransformerExtractor,
    HeadMaskedTransformerPolicy,
    HistoryWrapper,
    MaskableHeadMaskedTransformerPolicy,
)

SMALL = dict(features_extractor_kwargs=dict(d_model=16, n_heads=8, n_layers=1))


class MaskedChoiceEnv(gym.Env):
    """Three actions, the last one always invalid; 8-step episodes."""

    observation_space = spaces.Box(-1, 1, (2,), np.float32)
    action_space = spaces.Discrete(3)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        assert action != 2, "an invalid action was sampled"
        self.t += 1
        return self.observation_space.sample(), float(action), self.t >= 8, False, {}

    def action_masks(self):
        return np.array([True, True, False])


def history_env(history_len=6):
    return HistoryWrapper(gym.make("CartPole-v1"), history_len=history_len)


@pytest.mark.parametrize("algo, kwargs", [(PPO, dict(batch_size=16)), (A2C, {})])
def test_alias_trains_with_ppo_and_a2c(algo, kwargs):
    model = algo("HeadMaskedTransformerPolicy", history_env(), n_steps=16, policy_kwargs=SMALL, seed=0, **kwargs)
    assert isinstance(model.policy, HeadMaskedTransformerPolicy)
    assert isinstance(model.policy.features_extractor, HeadMaskedTransformerExtractor)
    model.learn(32)


def test_alias_trains_with_maskable_ppo():
    env = HistoryWrapper(MaskedChoiceEnv(), history_len=4)
    model = MaskablePPO("HeadMaskedTransformerPolicy", env, n_steps=32, batch_size=16, n_epochs=1, policy_kwargs=SMALL, seed=0)
    assert isinstance(model.policy, MaskableHeadMaskedTransformerPolicy)
    model.learn(64)  # MaskedChoiceEnv asserts that no masked action is ever taken


def test_top_level_strategy_keyword_reaches_the_extractor():
    model = PPO("HeadMaskedTransformerPolicy", history_env(), policy_kwargs=dict(head_mask_strategy="monotonic"))
    assert model.policy.features_extractor.head_fractions[-1] == pytest.approx(0.35)


def test_log_probs_and_values_identical_in_train_and_eval_mode():
    model = PPO("HeadMaskedTransformerPolicy", history_env(8), seed=0)
    venv = model.get_env()
    obs = venv.reset()
    for _ in range(5):
        obs, *_ = venv.step(np.array([venv.action_space.sample()]))
    obs_tensor, _ = model.policy.obs_to_tensor(obs)
    actions = torch.tensor([0])
    outputs = {}
    for mode in ("eval", "train"):
        model.policy.train(mode == "train")
        with torch.no_grad():
            outputs[mode] = model.policy.evaluate_actions(obs_tensor, actions)
    for eval_out, train_out in zip(outputs["eval"], outputs["train"]):
        assert torch.equal(eval_out, train_out)


def test_training_with_vec_normalize():
    venv = VecNormalize(
        make_vec_env("CartPole-v1", n_envs=2, seed=0, wrapper_class=HistoryWrapper, wrapper_kwargs=dict(history_len=6))
    )
    model = PPO("HeadMaskedTransformerPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, policy_kwargs=SMALL, seed=0)
    model.learn(128)
    assert venv.obs_rms["valid"].count > 1
    assert all(torch.isfinite(p).all() for p in model.policy.parameters())


def test_save_load_in_fresh_process_gives_same_actions(tmp_path):
    model = PPO(
        "HeadMaskedTransformerPolicy",
        history_env(),
        n_steps=32,
        batch_size=16,
        policy_kwargs=dict(head_mask_strategy="diversified"),
        seed=1,
    )
    model.learn(64)
    path = tmp_path / "model.zip"
    model.save(path)
    env = history_env()
    observations = []
    obs, _ = env.reset(seed=3)
    for _ in range(20):
        observations.append(obs)
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
    batch = {key: np.stack([o[key] for o in observations]) for key in observations[0]}
    np.savez(tmp_path / "obs.npz", **batch)
    expected, _ = model.predict(batch, deterministic=True)
    script = textwrap.dedent(
        f"""
        import numpy as np
        from stable_baselines3 import PPO
        batch = dict(np.load({str(tmp_path / "obs.npz")!r}))
        model = PPO.load({str(path)!r})
        assert type(model.policy).__name__ == "HeadMaskedTransformerPolicy"
        assert model.policy.features_extractor.head_fractions[-1] == 0.95
        print(",".join(map(str, model.predict(batch, deterministic=True)[0])))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip().split("\n")[-1] == ",".join(map(str, expected))


def test_transformer_policies_use_sb3s_adam_settings_with_the_fused_step_unless_told_otherwise():
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from sb3_masked_attention import HistoryWrapper
    from sb3_masked_attention.transformer_ppo import TransformerPPO

    env = make_vec_env(lambda: HistoryWrapper(gym.make("CartPole-v1"), history_len=1), n_envs=1)
    window = PPO("HeadMaskedTransformerPolicy", env, n_steps=32, batch_size=32)
    memory = TransformerPPO("TransformerMemoryPolicy", env, n_steps=32, batch_size=32, policy_kwargs=dict(memory_len=4))
    for model in (window, memory):
        defaults = model.policy.optimizer.defaults
        assert isinstance(model.policy.optimizer, torch.optim.Adam) and defaults["fused"] is True
        assert defaults["eps"] == 1e-5  # SB3's own default for Adam is kept
    told = PPO(
        "HeadMaskedTransformerPolicy", env, n_steps=32, batch_size=32, policy_kwargs=dict(optimizer_kwargs=dict(eps=1e-7))
    )
    assert told.policy.optimizer.defaults["eps"] == 1e-7 and not told.policy.optimizer.defaults["fused"]


def test_fast_adam_falls_back_to_foreach_where_torch_has_no_cpu_fused_kernel(monkeypatch):
    import torch

    from sb3_masked_attention import policies

    assert policies.with_fast_adam({})["optimizer_kwargs"] == dict(fused=True, eps=1e-5)  # torch 2.13 has it
    monkeypatch.setattr(policies, "_cpu_fused_adam", lambda: False)
    assert policies.with_fast_adam({})["optimizer_kwargs"] == dict(foreach=True, eps=1e-5)
    assert policies.with_fast_adam(dict(optimizer_class=torch.optim.AdamW))["optimizer_kwargs"] == dict(foreach=True)
    told = dict(optimizer_kwargs=dict(eps=1e-7))
    assert policies.with_fast_adam(told)["optimizer_kwargs"] == dict(eps=1e-7)  # what the caller set is kept


def _lstm_forget_gates(lstm):
    size = lstm.hidden_size
    return [
        getattr(lstm, f"bias_ih_l{k}")[size : 2 * size] + getattr(lstm, f"bias_hh_l{k}")[size : 2 * size]
        for k in range(lstm.num_layers)
    ]


def test_forget_gate_lstm_policy_opens_the_forget_gates_and_nothing_else(tmp_path):
    import gymnasium as gym
    import torch
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.env_util import make_vec_env

    from sb3_masked_attention import ForgetGateLstmPolicy, HistoryWrapper

    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    kwargs = dict(lstm_hidden_size=8, n_lstm_layers=2)
    plain = RecurrentPPO("MlpLstmPolicy", env, n_steps=16, batch_size=32, seed=3, policy_kwargs=kwargs)
    opened = RecurrentPPO("ForgetGateMlpLstmPolicy", env, n_steps=16, batch_size=32, seed=3, policy_kwargs=kwargs)
    assert isinstance(opened.policy, ForgetGateLstmPolicy) and opened.policy.lstm_forget_bias == 2.0
    for name in ("lstm_actor", "lstm_critic"):
        lstm, reference = getattr(opened.policy, name), getattr(plain.policy, name)
        for gates in _lstm_forget_gates(lstm):
            torch.testing.assert_close(gates, torch.full((8,), 2.0))
        for (key, value), (_, expected) in zip(lstm.named_parameters(), reference.named_parameters()):
            kept = torch.ones_like(value, dtype=torch.bool)
            if key.startswith("bias"):
                kept[8:16] = False
            assert torch.equal(value[kept], expected[kept]), key  # same seed: every other weight as MlpLstmPolicy's
    opened.learn(32)
    opened.save(tmp_path / "lstm.zip")
    loaded = RecurrentPPO.load(tmp_path / "lstm.zip")
    assert isinstance(loaded.policy, ForgetGateLstmPolicy) and loaded.policy.lstm_forget_bias == 2.0
    for value, expected in zip(loaded.policy.parameters(), opened.policy.parameters()):
        assert torch.equal(value, expected)  # the saved (trained) weights, not a fresh initialisation

    dict_env = make_vec_env(lambda: HistoryWrapper(gym.make("CartPole-v1"), history_len=1), n_envs=1)
    multi = RecurrentPPO(
        "ForgetGateMultiInputLstmPolicy", dict_env, n_steps=16, batch_size=16, policy_kwargs=dict(lstm_forget_bias=3.0)
    )
    assert all(torch.allclose(gates, torch.full_like(gates, 3.0)) for gates in _lstm_forget_gates(multi.policy.lstm_actor))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), "2", True, None])
def test_forget_gate_lstm_policy_refuses_a_bias_that_is_not_a_finite_number(value):
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env("CartPole-v1", n_envs=1)
    with pytest.raises(ValueError, match="lstm_forget_bias"):
        RecurrentPPO("ForgetGateMlpLstmPolicy", env, n_steps=16, policy_kwargs=dict(lstm_forget_bias=value))


def test_a_zip_saved_by_0_1_0_with_the_default_strategy_loads_with_0_1_0s_default(tmp_path):
    import io
    import zipfile

    from sb3_masked_attention.strategies import resolve_head_mask_strategy
    from sb3_masked_attention.weights import load_weights

    model = PPO("HeadMaskedTransformerPolicy", history_env(), n_steps=32, batch_size=32, policy_kwargs=SMALL)
    model.save(tmp_path / "new.zip")
    assert PPO.load(tmp_path / "new.zip").policy.features_extractor.head_fractions == (0.0,) * 8  # today's default kept
    with zipfile.ZipFile(tmp_path / "new.zip") as source, zipfile.ZipFile(tmp_path / "old.zip", "w") as target:
        for item in source.infolist():
            data = source.read(item)
            if item.filename == "policy.pth":  # as 0.1.0 wrote it: no head fractions
                state = torch.load(io.BytesIO(data), weights_only=True)
                buffer = io.BytesIO()
                torch.save({k: v for k, v in state.items() if not k.endswith("head_fractions_saved")}, buffer)
                data = buffer.getvalue()
            target.writestr(item, data)
    specialized = resolve_head_mask_strategy("specialized", 8)
    assert PPO.load(tmp_path / "old.zip").policy.features_extractor.head_fractions == specialized
    rebuilt = PPO("HeadMaskedTransformerPolicy", history_env(), n_steps=32, batch_size=32, policy_kwargs=SMALL)
    load_weights(rebuilt, tmp_path / "old.zip")  # the weights-only path too
    assert rebuilt.policy.features_extractor.head_fractions == specialized


def test_lstm_shaped_gru_is_a_gru_behind_an_lstms_interface():
    import torch

    from sb3_masked_attention.policies import LstmShapedGRU

    torch.manual_seed(0)
    gru = LstmShapedGRU(5, 7, num_layers=2)
    sequence, h = torch.randn(6, 3, 5), torch.randn(2, 3, 7)
    output, (hidden, cell) = gru(sequence, (h, torch.randn(2, 3, 7)))
    expected, expected_hidden = gru.gru(sequence, h)
    torch.testing.assert_close(output, expected)
    torch.testing.assert_close(hidden, expected_hidden)
    assert torch.equal(cell, torch.zeros(2, 3, 7))  # the unused second state stays zero whatever came in
    assert (gru.input_size, gru.hidden_size, gru.num_layers) == (5, 7, 2)
    stepped, state = [], (h, torch.zeros_like(h))
    for step in sequence:  # RecurrentPPO's per-step path (episode starts inside a sequence) = the whole sequence at once
        out, state = gru(step.unsqueeze(0), state)
        stepped.append(out)
    torch.testing.assert_close(torch.cat(stepped), output)


def test_gru_policy_trains_with_recurrent_ppo_and_round_trips(tmp_path):
    import gymnasium as gym
    import torch
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.env_util import make_vec_env

    from sb3_masked_attention import HistoryWrapper
    from sb3_masked_attention.policies import GruPolicy, LstmShapedGRU, MultiInputGruPolicy

    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = RecurrentPPO("MlpGruPolicy", env, n_steps=16, batch_size=32, seed=3, policy_kwargs=dict(lstm_hidden_size=8))
    policy = model.policy
    assert isinstance(policy, GruPolicy)
    assert isinstance(policy.lstm_actor, LstmShapedGRU) and isinstance(policy.lstm_critic, LstmShapedGRU)
    assert not any(isinstance(module, torch.nn.LSTM) for module in policy.modules())
    optimized = {id(p) for group in policy.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in policy.parameters()}  # the optimizer holds the GRUs' weights, no stale LSTM's
    before = [p.detach().clone() for p in policy.lstm_actor.parameters()]
    model.learn(64)
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.lstm_actor.parameters()))  # the GRU learns

    model.save(tmp_path / "gru.zip")
    loaded = RecurrentPPO.load(tmp_path / "gru.zip")
    assert isinstance(loaded.policy, GruPolicy)
    for value, expected in zip(loaded.policy.state_dict().values(), policy.state_dict().values()):
        assert torch.equal(value, expected)
    obs, states, starts = env.reset(), None, torch.ones(2).numpy()
    for _ in range(5):  # the loaded model acts and carries its state as the trained one does
        action, next_states = model.predict(obs, state=states, episode_start=starts, deterministic=True)
        loaded_action, loaded_states = loaded.predict(obs, state=states, episode_start=starts, deterministic=True)
        assert (action == loaded_action).all() and all((x == y).all() for x, y in zip(next_states, loaded_states))
        states = next_states
        obs, _, starts, _ = env.step(action)

    dict_env = make_vec_env(lambda: HistoryWrapper(gym.make("CartPole-v1"), history_len=1), n_envs=1)
    multi = RecurrentPPO("MultiInputGruPolicy", dict_env, n_steps=16, batch_size=16)
    assert isinstance(multi.policy, MultiInputGruPolicy) and isinstance(multi.policy.lstm_actor, LstmShapedGRU)
    multi.learn(16)


def test_gru_policy_log_probs_and_values_equal_in_train_and_eval_mode():
    import torch
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = RecurrentPPO("MlpGruPolicy", env, n_steps=16, batch_size=32, seed=1, policy_kwargs=dict(lstm_hidden_size=8))
    model.learn(32)
    data = next(model.rollout_buffer.get(batch_size=None))
    results = []
    for train in (True, False):
        model.policy.set_training_mode(train)
        with torch.no_grad():
            values, log_prob, _ = model.policy.evaluate_actions(
                data.observations, data.actions, data.lstm_states, data.episode_starts
            )
        results.append((values, log_prob))
    torch.testing.assert_close(results[0], results[1])
