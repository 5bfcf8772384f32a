"""The shared run-folder helper, file kinds, the literal policy_kwargs reader, the one evaluation loop and
the CLI's defaults-from-config option."""

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_masked_attention.cli_args import default_of, option
from sb3_masked_attention.episodes import play_episodes
from sb3_masked_attention.runs import RunDir, load_file, refuse_changes, save_file, warmup_cosine
from sb3_masked_attention.zoo import literal_dict, zoo_entry

ROOT = Path(__file__).resolve().parents[1]


def test_settings_are_recorded_and_a_change_is_refused_by_name(tmp_path):
    RunDir(tmp_path, {"lr": 0.1, "updates": 10}, grow=("updates",))
    assert not (tmp_path / "train_config.json").exists()  # recorded once the trainer has built from them
    RunDir(tmp_path, {"lr": 0.1, "updates": 10}, grow=("updates",)).record()
    assert json.loads((tmp_path / "train_config.json").read_text()) == {"lr": 0.1, "updates": 10}
    RunDir(tmp_path, {"lr": 0.1, "updates": 20}, grow=("updates",)).record()  # more updates: trains on
    with pytest.raises(ValueError, match="was started with lr=0.1, not 0.2"):
        RunDir(tmp_path, {"lr": 0.2, "updates": 20}, grow=("updates",))
    with pytest.raises(ValueError, match="updates=20, not 5"):
        RunDir(tmp_path, {"lr": 0.1, "updates": 5}, grow=("updates",))


def test_a_setting_added_since_is_taken_at_its_default_and_legacy_files_are_read(tmp_path):
    (tmp_path / "run_config.json").write_text(json.dumps({"a": 1}))  # an older multi-scale run folder
    with pytest.raises(ValueError, match="b=None, not 3"):
        RunDir(tmp_path, {"a": 1, "b": 3})
    RunDir(tmp_path, {"a": 1, "b": 3}, defaults={"b": 3})
    refuse_changes({"t": [1, 2]}, {"t": (1, 2)}, "x")  # tuples are recorded as lists


def test_files_carry_their_kind_and_another_kind_is_refused_by_name(tmp_path):
    save_file("pretrained_trunk", {"config": {}, "state_dict": {"w": torch.ones(2)}}, tmp_path / "trunk.pt")
    assert torch.equal(load_file(tmp_path / "trunk.pt", "pretrained_trunk")["state_dict"]["w"], torch.ones(2))
    with pytest.raises(ValueError, match=r"is a pretrained trunk \(written by `sb3ma pretrain`\), not an AD model"):
        load_file(tmp_path / "trunk.pt", "ad_model")
    with pytest.raises(ValueError, match="does not exist: make one with `sb3ma ad train`"):
        load_file(tmp_path / "nothing.pt", "ad_model")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ValueError, match="is not a readable AD model"):
        load_file(tmp_path / "empty.pt", "ad_model")


def test_format_1_files_written_before_kinds_still_load(tmp_path):
    torch.save({"format": 1, "arch": "gru", "config": {}, "enum_values": {}, "state_dict": {}}, tmp_path / "old.pt")
    assert load_file(tmp_path / "old.pt", "sequence_model")["arch"] == "gru"
    with pytest.raises(ValueError, match="is a event-sequence model|is an? event-sequence model"):
        load_file(tmp_path / "old.pt", "pretrained_trunk")
    # the committed AD model is a format-1 file
    assert load_file(ROOT / "results" / "ad" / "model", "ad_model")["meta"]["env_id"] == "sb3ma/Darkroom-v0"


def test_a_file_that_would_run_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    torch.save({"kind": "ad_model", "format": 2, "x": Boom()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="nothing in it ran"):
        load_file(tmp_path / "evil.pt", "ad_model")
    assert not marker.exists()


def test_checkpoints_resume_the_optimizer_schedule_rng_and_progress(tmp_path):
    def make():
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
        return model, optimizer, warmup_cosine(optimizer, warmup=2, total=10)

    def step(model, optimizer, schedule):
        loss = model(torch.randn(4, 3)).pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()

    straight = make()
    for _ in range(6):
        step(*straight)
    run = RunDir(tmp_path, {"x": 1})
    first = make()
    assert run.load_state(*first) is None
    for _ in range(3):
        step(*first)
    rng = np.random.default_rng(5)
    run.save_state(*first, update=3, rng=rng.bit_generator.state)
    resumed = make()
    progress = run.load_state(*resumed)
    assert progress["update"] == 3 and progress["rng"] == rng.bit_generator.state
    for _ in range(3):
        step(*resumed)
    for a, b in zip(straight[0].parameters(), resumed[0].parameters()):
        torch.testing.assert_close(a, b)
    assert resumed[2].get_last_lr() == straight[2].get_last_lr()


def test_warmup_cosine_numbers():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    schedule = warmup_cosine(optimizer, warmup=2, total=4)
    rates = []
    for _ in range(5):
        rates.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    assert rates == pytest.approx([0.5, 1.0 * 0.5 * (1 + np.cos(np.pi / 4)), 0.5, 0.5 * (1 + np.cos(3 * np.pi / 4)), 0.0])


@pytest.mark.parametrize(
    "text, expected",
    [
        ("dict(head_mask_strategy='none')", {"head_mask_strategy": "none"}),
        ("dict(net_arch=[64, 64], ortho_init=False, x=dict(a=1))", {"net_arch": [64, 64], "ortho_init": False, "x": {"a": 1}}),
        ("dict()", {}),
    ],
)
def test_literal_dict_reads_rl_zoo_strings(text, expected):
    assert literal_dict(text) == expected


@pytest.mark.parametrize(
    "text", ["__import__('os').system('true')", "dict(a=open('x'))", "dict(a=nn.ReLU)", "[1, 2]", "dict(1)"]
)
def test_literal_dict_refuses_code(text):
    with pytest.raises(ValueError, match="is not read: expected dict"):
        literal_dict(text)


def test_zoo_entry_falls_back_to_the_default_entry():
    config = ROOT / "zoo_configs" / "ppo.yml"
    assert zoo_entry(config, "sb3ma/TMaze-v0")["policy"] == "HeadMaskedTransformerPolicy"
    default = zoo_entry(config, "CartPole-v1")
    assert default["env_wrapper"][0]["sb3_masked_attention.wrappers.HistoryWrapper"]["history_len"] == 16
    with pytest.raises(ValueError, match="has no entry for 'CartPole-v1'"):
        zoo_entry(ROOT / "zoo_configs" / "ppo_lstm.yml", "CartPole-v1")


@pytest.mark.parametrize("n_envs", [1, 3])
def test_play_episodes_matches_sb3_evaluate_policy(n_envs):
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=32, batch_size=32, seed=0)
    ours = play_episodes(model, make_vec_env("CartPole-v1", n_envs=n_envs, seed=3), 7, deterministic=True)
    theirs, _ = evaluate_policy(model, make_vec_env("CartPole-v1", n_envs=n_envs, seed=3), 7, return_episode_rewards=True)
    assert sorted(ours.returns) == sorted(theirs) and len(ours.returns) == 7


def test_play_episodes_collects_final_info_values():
    env = make_vec_env(lambda: gym.wrappers.TimeLimit(gym.make("CartPole-v1").unwrapped, 5), n_envs=1, seed=0)
    episodes = play_episodes(PPO("MlpPolicy", env, n_steps=32, batch_size=32), env, 2, info_keys=("TimeLimit.truncated",))
    assert episodes.finals["TimeLimit.truncated"] in ([1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0])
    assert episodes.mean == pytest.approx(np.mean(episodes.returns))


def test_play_episodes_hands_each_action_over_before_the_env_takes_it():
    env = make_vec_env(lambda: gym.wrappers.TimeLimit(gym.make("CartPole-v1").unwrapped, 5), n_envs=1, seed=0)
    seen = []  # (action, the env's step count when it was handed over)
    episodes = play_episodes(
        PPO("MlpPolicy", env, n_steps=32, batch_size=32, seed=0), env, 2,
        on_action=lambda action: seen.append((action.copy(), env.get_attr("_elapsed_steps")[0])),
    )  # fmt: skip
    assert [elapsed for _, elapsed in seen] == [0, 1, 2, 3, 4] * 2  # each before its step, both 5-step episodes
    assert all(action.shape == (1,) for action, _ in seen) and sum(episodes.returns) == 10


@dataclass(frozen=True)
class _Config:
    rate: float = 0.5
    name: str = "x"
    flag: bool = False


def _function(a, steps: int = 7):
    return a


def test_option_takes_its_default_from_the_config_or_function():
    parser = argparse.ArgumentParser()
    option(parser, _Config, "rate")
    option(parser, _Config, "flag")
    option(parser, _function, "steps", "--n")
    args = parser.parse_args([])
    assert (args.rate, args.flag, args.steps) == (0.5, False, 7)
    args = parser.parse_args(["--rate", "0.25", "--flag", "--n", "3"])
    assert (args.rate, args.flag, args.steps) == (0.25, True, 3)
    assert "(default: 0.5)" in parser.format_help()
    assert default_of(_Config, "name") == "x"
    with pytest.raises(KeyError):
        default_of(_function, "a")


def test_a_pretraining_trunk_given_to_ad_eval_is_refused_in_one_line(tmp_path, capsys):
    from sb3_masked_attention.cli import main

    trunk = ROOT / "results" / "pretraining" / "trunks" / "CartPoleNoVel-v1.pt"
    assert main(["ad", "eval", str(trunk), "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "is a pretrained trunk (written by `sb3ma pretrain`), not an AD model" in error
