import json
import shutil

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sb3_masked_attention.ad import data as ad_data
from sb3_masked_attention.ad.compression import RecentWindowSummary
from sb3_masked_attention.ad.data import OptimisticQLearner, collect_histories, load_histories, save_histories
from sb3_masked_attention.ad.evaluate import evaluate_ad, in_context_returns
from sb3_masked_attention.ad.model import ADTransformer, transition_inputs
from sb3_masked_attention.ad.train import load_ad_model, train_ad
from sb3_masked_attention.cli import main


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("ad") / "histories.npz"
    save_histories(collect_histories(goals=[(0, 0), (8, 8), (2, 6)], episodes=6, runs_per_goal=2, progress=False), path)
    return path


def small_model(**kwargs):
    return ADTransformer(5, [0, 0], [8, 8], 20, d_model=16, n_heads=8, n_layers=2, ff_dim=32, context_len=30, **kwargs).eval()


# ---------------------------------------------------------------- data
def test_collect_records_whole_learning_runs(dataset):
    histories = load_histories(dataset)
    assert histories.actions.shape == (6, 120) and histories.observations.shape == (6, 120, 2)
    assert histories.goals.tolist() == [[0, 0], [0, 0], [8, 8], [8, 8], [2, 6], [2, 6]]
    np.testing.assert_array_equal(histories.timesteps[0], np.tile(np.arange(20), 6))
    # every episode starts at the centre, and a reward is paid exactly on the goal cell
    np.testing.assert_array_equal(histories.observations[:, ::20], np.full((6, 6, 2), 4.0))
    rewarded = histories.rewards == 1.0
    next_obs = np.concatenate([histories.observations[:, 1:], histories.observations[:, -1:]], axis=1)
    on_goal = (next_obs == histories.goals[:, None, :]).all(-1)
    assert np.array_equal(
        rewarded[:, :-1][(histories.timesteps[:, :-1] < 19)], on_goal[:, :-1][(histories.timesteps[:, :-1] < 19)]
    )
    assert histories.meta["n_actions"] == 5 and histories.meta["episode_length"] == 20


def test_q_learner_walks_straight_to_a_found_goal():
    import gymnasium as gym

    import envs  # noqa: F401

    env = gym.make("sb3ma/Darkroom-v0", goal=(6, 4))  # two steps right of the start
    record = ad_data.q_learning_run(env, 30, seed=0)
    returns = np.array([r for _, _, r, _ in record]).reshape(30, 20).sum(1)
    assert returns[-5:].mean() >= 17.0  # optimal 19; epsilon-greedy costs a little


def test_q_learner_breaks_ties_at_random():
    learner = OptimisticQLearner(5, np.random.default_rng(0), epsilon=0.0)
    actions = {learner.act(np.array([1.0, 2.0])) for _ in range(100)}
    assert actions == set(range(5))


def test_ppo_source_records_the_requested_episodes():
    histories = collect_histories(goals=[(4, 2)], episodes=3, runs_per_goal=1, source="ppo", progress=False)
    assert histories.actions.shape == (1, 60)
    assert histories.meta["source"] == "ppo"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"source": "sarsa"}, "source='sarsa'"),
        ({"episodes": 0}, "episodes=0"),
        ({"goals": []}, "goals is empty"),
        ({"env_id": "CartPole-v1"}, "not a Dark Room env"),
    ],
)
def test_collect_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        collect_histories(**{"episodes": 2, "runs_per_goal": 1, "progress": False, **kwargs})


def test_load_rejects_a_foreign_file(tmp_path):
    np.savez(tmp_path / "x.npz", actions=np.zeros((1, 2)))
    with pytest.raises(ValueError, match="lacks"):
        load_histories(tmp_path / "x.npz")
    with pytest.raises(ValueError, match="does not exist"):
        load_histories(tmp_path / "missing.npz")


@settings(max_examples=30, deadline=None)
@given(episode_length=st.integers(1, 5), episodes=st.integers(1, 4), seed=st.integers(0, 100))
def test_transition_inputs_shift_within_episodes(episode_length, episodes, seed):
    rng = np.random.default_rng(seed)
    n = episode_length * episodes
    actions, rewards = rng.integers(0, 5, (2, n)), rng.random((2, n)).astype(np.float32)
    timesteps = np.tile(np.arange(episode_length), (2, episodes))
    inputs = transition_inputs(np.zeros((2, n, 2)), actions, rewards, timesteps, n_actions=5)
    for t in range(n):
        first = t % episode_length == 0
        assert inputs["prev_action"][0, t] == (5 if first else actions[0, t - 1])
        assert inputs["prev_reward"][0, t] == pytest.approx(0.0 if first else rewards[0, t - 1])


# ---------------------------------------------------------------- model
@pytest.mark.parametrize("strategy", ["none", "diversified", [0.0, 0.5] * 4])
def test_cached_steps_equal_the_full_causal_pass(strategy):
    model = small_model(head_mask_strategy=strategy)
    rng = np.random.default_rng(0)
    timesteps = np.tile(np.arange(20), (3, 2))[:, :30]
    inputs = transition_inputs(rng.integers(0, 9, (3, 30, 2)), rng.integers(0, 5, (3, 30)), rng.random((3, 30)), timesteps, 5)
    with torch.no_grad():
        full, weights = model(**inputs, need_weights=True)
        cache, stepped = model.new_cache(), []
        for t in range(30):
            logits, step_weights = model.step(
                cache, *(inputs[k][:, t] for k in ("obs", "prev_action", "prev_reward", "step")), need_weights=True
            )
            stepped.append(logits)
            torch.testing.assert_close(step_weights[-1][:, :, 0], weights[-1][:, :, t, : t + 1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(torch.stack(stepped, dim=1), full, atol=1e-5, rtol=1e-5)


def test_cache_slides_past_the_context_length():
    model = small_model()
    cache = model.new_cache()
    with torch.no_grad():
        for t in range(45):
            logits, _ = model.step(
                cache, torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), torch.zeros(2), torch.full((2,), t % 20)
            )
    assert len(cache[0]) == 30 and cache[0].seen == 45
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"obs_low": [0.0, 0.5]}, "not a small integer grid"),
        ({"obs_high": [8, 1000]}, "not a small integer grid"),
        ({"obs_high": [8]}, "equal-length"),
        ({"context_len": 0}, "context_len=0"),
        ({"head_mask_strategy": "bogus"}, "'bogus' is unknown"),
    ],
)
def test_model_rejects_bad_arguments(kwargs, message):
    arguments = {"n_actions": 5, "obs_low": [0, 0], "obs_high": [8, 8], "episode_length": 20, **kwargs}
    with pytest.raises(ValueError, match=message):
        ADTransformer(**arguments)


# ---------------------------------------------------------------- training
TINY = {
    "updates": 4,
    "batch_size": 4,
    "checkpoint_every": 2,
    "progress": False,
    "context_len": 30,
    "d_model": 16,
    "n_layers": 1,
}


def test_training_lowers_the_loss_and_saves_a_loadable_model(dataset, tmp_path):
    model = train_ad(dataset, tmp_path, **{**TINY, "updates": 40, "checkpoint_every": 20})
    loaded, meta = load_ad_model(tmp_path)
    assert meta["env_id"] == "sb3ma/Darkroom-v0" and not loaded.training
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    losses = [e.value for e in events.Scalars("train/loss")]
    assert len(losses) == 40 and np.mean(losses[-5:]) < np.mean(losses[:5])
    assert "val/accuracy" in events.Tags()["scalars"]


def test_training_resumes_to_the_same_weights(dataset, tmp_path, monkeypatch):
    straight = train_ad(dataset, tmp_path / "straight", **TINY)
    from sb3_masked_attention.ad import train as ad_train

    real, calls = ad_train._windows, []

    def crash_on_third(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # a kill after the checkpoint of update 2
        return real(*args)

    monkeypatch.setattr(ad_train, "_windows", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        train_ad(dataset, tmp_path / "resumed", **TINY)
    monkeypatch.setattr(ad_train, "_windows", real)
    assert not (tmp_path / "resumed" / "model.pt").exists()
    resumed = train_ad(dataset, tmp_path / "resumed", **TINY)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logged = EventAccumulator(str(tmp_path / "resumed" / "tensorboard")).Reload().Scalars("train/loss")
    assert [event.step for event in logged] == [1, 2, 3, 4]  # the killed sitting's steps purged, not shown twice
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="batch_size=4, not 8"):
        train_ad(dataset, tmp_path / "resumed", **{**TINY, "batch_size": 8})
    longer = train_ad(dataset, tmp_path / "resumed", **{**TINY, "updates": 6})  # trains on from update 4
    assert any(not torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), longer.state_dict().values()))
    with pytest.raises(ValueError, match="updates=6, not 5"):
        train_ad(dataset, tmp_path / "resumed", **{**TINY, "updates": 5})


@pytest.mark.parametrize(
    ("bad", "message"), [({"dropout": 2.0}, "dropout"), ({"context_len": 10_000}, "context_len=10000 is longer")]
)
def test_a_refused_setting_is_not_recorded_and_the_corrected_rerun_trains(dataset, tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        train_ad(dataset, tmp_path / "run", **{**TINY, **bad})
    assert not (tmp_path / "run" / "train_config.json").exists()
    train_ad(dataset, tmp_path / "run", **TINY)  # not refused as "a changed setting"
    assert json.loads((tmp_path / "run" / "train_config.json").read_text())["dropout"] == TINY.get("dropout", 0.1)


def test_a_resume_knows_its_dataset_by_content_not_by_the_path_as_typed(dataset, tmp_path, monkeypatch):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(dataset, tmp_path / "a" / "ad.npz")
    save_histories(collect_histories(goals=[(1, 1)], episodes=2, runs_per_goal=1, progress=False), tmp_path / "b" / "ad.npz")
    monkeypatch.chdir(tmp_path / "a")
    train_ad("ad.npz", tmp_path / "run", **TINY)
    train_ad(str(tmp_path / "a" / "ad.npz"), tmp_path / "run", **{**TINY, "updates": 5})  # the same file, typed otherwise
    monkeypatch.chdir(tmp_path / "b")  # another file at the same relative path
    with pytest.raises(ValueError, match="was started with dataset=.*'sha256'"):
        train_ad("ad.npz", tmp_path / "run", **{**TINY, "updates": 6})


# ---------------------------------------------------------------- in-context evaluation
def test_cached_and_recomputed_evaluation_take_the_same_actions():
    model = small_model(head_mask_strategy="diversified")
    goals = [(0, 0), (3, 7)]
    cached = in_context_returns(model, "sb3ma/Darkroom-v0", goals, episodes=2, seed=3)
    recomputed = in_context_returns(model, "sb3ma/Darkroom-v0", goals, episodes=2, seed=3, use_cache=False)
    assert cached.returns.shape == (2, 2)
    np.testing.assert_array_equal(cached.returns, recomputed.returns)
    with pytest.raises(ValueError, match="use_cache=False"):
        in_context_returns(model, "sb3ma/Darkroom-v0", goals, compress=RecentWindowSummary(4))


def test_eval_command_writes_curve_table_and_plot(dataset, tmp_path, capsys):
    train_ad(dataset, tmp_path / "run", **TINY)
    assert (
        main(
            [
                "ad",
                "eval",
                str(tmp_path / "run"),
                "--out",
                str(tmp_path / "eval"),
                "--episodes",
                "3",
                "--last",
                "2",
                "--source-runs",
                "1",
            ]
        )
        == 0
    )
    assert "% of optimal" in capsys.readouterr().out
    import pandas as pd

    table = pd.read_csv(tmp_path / "eval" / "in_context.csv")
    assert list(table.columns) == ["method", "goal_x", "goal_y", "episode", "return"]
    assert set(table["method"]) == {"AD", "source (q-learning)"} and table["episode"].max() == 3
    assert len(table) == 2 * 3 * 16  # 16 held-out goals
    assert (tmp_path / "eval" / "in_context.png").read_bytes()[:4] == b"\x89PNG"
    summary = evaluate_ad(tmp_path / "run", tmp_path / "eval2", episodes=2, last=1, source_runs=1)
    assert summary["goals"] == 16 and 0 < summary["optimal"] <= 20
    assert summary["fraction_of_optimal_low"] <= summary["fraction_of_optimal"] <= summary["fraction_of_optimal_high"]
    assert (
        main(
            [
                "ad",
                "eval",
                str(tmp_path / "run"),
                "--out",
                str(tmp_path / "eval3"),
                "--episodes",
                "2",
                "--last",
                "1",
                "--source-runs",
                "1",
                "--compress",
                "window:10:1",
            ]
        )
        == 0
    )
    assert set(pd.read_csv(tmp_path / "eval3" / "in_context.csv")["method"]) == {"AD (window:10:1)", "source (q-learning)"}


def test_ad_commands_report_user_errors(tmp_path):
    import subprocess
    import sys

    def run_cli(*args):
        return subprocess.run([sys.executable, "-m", "sb3_masked_attention.cli", *args], capture_output=True, text=True)

    result = run_cli("ad", "train", "--dataset", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "does not exist" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("ad", "eval", str(tmp_path), "--out", str(tmp_path / "eval"))
    assert result.returncode == 2 and "sb3ma ad train" in result.stderr


def test_the_fraction_of_optimal_interval_is_a_bootstrap_over_goals():
    from sb3_masked_attention.ad.evaluate import fraction_of_optimal_interval

    optimal = np.array([10.0, 20.0, 10.0, 20.0])
    assert fraction_of_optimal_interval(0.5 * optimal, optimal) == pytest.approx((0.5, 0.5))  # every resample: 0.5
    returns = np.array([10.0, 0.0, 10.0, 0.0])  # half the goals solved, half not
    low, high = fraction_of_optimal_interval(returns, optimal, reps=20_000)
    draws = np.random.default_rng(1).integers(4, size=(20_000, 4))  # the same statistic, resampled independently
    ratios = returns[draws].sum(axis=1) / optimal[draws].sum(axis=1)
    assert low == pytest.approx(np.quantile(ratios, 0.025), abs=0.03) and high == pytest.approx(
        np.quantile(ratios, 0.975), abs=0.03
    )
    assert low < returns.sum() / optimal.sum() < high
    with pytest.raises(ValueError, match="one return and one optimal return per goal"):
        fraction_of_optimal_interval(returns[:3], optimal)
