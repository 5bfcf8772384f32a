from pathlib import Path

import pytest
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3 import PPO
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.common.vec_env import VecFrameStack, VecNormalize

from sb3_masked_attention import HeadMaskedTransformerPolicy
from sb3_masked_attention.transformer_ppo import TransformerMemoryPolicy
from sb3_masked_attention.zoo import PROJECT_PPO_CONFIG, make_zoo_model, rl_zoo_config


def test_project_entry_builds_the_head_masked_policy(tmp_path, capsys):
    run = make_zoo_model(
        "ppo",
        "CartPoleNoVel-v1",
        tmp_path,
        conf_file=PROJECT_PPO_CONFIG,
        seed=3,
        hyperparams=dict(policy_kwargs="dict(head_mask_strategy='monotonic')", n_epochs=2),
    )
    assert capsys.readouterr().out == ""  # rl-zoo's config dump is silenced at verbose=0
    model = run.model
    assert isinstance(model, PPO) and isinstance(model.policy, HeadMaskedTransformerPolicy)
    assert model.n_epochs == 2 and model.policy.features_extractor.head_fractions[-1] == pytest.approx(0.35)
    venv = model.get_env()
    assert isinstance(venv, VecNormalize) and venv.norm_obs_keys == ["obs", "prev_reward"]
    assert run.n_timesteps == 100_000
    eval_env = run.make_eval_env(2)
    assert eval_env.num_envs == 2 and not eval_env.training and not eval_env.norm_reward


def test_rl_zoo_own_entries_and_overrides(tmp_path):
    assert isinstance(make_zoo_model("ppo_lstm", "CartPoleNoVel-v1", tmp_path / "a").model, RecurrentPPO)
    run = make_zoo_model(
        "ppo",
        "CartPoleNoVel-v1",
        tmp_path / "b",
        conf_file=rl_zoo_config("ppo_lstm"),
        hyperparams=dict(policy="MlpPolicy", frame_stack=4, policy_kwargs="dict(net_arch=[8])"),
    )
    assert isinstance(run.model.get_env(), VecFrameStack)
    # the record of what ran: rl-zoo's entry with the overrides, sorted, plain data
    assert run.settings["frame_stack"] == 4 and run.settings["policy"] == "MlpPolicy"
    assert run.settings["policy_kwargs"] == "dict(net_arch=[8])" and run.settings["n_steps"] == 32
    assert list(run.settings) == sorted(run.settings)
    with pytest.raises(ValueError, match="algo='nope'"):
        rl_zoo_config("nope")


def test_pendulum_no_vel_entry_trains_with_gsde(tmp_path):
    run = make_zoo_model(
        "ppo",
        "PendulumNoVel-v1",
        tmp_path,
        conf_file=PROJECT_PPO_CONFIG,
        hyperparams=dict(n_steps=16, batch_size=32, n_epochs=1),
    )
    assert run.model.use_sde and isinstance(run.model.policy, HeadMaskedTransformerPolicy)
    run.model.learn(64)


@pytest.mark.parametrize("env_id", ["sb3ma/TMaze-v0", "sb3ma/RepeatPrevious-v0", "sb3ma/Darkroom-v0", "CartPoleNoVel-v1"])
def test_baseline_configs_build_and_train(tmp_path, env_id):
    configs = Path(__file__).resolve().parents[1] / "zoo_configs"
    small = dict(n_envs=2, n_steps=16, batch_size=32, n_epochs=1)
    lstm = make_zoo_model("ppo_lstm", env_id, tmp_path / "lstm", conf_file=configs / "ppo_lstm.yml", hyperparams=small)
    assert isinstance(lstm.model, RecurrentPPO)
    lstm.model.learn(32)
    stack = make_zoo_model("ppo", env_id, tmp_path / "stack", conf_file=configs / "ppo_framestack.yml", hyperparams=small)
    assert isinstance(stack.model.get_env(), VecFrameStack) or isinstance(stack.model.get_env().venv, VecFrameStack)
    stack.model.learn(32)


@pytest.mark.parametrize("env_id", ["sb3ma/popgym-CountRecallEasy-v0", "sb3ma/popgym-AutoencodeEasy-v0"])
@pytest.mark.parametrize(
    ("algo", "conf", "policy"),
    [
        ("ppo", "ppo.yml", HeadMaskedTransformerPolicy),
        ("ppo", "ppo_framestack.yml", MultiInputActorCriticPolicy),  # the transformer's window, flattened
        ("ppo_lstm", "ppo_lstm.yml", RecurrentActorCriticPolicy),
        ("ppo_tx", "ppo_tx.yml", TransformerMemoryPolicy),
    ],
)
def test_popgym_entries_build_and_train(tmp_path, env_id, algo, conf, policy):
    configs = Path(__file__).resolve().parents[1] / "zoo_configs"
    small = dict(n_envs=2, n_steps=16, batch_size=32, n_epochs=1)
    run = make_zoo_model(algo, env_id, tmp_path, conf_file=configs / conf, hyperparams=small)
    assert isinstance(run.model.policy, policy)
    run.model.learn(32)


def test_hyperparameter_names_include_what_a_subclass_passes_on_to_ppo():
    from sb3_masked_attention.zoo import algorithm_arguments, check_hyperparams

    names = algorithm_arguments("ppo_tx")  # TransformerPPO(..., use_action_masks, **kwargs) -> PPO's arguments
    assert {"use_action_masks", "n_epochs", "batch_size", "clip_range", "learning_rate", "policy_kwargs"} <= names
    assert "kwargs" not in names and "self" not in names
    with pytest.raises(ValueError, match=r"\['n_epoch'\] are not arguments of ppo_tx"):
        check_hyperparams("ppo_tx", dict(n_epoch=3))


def test_plain_settings_keeps_data_and_names_the_rest():
    import torch

    from sb3_masked_attention.zoo import plain_settings

    value = {"b": [1, 2.5, None, True], "a": {"z": "x", "y": (3,)}, "fn": torch.nn.ReLU}
    assert plain_settings(value) == {"a": {"y": [3], "z": "x"}, "b": [1, 2.5, None, True], "fn": repr(torch.nn.ReLU)}
    assert list(plain_settings(value)) == ["a", "b", "fn"]
