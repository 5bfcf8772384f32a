"""bench/multiscale_actions.py: per-step choices of a TerritoryControl model, replaying the final-eval's games."""

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from sb3_contrib import MaskablePPO

from envs.territory import TROOP_FRACTIONS, TerritoryControlEnv
from sb3_masked_attention.multiscale_play import play_game

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_multiscale_actions", ROOT / "bench" / "multiscale_actions.py")
actions = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(actions)


@pytest.fixture(scope="module")
def model_and_env():
    torch.manual_seed(0)
    env = TerritoryControlEnv(preset="small", max_steps=40)
    return MaskablePPO("MultiScaleAttentionPolicy", env, n_steps=8, batch_size=8, device="cpu", seed=0), env


@given(st.lists(st.floats(0.0, 1.0), min_size=3, max_size=12))
def test_kind_probabilities_split_waiting_neutral_and_all_bots(weights):
    probs = np.asarray(weights)
    kinds = actions.target_kind_probabilities(probs)
    assert kinds.shape == (3,)
    assert kinds[0] == probs[0] and kinds[1] == probs[1]
    assert np.isclose(kinds.sum(), probs.sum())


def test_summary_counts_kinds_fractions_and_the_front():
    steps = pd.DataFrame(
        {
            "kind": ["wait", "neutral", "bot", "bot", "wait"],
            "fraction": [0.0, 0.1, 0.5, 1.0, 0.0],
            "bot_valid": [False, True, True, True, True],
            "p_wait": [0.6, 0.2, 0.1, 0.3, 0.5],
            "p_neutral": [0.4, 0.5, 0.2, 0.1, 0.1],
            "p_bot": [0.0, 0.3, 0.7, 0.6, 0.4],
            "p_top_bot": [0.0, 0.2, 0.4, 0.3, 0.2],
        }
    )
    summary = actions.summarise(steps)
    assert summary["steps"] == 5
    assert (summary["share_wait"], summary["share_neutral"], summary["share_bot"]) == (0.4, 0.2, 0.4)
    assert summary["mean_fraction_sent"] == pytest.approx((0.1 + 0.5 + 1.0) / 3)
    assert summary["front_steps"] == 4
    assert summary["front_attack_share"] == 0.5
    assert summary["front_p_bot"] == pytest.approx(0.5)
    assert summary["front_p_top_bot"] == pytest.approx(0.275)
    assert summary["front_p_wait"] == pytest.approx(0.275)


@pytest.mark.parametrize("deterministic", [True, False])
def test_a_recorded_game_is_the_final_eval_game(model_and_env, deterministic):
    model, env = model_and_env
    info, steps = actions.game_choices(model, env, seed=20_000, deterministic=deterministic)
    played, _ = play_game(model, env, seed=20_000, deterministic=deterministic)
    assert info["territory_share"] == played["territory_share"] and info["is_success"] == played["is_success"]
    assert len(steps) == played["steps"]
    table = pd.DataFrame(steps)
    assert set(table["kind"]) <= set(actions.TARGET_KINDS)
    assert table.loc[table["kind"] == "wait", "fraction"].eq(0.0).all()
    assert table.loc[table["kind"] != "wait", "fraction"].isin(TROOP_FRACTIONS).all()
    assert np.allclose(table[["p_wait", "p_neutral", "p_bot"]].sum(axis=1), 1.0, atol=1e-5)
    assert (table["p_top_bot"] <= table["p_bot"] + 1e-7).all()
    assert table.loc[~table["bot_valid"], "p_bot"].eq(0.0).all()  # masked: no bot to attack, no probability
    if deterministic:  # greedy: the likeliest target, a bot only when one bot alone beats waiting and expanding
        likeliest = table[["p_wait", "p_neutral", "p_top_bot"]].to_numpy().argmax(axis=1)
        assert (table["kind"].map(actions.TARGET_KINDS.index).to_numpy() == likeliest).all()


def test_the_command_writes_one_row_per_run_and_mode(model_and_env, tmp_path, monkeypatch):
    model, _ = model_and_env
    monkeypatch.setattr(actions.study, "RESULTS", tmp_path)
    for extractor, seed in (("attention", 0), ("plain", 3)):
        folder = actions.study.run_dir("small", extractor, seed)
        folder.mkdir(parents=True)
        model.save(folder / "final_model.zip")
    actions.action_choices("small", games=1, workers=1, out=tmp_path / "small")
    table = pd.read_csv(tmp_path / "small" / "action_choices.csv")
    assert sorted(zip(table["method"], table["seed"], table["actions"])) == [
        ("attention", 0, "greedy"),
        ("attention", 0, "sampled"),
        ("plain", 3, "greedy"),
        ("plain", 3, "sampled"),
    ]
    assert table["steps"].between(1, 200).all()  # the small preset's games, up to 200 steps
    assert table["win_rate"].between(0, 1).all()
    text = (tmp_path / "small" / "action_choices.md").read_text()
    assert text.count("\n| attention | 0 |") == 2 and "--preset small --games 1" in text
    with pytest.raises(SystemExit, match="--games 0"):
        actions.action_choices("small", games=0, workers=1, out=tmp_path)
    with pytest.raises(SystemExit, match="no finished run of the medium preset"):
        actions.action_choices("medium", games=1, workers=1, out=tmp_path)
