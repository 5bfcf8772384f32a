"""train-multiscale: run directory, resuming, refusal of changed settings; the callbacks' logs."""

from __future__ import annotations

import math
import subprocess
import sys

import pandas as pd
import pytest
import torch
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.monitor import load_results

from sb3_masked_attention.callbacks import AttentionLoggingCallback, head_statistics
from sb3_masked_attention.environments import make_history_vec_env
from sb3_masked_attention.multiscale_training import train_multiscale
from sb3_masked_attention.runs import newest_files

TINY = dict(
    map_size=64,
    num_bots=1,
    max_steps=30,
    n_envs=2,
    checkpoint_freq=32,
    eval_freq=32,
    eval_episodes=1,
    attention_log_freq=32,
    subprocess_envs=False,
    progress_bar=False,
    verbose=0,
    ppo_kwargs={"n_steps": 16, "batch_size": 16, "n_epochs": 1},
)


SHORT = {**TINY, "max_steps": 10}  # episodes of 10 steps: several end between two checkpoints (each restarts the envs)


def test_run_directory_and_resume(tmp_path):
    model = train_multiscale(tmp_path, total_timesteps=64, **SHORT)
    assert isinstance(model, MaskablePPO) and model.num_timesteps == 64
    for name in ("final_model.zip", "best_model.zip", "train_config.json", "evaluations.csv"):
        assert (tmp_path / name).exists(), name
    # rollout-aligned: at the first rollout start past each multiple of checkpoint_freq (none at the end of training)
    assert [p.name for p in newest_files(tmp_path / "checkpoints", "model", ".zip")] == ["model_32_steps.zip"]
    assert (tmp_path / "checkpoints" / "model_32_steps.state.pt").exists()
    first = pd.read_csv(tmp_path / "evaluations.csv")
    assert list(first["timesteps"]) == [2, 32, 64]  # the first step, then past each multiple of eval_freq
    assert {"mean_return", "mean_territory_share", "mean_rank"} <= set(first.columns)
    episodes = load_results(str(tmp_path / "monitor"))  # SB3's reader: the monitor files carry SB3's header
    assert len(episodes) and set(episodes.columns) >= {"r", "l", "t"}

    # Extend the budget: resumes from the newest checkpoint (32), replays 32..64 as before, goes on to 128.
    (tmp_path / "final_model.zip").unlink()
    model = train_multiscale(tmp_path, total_timesteps=128, **SHORT)
    assert model.num_timesteps == 128
    after = pd.read_csv(tmp_path / "evaluations.csv")
    assert list(after["timesteps"]) == [2, 32, 64, 96, 128]  # nothing lost, nothing twice
    assert after["training_seconds"].is_monotonic_increasing
    assert len(newest_files(tmp_path / "checkpoints", "model", ".zip")) == 2  # only the newest two are kept

    # Finished: a second call does nothing.
    assert train_multiscale(tmp_path, total_timesteps=128, **SHORT).num_timesteps == 128


class KillAt(BaseCallback):
    """Raise KeyboardInterrupt (as a kill would stop the process) at the first step at or past ``step``."""

    def __init__(self, step: int) -> None:
        super().__init__()
        self.step = step

    def _on_step(self) -> bool:
        if self.num_timesteps >= self.step:
            raise KeyboardInterrupt
        return True


# mid-rollout after the checkpoint of 32; just after the one of 64; two updates after the one of 64 (every 64 steps)
@pytest.mark.parametrize(("kill_at", "every"), [(50, 32), (66, 32), (100, 64)])
def test_a_killed_run_resumes_to_the_run_it_would_have_been(tmp_path, kill_at, every):
    settings = {**SHORT, "checkpoint_freq": every}
    straight = train_multiscale(tmp_path / "straight", total_timesteps=128, **settings)
    with pytest.raises(KeyboardInterrupt):
        train_multiscale(tmp_path / "killed", total_timesteps=128, callback=KillAt(kill_at), **settings)
    resumed = train_multiscale(tmp_path / "killed", total_timesteps=128, **settings)
    assert resumed.num_timesteps == straight.num_timesteps == 128
    for (name, a), b in zip(straight.policy.state_dict().items(), resumed.policy.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    scores = ["timesteps", "mean_return", "mean_territory_share", "mean_rank"]
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "killed" / "evaluations.csv")[scores],
        pd.read_csv(tmp_path / "straight" / "evaluations.csv")[scores],
    )
    for rank in range(TINY["n_envs"]):  # each episode once, the killed sitting's after the checkpoint dropped
        killed, kept = (
            pd.read_csv(tmp_path / run / "monitor" / f"{rank}.monitor.csv", skiprows=1) for run in ("killed", "straight")
        )
        assert len(kept) >= 4
        pd.testing.assert_frame_equal(killed[["r", "l"]], kept[["r", "l"]])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps = [
        [
            event.step
            for event in EventAccumulator(str(tmp_path / run / "tensorboard" / "run")).Reload().Scalars("eval/mean_return")
        ]
        for run in ("killed", "straight")
    ]
    assert steps[0] == steps[1] == [32, 64, 96, 128]  # SB3 dumps after each update; the killed sitting's purged


def test_the_same_seed_gives_the_same_run_in_subprocesses_or_not(tmp_path):
    runs = [
        train_multiscale(tmp_path / str(sub), total_timesteps=64, **{**SHORT, "subprocess_envs": sub}) for sub in (False, True)
    ]
    for a, b in zip(*(run.policy.parameters() for run in runs)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_resume_with_changed_settings_is_refused(tmp_path):
    train_multiscale(tmp_path, total_timesteps=32, attention=True, **TINY)
    with pytest.raises(ValueError, match="attention=True"):
        train_multiscale(tmp_path, total_timesteps=64, attention=False, **TINY)


def test_plain_ppo_and_bad_algo(tmp_path):
    model = train_multiscale(tmp_path / "ppo", total_timesteps=32, algo="ppo", attention=False, **TINY)
    assert type(model) is PPO
    with pytest.raises(ValueError, match="algo='dqn'"):
        train_multiscale(tmp_path / "dqn", algo="dqn", **TINY)


class Recorder(KVWriter):
    def __init__(self) -> None:
        self.values: dict = {}

    def write(self, key_values, key_excluded, step=0) -> None:
        self.values.update(key_values)


def test_attention_logging_for_the_multiscale_extractor():
    from envs.territory import TerritoryControlEnv

    model = MaskablePPO(
        "MultiScaleAttentionPolicy",
        TerritoryControlEnv(map_size=64, num_bots=1, map_resolution=128, tactical_size=64),
        n_steps=16,
        batch_size=16,
        n_epochs=1,
        policy_kwargs={"features_extractor_kwargs": {"attention_stages": (1, 2)}},
    )
    recorder = Recorder()
    model.set_logger(Logger(folder=None, output_formats=[recorder]))
    model.learn(16, callback=AttentionLoggingCallback(log_freq=8))
    values = recorder.values
    weights = [values[f"attention/scale_weight/{key}"] for key in ("global_map", "local_map", "tactical_map")]
    assert sum(weights) == pytest.approx(1.0)
    assert sum(values[f"attention/cross/{key}"] for key in ("global_map", "local_map", "tactical_map")) == pytest.approx(1.0)
    assert values["attention/channel/local_map/stage1"].shape == (64,)
    image = values["attention/spatial/tactical_map/stage2/env0"]
    assert image.image.shape == (1, 8, 8) and image.dataformats == "CHW"


def test_attention_logging_for_the_head_masked_transformer():
    env = make_history_vec_env("sb3ma/TMaze-v0", history_len=6, n_envs=2)
    model = PPO(
        "HeadMaskedTransformerPolicy",
        env,
        n_steps=8,
        batch_size=16,
        n_epochs=1,
        policy_kwargs={
            "features_extractor_kwargs": {"n_heads": 2, "d_model": 8, "n_layers": 2, "head_mask_strategy": [0.0, 0.5]}
        },
    )
    recorder = Recorder()
    model.set_logger(Logger(folder=None, output_formats=[recorder]))
    model.learn(16, callback=AttentionLoggingCallback(log_freq=4))
    for layer in (0, 1):
        for head in (0, 1):
            entropy = recorder.values[f"attention/layer{layer}/head{head}/entropy"]
            lookback = recorder.values[f"attention/layer{layer}/head{head}/lookback"]
            assert 0.0 <= entropy <= math.log(6) + 1e-6 and 0.0 <= lookback <= 5.0


def test_head_statistics_numbers():
    uniform = torch.full((3, 2, 4, 4), 0.25)
    entropy, lookback = head_statistics(uniform)
    torch.testing.assert_close(entropy, torch.full((2,), math.log(4)))
    torch.testing.assert_close(lookback, torch.full((2,), 1.5))  # mean of distances 3, 2, 1, 0
    newest = torch.zeros(1, 1, 4, 4)
    newest[..., -1, 0] = 1.0  # the newest query looks at the oldest position
    entropy, lookback = head_statistics(newest)
    assert entropy.item() == pytest.approx(0.0, abs=1e-6) and lookback.item() == 3.0
    valid = torch.tensor([[True, True, True, True], [False, False, False, False]])
    mixed = torch.stack([uniform[0], newest[0].expand(2, 4, 4)])
    torch.testing.assert_close(head_statistics(mixed, valid)[1], torch.full((2,), 1.5))  # the invalid row is ignored


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--map", "moon"], "map_name='moon'"), (["--algo", "dqn"], "invalid choice"), (["--num-bots", "99"], "num_bots=99")],
)
def test_cli_user_errors_exit_2_with_one_line(tmp_path, args, message):
    command = [
        sys.executable,
        "-m",
        "sb3_masked_attention.cli",
        "train-multiscale",
        "--output-dir",
        str(tmp_path),
        "--map-size",
        "64",
        "--total-timesteps",
        "16",
        "--no-progress",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_small_preset_takes_its_zoo_entry_and_game(tmp_path):
    tiny = {**TINY, "map_size": None, "num_bots": None}
    model = train_multiscale(tmp_path, total_timesteps=32, preset="small", **tiny)
    extractor = model.policy.features_extractor
    assert extractor.features_dim == 256  # the small entry's narrower extractor
    assert extractor.branches["global_map"].convs[0].out_channels == 16
    game = model.get_env().envs[0].unwrapped
    assert (game.preset, game.map_size, game.num_bots, game.bot_level, game.max_steps) == ("small", 64, 2, "medium", 30)
    assert model.observation_space["global_map"].shape == (6, 32, 32)
    with pytest.raises(ValueError, match="preset='tiny'"):
        train_multiscale(tmp_path / "x", total_timesteps=32, preset="tiny", **tiny)


def test_observation_size_and_network_overrides(tmp_path):
    tiny = {**TINY, "map_size": None, "num_bots": None}
    narrower = {"features_extractor_kwargs": {"cnn_channels": (8, 8, 8), "branch_dim": 32, "features_dim": 64}}
    model = train_multiscale(
        tmp_path, total_timesteps=32, preset="small", map_resolution=16, tactical_size=8, policy_kwargs=narrower, **tiny
    )
    assert model.observation_space["global_map"].shape == (6, 16, 16)
    assert model.observation_space["tactical_map"].shape == (6, 8, 8)
    assert model.policy.features_extractor.features_dim == 64
    with pytest.raises(ValueError, match="policy_kwargs"):  # a changed network is refused on resume, by name
        train_multiscale(tmp_path, total_timesteps=64, preset="small", map_resolution=16, tactical_size=8, **tiny)


def test_curriculum_starts_a_larger_game_from_a_smaller_one(tmp_path):
    tiny = {**TINY, "map_size": None, "num_bots": None}
    source = train_multiscale(tmp_path / "small", total_timesteps=32, preset="small", **tiny).policy.state_dict()  # 2 bots
    frozen = {**tiny, "local_view_size": 64, "ppo_kwargs": {**TINY["ppo_kwargs"], "learning_rate": 0.0}}  # weights stay put
    model = train_multiscale(
        tmp_path / "medium", total_timesteps=32, preset="medium", init_from=str(tmp_path / "small/final_model.zip"), **frozen
    )
    assert model.get_env().envs[0].unwrapped.num_bots == 4 and model.num_timesteps == 32  # a fresh step count
    # The source's network (its narrow extractor, not the medium entry's 512 features), every weight copied ...
    assert model.policy.features_extractor.features_dim == 256
    started = model.policy.state_dict()
    assert set(started) == set(source)
    for name, tensor in source.items():
        if not name.startswith("action_net."):
            torch.testing.assert_close(started[name], tensor, msg=name)
    # ... and the action head's rows mapped: wait, neutral, bots 1-4 <- source bots 1, 2, 1, 2, then the 5 fractions.
    rows = [0, 1, 2, 3, 2, 3, 4, 5, 6, 7, 8]
    torch.testing.assert_close(started["action_net.weight"], source["action_net.weight"][rows])
    torch.testing.assert_close(started["action_net.bias"], source["action_net.bias"][rows])


def test_curriculum_refuses_another_extractor_and_bad_files(tmp_path):
    tiny = {**TINY, "map_size": None, "num_bots": None}
    train_multiscale(tmp_path / "small", total_timesteps=32, preset="small", **tiny)
    with pytest.raises(ValueError, match="holds the 'attention' extractor"):
        train_multiscale(
            tmp_path / "x",
            total_timesteps=32,
            preset="small",
            attention=False,
            init_from=str(tmp_path / "small/final_model.zip"),
            **tiny,
        )
    with pytest.raises(ValueError, match="does not exist"):
        train_multiscale(tmp_path / "y", total_timesteps=32, preset="small", init_from=str(tmp_path / "none.zip"), **tiny)
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable SB3 model"):
        train_multiscale(tmp_path / "z", total_timesteps=32, preset="small", init_from=str(tmp_path / "bad.zip"), **tiny)
