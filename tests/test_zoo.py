"""rl-zoo integration: train and enjoy from zoo_configs/ppo.yml, strategy switched from the command line."""

import subprocess
import sys
from pathlib import Path

import yaml
from stable_baselines3 import PPO

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "zoo_configs" / "ppo.yml"


def zoo(*args, cwd):
    result = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return result.stdout


def test_zoo_config_covers_project_envs_and_no_vel_tasks():
    from gymnasium.envs.registration import registry

    import envs  # noqa: F401

    config = yaml.safe_load(CONF.read_text())
    project_ids = {env_id for env_id in registry if env_id.startswith("sb3ma/")}
    assert project_ids <= set(config)
    assert {"CartPoleNoVel-v1", "PendulumNoVel-v1"} <= set(config)
    for env_id, entry in config.items():
        if env_id.startswith("sb3ma/TerritoryControl"):  # maps, not a history: the multi-scale policy
            assert entry["policy"] == "MultiScaleAttentionPolicy"
            continue
        assert entry["policy"] == "HeadMaskedTransformerPolicy", env_id
        assert "HistoryWrapper" in str(entry["env_wrapper"]), env_id


def test_train_then_enjoy_tmaze(tmp_path):
    zoo(
        "rl_zoo3.train",
        "--algo",
        "ppo",
        "--env",
        "sb3ma/TMaze-v0",
        "--gym-packages",
        "envs",
        "--conf-file",
        str(CONF),
        "-n",
        "1024",
        "-f",
        str(tmp_path),
        "--eval-freq",
        "-1",
        "--seed",
        "0",
        cwd=tmp_path,
    )
    model = PPO.load(tmp_path / "ppo" / "sb3ma-TMaze-v0_1" / "sb3ma-TMaze-v0.zip")
    assert model.policy.features_extractor.head_fractions[1] == 0.08  # specialized, from the YAML
    out = zoo(
        "rl_zoo3.enjoy",
        "--algo",
        "ppo",
        "--env",
        "sb3ma/TMaze-v0",
        "--gym-packages",
        "envs",
        "-f",
        str(tmp_path),
        "-n",
        "50",
        "--no-render",
        cwd=tmp_path,
    )
    assert "Mean reward" in out


def test_strategy_switch_and_normalize_from_command_line(tmp_path):
    zoo(
        "rl_zoo3.train",
        "--algo",
        "ppo",
        "--env",
        "CartPoleNoVel-v1",
        "--gym-packages",
        "envs",
        "--conf-file",
        str(CONF),
        "-n",
        "512",
        "-f",
        str(tmp_path),
        "--eval-freq",
        "-1",
        "--seed",
        "0",
        "-params",
        "n_epochs:1",
        "policy_kwargs:dict(head_mask_strategy='diversified')",
        cwd=tmp_path,
    )
    run = tmp_path / "ppo" / "CartPoleNoVel-v1_1"
    model = PPO.load(run / "CartPoleNoVel-v1.zip")
    assert model.policy.features_extractor.head_fractions[-1] == 0.95
    assert (run / "CartPoleNoVel-v1" / "vecnormalize.pkl").exists()


def test_territory_control_trains_through_rl_zoo_with_the_extractor_switch(tmp_path):
    from sb3_masked_attention import MultiScaleExtractor

    zoo(
        "rl_zoo3.train",
        "--algo",
        "ppo",
        "--env",
        "sb3ma/TerritoryControl-v0",
        "--gym-packages",
        "envs",
        "--conf-file",
        str(CONF),
        "-n",
        "64",
        "-f",
        str(tmp_path),
        "--eval-freq",
        "-1",
        "--seed",
        "0",
        "--env-kwargs",
        "map_size:64",
        "num_bots:1",
        "max_steps:20",
        "-params",
        "n_envs:2",
        "n_steps:16",
        "batch_size:16",
        "n_epochs:1",
        "policy_kwargs:dict(multiscale_extractor='plain')",
        cwd=tmp_path,
    )
    model = PPO.load(tmp_path / "ppo" / "sb3ma-TerritoryControl-v0_1" / "sb3ma-TerritoryControl-v0.zip")
    assert type(model.policy.features_extractor) is MultiScaleExtractor


def test_optimize_samplers_build_models_and_convert_back():
    """`-optimize` for ppo_tx / ppo_window: rl-zoo finds the samplers, each sample builds a working model, and a finished
    trial's raw params convert back to the very same hyperparameters."""
    import optuna
    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.env_util import make_vec_env

    from sb3_masked_attention import HistoryWrapper
    from sb3_masked_attention.environments import register_envs
    from sb3_masked_attention.extractors import HeadMaskedTransformerExtractor
    from sb3_masked_attention.transformer_ppo import TransformerPPO
    from sb3_masked_attention.zoo import register_algorithms

    register_envs()
    register_algorithms()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for algo, history_len in (("ppo_tx", 1), ("ppo_window", 4), ("ppo_lstm_fair", 1)):
        env = make_vec_env("sb3ma/TMaze-v0", 2, env_kwargs={"corridor_length": 3}, wrapper_class=HistoryWrapper,
                           wrapper_kwargs={"history_len": history_len})  # fmt: skip
        for _ in range(3):
            trial = study.ask()
            params = HYPERPARAMS_SAMPLER[algo](trial, 2, 2, {})
            assert HYPERPARAMS_CONVERTER[algo](trial.params) == params
            assert 1e-5 <= params["learning_rate"] <= 1e-3
            params.update(n_steps=8, batch_size=16)  # tiny run: the sampled sizes are checked above
            if algo == "ppo_tx":
                model = TransformerPPO("TransformerMemoryPolicy", env, **params)
                assert model.policy.memory.memory_len == params["policy_kwargs"]["memory_len"]
                assert model.policy.ortho_init is params["policy_kwargs"]["ortho_init"]
                gates = [block.gates is not None for block in model.policy.memory.blocks]
                assert gates == [params["policy_kwargs"]["gated"]] * len(gates)
            elif algo == "ppo_lstm_fair":  # the same PPO space as ppo_tx's, and the LSTM's width
                assert set(params) == set(HYPERPARAMS_SAMPLER["ppo_tx"](study.ask(), 2, 2, {}))
                model = RecurrentPPO("ForgetGateMultiInputLstmPolicy", env, **params)
                assert model.policy.lstm_actor.hidden_size == params["policy_kwargs"]["lstm_hidden_size"]
            else:
                model = PPO("HeadMaskedTransformerPolicy", env, **params)
                extractor = model.policy.features_extractor
                assert isinstance(extractor, HeadMaskedTransformerExtractor)
                assert len(extractor.blocks) == params["policy_kwargs"]["features_extractor_kwargs"]["n_layers"]
            model.learn(16)
            study.tell(trial, 0.0)


def test_ppo_tx_converter_leaves_out_switches_an_older_search_never_drew():
    """A trial from a search made before `ppo_tx` drew `gated` and `ortho_init` converts without them (the policy's
    defaults apply), the rest of its settings unchanged; a trial that drew them keeps what it drew."""
    from sb3_masked_attention.samplers import convert_ppo_tx_params

    older = {
        "memory_len": 64, "d_model": 64, "n_layers": 2, "head_mask_strategy": "monotonic", "n_steps_pow": 5,
        "batch_size_pow": 6, "one_minus_gamma": 0.001, "one_minus_gae_lambda": 0.08, "learning_rate": 3.6e-4,
        "ent_coef": 0.0067, "clip_range": 0.1, "n_epochs": 4, "max_grad_norm": 0.54,
    }  # fmt: skip
    params = convert_ppo_tx_params(older)
    assert params["policy_kwargs"] == {"memory_len": 64, "d_model": 64, "n_layers": 2, "head_mask_strategy": "monotonic"}
    assert (params["n_steps"], params["batch_size"], params["gamma"]) == (32, 64, 0.999)
    newer = convert_ppo_tx_params({**older, "gated": True, "ortho_init": False})
    assert (newer["policy_kwargs"]["gated"], newer["policy_kwargs"]["ortho_init"]) == (True, False)
    assert {key: value for key, value in newer.items() if key != "policy_kwargs"} == {
        key: value for key, value in params.items() if key != "policy_kwargs"
    }
