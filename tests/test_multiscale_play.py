"""Playing and recording TerritoryControl games with a model of ``sb3ma train-multiscale``."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from envs.territory import TerritoryControlEnv
from sb3_masked_attention.multiscale_play import (
    CAPTION_HEIGHT,
    LINE_HEIGHT,
    captioned_frame,
    load_multiscale_model,
    play_game,
    save_gif,
)
from sb3_masked_attention.multiscale_training import train_multiscale


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("small")
    model = train_multiscale(
        out,
        preset="small",
        max_steps=30,
        total_timesteps=32,
        n_envs=2,
        eval_freq=0,
        attention_log_freq=0,
        subprocess_envs=False,
        progress_bar=False,
        verbose=0,
        ppo_kwargs={"n_steps": 16, "batch_size": 16, "n_epochs": 1},
    )
    return out / "final_model.zip", model


def test_loaded_model_is_the_trained_one(small_model):
    path, trained = small_model
    assert not (path.parent / "evaluations.csv").exists()  # eval_freq=0: no evaluation
    env = TerritoryControlEnv(preset="small", max_steps=30)
    loaded = load_multiscale_model(path, env)
    for name, tensor in trained.policy.state_dict().items():
        torch.testing.assert_close(loaded.policy.state_dict()[name], tensor, msg=name)
    obs, _ = env.reset(seed=3)
    mask = env.action_masks()
    assert np.array_equal(
        loaded.predict(obs, deterministic=True, action_masks=mask)[0],
        trained.predict(obs, deterministic=True, action_masks=mask)[0],
    )


def test_other_spaces_are_refused(small_model):
    with pytest.raises(ValueError, match="spaces the model was trained on"):
        load_multiscale_model(small_model[0], TerritoryControlEnv(preset="small", num_bots=3))  # one more action target


def test_a_game_ends_and_its_frames_are_captioned(small_model, tmp_path):
    path, _ = small_model
    env = TerritoryControlEnv(preset="small", max_steps=30, action_interval=1, render_mode="rgb_array")
    model = load_multiscale_model(path, env)
    info, frames = play_game(model, env, seed=5, frame_every=7)
    assert info["steps"] == 30 and {"is_success", "territory_share", "rank", "return"} <= set(info)
    shares = env.land_shares()
    assert shares[0] == pytest.approx(info["territory_share"]) and 0 < shares.sum() <= 1
    assert info["rank"] == 1 + int((shares[1:] > shares[0]).sum())
    assert len(frames) == 5 + 1  # steps 0, 7, 14, 21, 28, then the end
    # 64 tiles at 4 pixels each under a caption of whole lines, the same height in every frame (a GIF needs one size).
    assert {frame.shape for frame in frames} == {frames[0].shape} and frames[0].shape[1:] == (4 * 64, 3)
    assert (frames[0].shape[0] - 4 * 64 - CAPTION_HEIGHT) % LINE_HEIGHT == 0
    # The picture under the caption is the env's render, enlarged: every tile a 4x4 block.
    np.testing.assert_array_equal(frames[-1][-4 * 64 :: 4, ::4], env.render())
    again, no_frames = play_game(model, env, seed=5)
    assert no_frames == [] and again["return"] == pytest.approx(info["return"])  # greedy and seeded: the same game
    save_gif(frames, tmp_path / "game.gif", fps=5)
    gif = Image.open(tmp_path / "game.gif")
    assert gif.n_frames == len(frames) and gif.size == (frames[0].shape[1], frames[0].shape[0])


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="frames is empty"):
        save_gif([], tmp_path / "x.gif")
    with pytest.raises(ValueError, match="fps=0"):
        save_gif([np.zeros((4, 4, 3), np.uint8)], tmp_path / "x.gif", fps=0)
    env = TerritoryControlEnv(preset="small")
    env.reset(seed=0)
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        captioned_frame(env, 0)
    assert not (tmp_path / "x.gif").exists()


def test_cli_plays_and_records(small_model, tmp_path):
    command = [sys.executable, "-m", "sb3_masked_attention.cli", "play-multiscale", str(small_model[0])]
    result = subprocess.run([*command, "--games", "2", "--out", str(tmp_path / "g.gif")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "game 1 (seed 1)" in result.stdout and "of 2 games (greedy actions)" in result.stdout
    assert Image.open(tmp_path / "g.gif").n_frames > 1
    wrong = subprocess.run([*command, "--preset", "medium"], capture_output=True, text=True)
    assert wrong.returncode == 2 and len(wrong.stderr.strip().splitlines()) == 1, wrong.stderr


def test_a_sampled_game_is_a_function_of_its_seed(small_model):
    """Sampled actions draw from a generator seeded by the game's seed: whatever ran before, the same game; and the
    caller's torch RNG is left as it was (final evaluations of several models in one process stay comparable)."""
    path, _ = small_model
    env = TerritoryControlEnv(preset="small", max_steps=40, action_interval=1)
    model = load_multiscale_model(path, env)
    torch.manual_seed(0)
    state = torch.get_rng_state()
    first, _ = play_game(model, env, seed=3, deterministic=False)
    assert torch.equal(torch.get_rng_state(), state)
    torch.rand(1000)  # a different global state
    again, _ = play_game(model, env, seed=3, deterministic=False)
    keys = ("return", "territory_share", "rank")
    assert [again[key] for key in keys] == [first[key] for key in keys]
    others = {play_game(model, env, seed=3 + k, deterministic=False)[0]["return"] for k in range(1, 4)}
    assert others != {first["return"]}  # the seed matters


@pytest.mark.parametrize("deterministic", [True, False])
def test_on_step_sees_every_action_and_leaves_the_game_as_it_was(small_model, deterministic):
    path, _ = small_model
    env = TerritoryControlEnv(preset="small", max_steps=40, action_interval=1)
    model = load_multiscale_model(path, env)
    seen: list[tuple[np.ndarray, np.ndarray]] = []
    info, _ = play_game(model, env, seed=4, deterministic=deterministic, on_step=lambda o, m, a: seen.append((m, a)))
    plain, _ = play_game(model, env, seed=4, deterministic=deterministic)
    assert len(seen) == info["steps"] == plain["steps"] and info["return"] == plain["return"]
    for masks, action in seen:  # each action the one played: valid under the masks it was chosen with
        assert masks.shape == (env.num_bots + 2 + 5,) and masks[action[0]]
