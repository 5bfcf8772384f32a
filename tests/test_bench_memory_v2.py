"""bench/memory_v2.py's tables (finals with bootstrap CIs and differences, steps and wall-clock to a reference level),
memory_v2_probes.py's task streams, memory_v2_answers.py's CountRecall answer counts and memory_v2_advantages.py's
advantage signal."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _bench_module(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


memory_v2 = _bench_module("memory_v2")
probes = _bench_module("memory_v2_probes")
answers = _bench_module("memory_v2_answers")
advantages = _bench_module("memory_v2_advantages")


def run(method, seed, scores, seconds):
    return pd.DataFrame(
        {"method": method, "env": "task", "seed": seed, "timesteps": [10, 20, 30], "score": scores, "wall_seconds": seconds}
    )


SCORES = pd.concat(
    [
        run("transformer_ppo", 0, [1.0, 5.0, 9.0], [1, 2, 3]),
        run("transformer_ppo", 1, [2.0, 6.0, 11.0], [1, 2, 3]),
        run("recurrent_ppo", 0, [1.0, 2.0, 4.0], [3, 6, 9]),
        run("recurrent_ppo", 1, [1.0, 3.0, 6.0], [3, 6, 9]),
    ]
)


def test_study_table_reports_finals_with_intervals_and_the_difference_to_the_first_method():
    table = memory_v2.study_table(SCORES).set_index("method")
    assert list(table.index) == ["transformer_ppo", "recurrent_ppo"]
    assert table.loc["transformer_ppo", "final"].startswith("10 [9, 11]")  # finals 9 and 11
    assert table.loc["recurrent_ppo", "per_seed"] == "4 6"
    assert table.loc["recurrent_ppo", "minus_transformer_ppo"].startswith("-5 [-7, -3]")  # 5 - 10; CI of two seeds each
    assert table.loc["transformer_ppo", "auc"] == "5.62"  # trapezoid mean heights 5 and 6.25


def test_reach_table_counts_when_each_seed_first_reached_the_reference_final():
    table = memory_v2.reach_table(SCORES).set_index("method")  # recurrent_ppo's final mean: 5
    assert table.loc["transformer_ppo", "recurrent_ppo_final"] == "5"
    assert table.loc["transformer_ppo", "steps_to_it"] == "20 (2/2)"  # 5.0 and 6.0 at step 20
    assert table.loc["transformer_ppo", "train_s_to_it"] == "2 (2/2)"
    assert table.loc["recurrent_ppo", "steps_to_it"] == "30 (1/2)"  # only seed 1 (6.0) reached 5
    assert table.loc["recurrent_ppo", "train_s_to_it"] == "9 (1/2)"


def test_bootstrap_interval_of_a_constant_is_the_constant():
    low, high = memory_v2.bootstrap_mean(np.array([3.0, 3.0, 3.0]), np.random.default_rng(0))
    assert low == high == 3.0


def test_an_interval_does_not_move_when_another_task_gets_a_run():
    other = run("recurrent_ppo", 0, [0.0, 0.0, 1.0], [1, 2, 3]).assign(env="another")
    alone = memory_v2.study_table(SCORES).set_index("method")
    beside = memory_v2.study_table(pd.concat([SCORES, other])).query("task == 'task'").set_index("method")
    assert alone.loc["recurrent_ppo", "minus_transformer_ppo"] == beside.loc["recurrent_ppo", "minus_transformer_ppo"]
    assert alone.loc["transformer_ppo", "final"] == beside.loc["transformer_ppo", "final"]


def test_targets_are_open_until_every_seed_is_in_then_met_or_missed():
    table = memory_v2.targets_table(SCORES, seeds=2).set_index("task")
    # TransformerPPO ends at 9 and 11 against 4 and 6: difference +5 with a CI above 0; it reaches 5 (RecurrentPPO's
    # final mean) at 2 s on both seeds, RecurrentPPO at 9 s (its seed 1 only): both targets met
    assert table.loc["task", "final_target"] == "met" and table.loc["task", "wall_clock_target"] == "met"
    assert table.loc["task", "wall_clock_to_level"] == "2 s (2/2) vs 9 s"
    assert memory_v2.targets_table(SCORES, seeds=5).loc[0, "final_target"] == "open"
    swapped = memory_v2.targets_table(SCORES, method="recurrent_ppo", reference="transformer_ppo", seeds=2)
    assert swapped.loc[0, "final_target"] == "missed" and swapped.loc[0, "wall_clock_target"] == "missed"


def test_previous_batch_answers_the_suit_dealt_four_steps_before():
    tokens, answer = probes.previous_batch(np.random.default_rng(0), batch=3)
    assert tokens.shape == (3, 51, 5) and answer.shape == (3, 51)
    suits = tokens[..., :4].argmax(-1)
    assert (tokens[..., :4].sum(-1) == 1).all() and (tokens[:, 0, 4] == 1).all() and (tokens[:, 1:, 4] == 0).all()
    assert (answer[:, :4] == -1).all() and (answer[:, 4:] == suits[:, :-4]).all()
    assert all(np.bincount(row, minlength=4).max() <= 13 for row in suits)  # dealt from one 52-card deck


def test_previous_probe_table_lists_each_seed_per_checkpoint():
    rows = pd.DataFrame(
        {"model": ["a", "a", "a", "a"], "seed": [0, 0, 1, 1], "updates": [25, 50, 25, 50], "accuracy": [0.3, 1, 0.25, 0.9]}
    )
    table = memory_v2.previous_probe_table(rows)
    assert table.columns.tolist() == ["model", "after 25", "after 50"]
    assert table.loc[0, "after 25"] == "0.3 / 0.25" and table.loc[0, "after 50"] == "1 / 0.9"


def test_training_log_summary_averages_each_seed_per_bin_then_over_seeds():
    def log(seed, step, value, tag="train/approx_kl"):
        return {"method": "m", "env": "e", "seed": seed, "step": step, "tag": tag, "value": value}

    logs = pd.DataFrame(
        [log(0, 1_000, 0.1), log(0, 2_000, 0.3), log(1, 1_000, 0.4), log(0, 30_000, 1.0), log(0, 1_000, 5.0, "other")]
    )
    table = memory_v2.training_log_summary(logs).set_index("tag")
    assert table.index.tolist() == ["train/approx_kl"]  # tags outside SUMMARY_TAGS left out
    assert table.loc["train/approx_kl", "0-25k"] == "0.3 (0.2 to 0.4)"  # seed means 0.2 and 0.4
    assert table.loc["train/approx_kl", "25-50k"] == "1 (1 to 1)"


def test_learns_table_places_the_final_between_random_and_optimal():
    # RepeatFirstEasy: random -0.5, optimal 1; finals 0.4 and 0.7 (mean 0.55: 0.7 of the range)
    scores = pd.concat([run("transformer_ppo", seed, [0.0, 0.1, final], [1, 2, 3]) for seed, final in ((0, 0.4), (1, 0.7))])
    table = memory_v2.learns_table(scores.assign(env="sb3ma/popgym-RepeatFirstEasy-v0")).set_index("task")
    row = table.loc["sb3ma/popgym-RepeatFirstEasy-v0"]
    assert row["final"].startswith("0.55 [0.4, 0.7]") and row["share_of_range"] == "0.70 [0.60, 0.80]"
    assert row["learns"] == "yes"  # the CI's low end, 0.6 of the range, clears 0.25
    low = scores.assign(env="sb3ma/popgym-RepeatFirstEasy-v0", score=lambda d: d["score"] - 0.75)  # -0.35, -0.05
    assert memory_v2.learns_table(low).loc[0, "learns"] == "no"  # low end 0.1 of the range
    assert memory_v2.learns_table(scores.assign(env="CartPole-v1")).empty  # no stated random and optimal returns


def test_against_gru_reads_the_gru_study_beside_the_pilot(tmp_path):
    assert memory_v2.against_gru(tmp_path, SCORES) == ""  # no GRU study: no section
    (tmp_path / "pilot_gru").mkdir()
    pd.concat([run("recurrent_ppo_gru", seed, [0.0, 1.0, final], [1, 2, 3]) for seed, final in ((0, 6.0), (1, 8.0))]).to_csv(
        tmp_path / "pilot_gru" / "scores.csv", index=False
    )
    section = memory_v2.against_gru(tmp_path, SCORES)
    row = next(line for line in section.splitlines() if line.startswith("| task | transformer_ppo"))
    assert "| 10 [9, 11] |" in row and "+3 [+1, +5]" in row  # transformer finals 9, 11 against the GRU's 6, 8


def test_fall_back_table_counts_only_evaluations_after_a_run_first_solved():
    scores = pd.concat(
        [
            run("a", 0, [0.96, 0.5, 1.0], [1, 2, 3]),  # solved at once, then one fall-back of two
            run("a", 1, [0.2, 0.95, 0.92], [1, 2, 3]),  # solved at the second, steady after it
            run("a", 2, [0.1, 0.2, 0.3], [1, 2, 3]),  # never solved: none of its evaluations count
            run("b", 0, [0.0, 0.0, 0.99], [1, 2, 3]),  # solved at the last: nothing after it
        ]
    )
    table = memory_v2.fall_back_table(scores, solved=0.95, level=0.9).set_index("method")
    assert table.loc["a", "solved"] == "2/3" and table.loc["a", "evaluations_after"] == 3
    assert table.loc["a", "share_below"] == round(1 / 3, 3) and table.loc["a", "runs_that_fell"] == "1/2"
    assert table.loc["b", "solved"] == "1/1" and table.loc["b", "evaluations_after"] == 0
    assert table.loc["b", "share_below"] == "" and table.loc["b", "runs_that_fell"] == "0/1"


def test_more_seeds_maps_the_study_methods_to_the_pilot_and_pools_the_seeds(tmp_path):
    folder = tmp_path / "repeat_first_fresh_seeds"
    folder.mkdir()
    extra = pd.concat([run("tx_tuned", 5, [0.0, 1.0, 1.0], [1, 2, 3]), run("lstm_tuned", 5, [0.0, 0.5, 0.5], [1, 2, 3]),
                       run("tx_ent02", 5, [0.0, 0.0, 0.0], [1, 2, 3])])  # fmt: skip
    extra.to_csv(folder / "scores.csv", index=False)
    pilot = pd.concat([run("transformer_ppo", 0, [0.0, 0.2, 0.4], [1, 2, 3]),
                       run("recurrent_ppo", 0, [0.0, 1.0, 1.0], [1, 2, 3]),
                       run("transformer_ppo", 0, [9.0, 9.0, 9.0], [1, 2, 3]).assign(env="other")])  # fmt: skip
    text = memory_v2.more_seeds(tmp_path, pilot)
    alone, pooled = text.split("Pooled with the pilot's seeds:")
    assert "tx_ent02" not in text and "other" not in text  # only the entries' methods, only the extra seeds' task
    assert "| task | transformer_ppo | 1 | 30 | 1 [1, 1] |" in alone and "+0.5 [+0.5, +0.5]" in alone
    assert (
        "| task | transformer_ppo | 2 | 30 | 0.7 [0.4, 1] |" in pooled and "| task | recurrent_ppo | 2 | 30 | 0.75" in pooled
    )


def test_pilot_scores_add_the_studies_that_extend_the_pilot_when_they_exist(tmp_path):
    (tmp_path / "pilot").mkdir()
    SCORES.to_csv(tmp_path / "pilot" / "scores.csv", index=False)
    scores, paths = memory_v2.pilot_scores(tmp_path)
    assert paths == [tmp_path / "pilot" / "scores.csv"] and len(scores) == len(SCORES)
    (tmp_path / "pilot_autoencode").mkdir()
    SCORES.assign(env="autoencode").to_csv(tmp_path / "pilot_autoencode" / "scores.csv", index=False)
    scores, paths = memory_v2.pilot_scores(tmp_path)
    assert [path.parent.name for path in paths] == ["pilot", "pilot_autoencode"]
    assert scores.groupby("env").size().to_dict() == {"autoencode": len(SCORES), "task": len(SCORES)}
    targets = memory_v2.targets_table(scores, seeds=2).set_index("task")
    assert list(targets.index) == ["autoencode", "task"]  # each task gets its row of the targets


def test_against_entries_sets_each_searched_method_beside_the_pilot_entry_it_may_replace(tmp_path):
    assert memory_v2.against_entries(tmp_path, {}) == ""  # no pilot: no section
    (tmp_path / "pilot").mkdir()
    pd.concat([SCORES, run("recurrent_ppo", 0, [0.0, 0.0, 50.0], [1, 2, 3]).assign(env="other")]).to_csv(
        tmp_path / "pilot" / "scores.csv", index=False
    )
    searched = pd.concat([run("lstm_tuned", seed, [0.0, 1.0, final], [1, 2, 3]) for seed, final in ((0, 8.0), (1, 10.0))])
    text = memory_v2.against_entries(tmp_path, {tmp_path / "tuned_count_recall": searched})
    assert "transformer_ppo" not in text and "| other |" not in text  # only what ran, its task
    assert "| task | recurrent_ppo_pilot | 2 | 30 | 5 [4, 6] |" in text
    assert "| task | lstm_tuned | 2 | 30 | 9 [8, 10] |" in text and "| +4 [+2, +6] |" in text  # 9 - 5


def test_against_entries_reads_the_archived_runs_of_an_entry_since_replaced(tmp_path):
    (tmp_path / "pilot").mkdir()
    SCORES.to_csv(tmp_path / "pilot" / "scores.csv", index=False)  # the pilot's recurrent_ppo rows: the new entry's
    old = pd.concat([run("recurrent_ppo", seed, [0.0, 0.0, final], [1, 2, 3]) for seed, final in ((0, 1.0), (1, 3.0))])
    old.to_csv(tmp_path / "pilot_lstm_count_recall_default.csv", index=False)
    searched = pd.concat([run("lstm_tuned", seed, [0.0, 1.0, final], [1, 2, 3]) for seed, final in ((0, 8.0), (1, 10.0))])
    text = memory_v2.against_entries(tmp_path, {tmp_path / "tuned_count_recall": searched})
    assert "| task | recurrent_ppo_pilot | 2 | 30 | 2 [1, 3] |" in text  # the archived entry, not the pilot's 4 and 6
    assert "| +7 [+5, +9] |" in text  # 9 - 2


def test_a_study_with_a_reference_elsewhere_is_measured_against_that_reference(tmp_path):
    reference = pd.concat([run("tx_tuned", seed, [0.0, 1.0, final], [1, 2, 3]) for seed, final in ((0, 2.0), (1, 4.0))])
    studies = {tmp_path / "tuned_count_recall": pd.concat([reference, run("lstm_tuned", 0, [9.0, 9.0, 9.0], [1, 2, 3])])}
    factor = pd.concat([run("tx_exact", seed, [0.0, 1.0, final], [1, 2, 3]) for seed, final in ((0, 5.0), (1, 7.0))])
    scores, order, note = memory_v2.with_reference(studies, tmp_path / "count_recall_factors", factor, ["tx_exact"])
    assert order == ["tuned_count_recall/tx_tuned", "tx_exact"] and "`tx_tuned` of `tuned_count_recall/`" in note
    table = memory_v2.study_table(scores, order=order).set_index("method")
    assert "lstm_tuned" not in table.index  # only the reference method
    assert table.loc["tx_exact", "minus_tuned_count_recall/tx_tuned"].startswith("+3 [+1, +5]")  # 6 - 3
    assert memory_v2.with_reference(studies, tmp_path / "another_study", factor, None) == (factor, None, "")


def test_factors_leaves_out_a_study_while_a_runner_writes_it(tmp_path, monkeypatch):
    monkeypatch.setattr(memory_v2, "ROOT", tmp_path)
    for name in ("done", "running"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "study.yml").write_text(yaml.safe_dump({"methods": {"a": {}}}))
        SCORES.to_csv(tmp_path / name / "scores.csv", index=False)
    (tmp_path / "done" / ".lock").touch()  # a runner that has finished leaves its lock file, unlocked
    writer = subprocess.Popen(  # another process holding the folder's lock, as `sb3ma study run` does
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "running")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert writer.stdout.readline().strip() == "held"
        memory_v2.factors(tmp_path, tmp_path / "factors.md")
    finally:
        writer.kill()
        writer.wait()
    text = (tmp_path / "factors.md").read_text()
    assert "## done" in text and "## running" not in text
    memory_v2.factors(tmp_path, tmp_path / "factors.md")  # the runner gone: the study is in
    assert "## running" in (tmp_path / "factors.md").read_text()


HOLD_LOCK = (
    "import sys, time\nfrom sb3_masked_attention.io import hold_folder_lock\n"
    "hold_folder_lock(sys.argv[1]); print('held', flush=True); time.sleep(60)"
)


#: what replay adds beside the answer counts
_RUN = dict(study="a_study", seed=0, same_run=True, rerun_final=0.0, committed_final=0.0)


class _Oracle:
    """A stand-in model answering CountRecallEasy from the env's own state: the true count plus ``offset``, or (clock)
    the count's most likely value given only the cards dealt and whether the card just dealt is of the queried colour."""

    def __init__(self, env, offset=0, clock=False):
        self.env, self.offset, self.clock, self.modes = env, offset, clock, answers.clock_modes()

    def predict(self, obs, state=None, episode_start=None, deterministic=True):
        counts, query, dealt = (self.env.get_attr(name)[0] for name in ("counts", "query", "value"))
        answer = self.modes[counts.sum(), int(dealt == query)] if self.clock else counts[query] + self.offset
        return np.array([answer]), state


def _count_recall_env():
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv

    import envs  # noqa: F401  (registers sb3ma/)

    env = DummyVecEnv([lambda: gym.make("sb3ma/popgym-CountRecallEasy-v0")])
    env.seed(0)
    return env


def test_count_answers_align_each_answer_with_the_count_the_env_scores():
    env = _count_recall_env()
    for offset, right, within_1 in ((0, 1.0, 1.0), (1, 0.0, 1.0), (2, 0.0, 0.0)):
        rows = answers.greedy_answers(_Oracle(env, offset), env, 3).assign(method="oracle", **_RUN)
        assert rows["n"].sum() == 3 * 51
        assert sorted(rows["t"].unique()) == list(range(1, 52))  # the k-th answer comes after k cards
        table = answers.answers_table(rows).iloc[0]
        assert (table["right"], table["within_1"]) == (right, within_1)
        assert table["return"] == 2 * right - 1
        assert table["count_given_time"] == 1.0  # the count plus a constant: all of the count, none of the time alone


def test_the_clock_policy_scores_its_computed_return_and_never_beats_the_clock():
    env = _count_recall_env()
    rows = answers.greedy_answers(_Oracle(env, clock=True), env, 600).assign(method="clock", **_RUN)
    table = answers.answers_table(rows).iloc[0]
    assert table["as_clock"] == 1.0 and table["right"] == table["clock_right"]
    assert table["time_only"] == 1.0 and table["count_given_time"] == 0.0
    # 600 episodes: standard error of the mean return about 0.005; knowing t alone would score 0.038 lower
    assert abs(table["return"] - answers.clock_return()) < 0.02
    assert answers.clock_return(use_dealt=False) < answers.clock_return() - 0.03
    counter = answers.greedy_answers(_Oracle(env), env, 20).assign(method="counter", **_RUN)
    assert answers.answers_table(counter).iloc[0]["time_only"] < 0.8  # the count varies at a given time


def test_count_answers_refuses_an_env_of_several_copies():
    from stable_baselines3.common.vec_env import DummyVecEnv

    env = DummyVecEnv([lambda: _count_recall_env().envs[0]] * 2)
    with pytest.raises(ValueError, match="num_envs must be 1"):
        answers.greedy_answers(None, env, 1)


def test_count_answers_refuses_a_study_or_method_it_cannot_replay(tmp_path):
    with pytest.raises(ValueError, match="study='no_such_study' is invalid"):
        answers.count_answers(tmp_path / "answers.csv", study="no_such_study")
    with pytest.raises(ValueError, match=r"methods \['tx_gamma1'\] are not in study 'count_recall_advantage'"):
        answers.count_answers(tmp_path / "answers.csv", study="count_recall_advantage", methods=("tx_gamma1",))
    assert not (tmp_path / "answers.csv").exists()


def test_advantage_signal_measures_the_reward_gap_each_rollout_keeps():
    from types import SimpleNamespace

    rewards = np.array([[1.0, -1.0], [-1.0, -1.0], [1.0, -1.0]]) / 51  # (n_steps, n_envs): 2 right of 6
    signal = advantages.AdvantageSignal()
    signal.model = SimpleNamespace(rollout_buffer=SimpleNamespace(rewards=rewards, advantages=0.5 * rewards + 3.0))
    signal.num_timesteps = 6
    signal.on_rollout_end()
    row = signal.rows[-1]
    assert row["right"] == pytest.approx(1 / 3) and row["gap"] == pytest.approx(0.5 * 2 / 51)
    assert row["kept"] == pytest.approx(0.5) and row["corr"] == pytest.approx(1.0)
    signal.model.rollout_buffer.advantages = np.array([[0.0, 1.0], [0.0, -1.0], [0.0, 0.0]])  # unrelated to rightness
    signal.on_rollout_end()
    assert signal.rows[-1]["gap"] == 0.0 and signal.rows[-1]["corr"] == pytest.approx(0.0)
    signal.model.rollout_buffer.rewards = -np.ones((3, 2)) / 51  # no right answer: nothing to compare
    signal.on_rollout_end()
    assert len(signal.rows) == 2
    table = advantages.signal_table(pd.DataFrame(signal.rows).assign(study="s", method="m", seed=0)).iloc[0]
    assert table["rollouts"] == 2 and table["kept"] == pytest.approx(0.25) and table["signal_share"] == pytest.approx(0.5)
    signal.rows[1]["timesteps"] = 12  # only the later rollout
    later = advantages.signal_table(pd.DataFrame(signal.rows).assign(study="s", method="m", seed=0), after=6).iloc[0]
    assert later["rollouts"] == 1 and later["kept"] == 0.0


def _two_rows(study, method, seed):
    return pd.DataFrame({"step": [2, 1], "value": [seed + 0.5, seed]}).assign(study=study, method=method, seed=seed)


def test_fill_rows_adds_each_missing_run_once_and_skips_the_rest(tmp_path, capsys):
    out = tmp_path / "rows.csv"
    answers.fill_rows(out, [("s", "m", 1), ("s", "m", 0)], _two_rows, tmp_path / "work", workers=2)
    rows = pd.read_csv(out)
    assert list(rows[["seed", "step"]].itertuples(index=False, name=None)) == [(0, 1), (0, 2), (1, 1), (1, 2)]
    answers.fill_rows(out, [("s", "m", 0), ("s", "m", 2)], _two_rows, tmp_path / "work", workers=1)
    assert "s m 0: already in" in capsys.readouterr().out
    rows = pd.read_csv(out)
    assert rows.groupby("seed").size().to_dict() == {0: 2, 1: 2, 2: 2}  # seed 2 added, seed 0 not again


def test_every_result_in_memory_v2_is_in_its_readme_table():
    """results/memory_v2/README.md says for each folder and file what it holds and which command made it: each entry
    there matches a name (or a ``*`` pattern) in the first column of its table, or is one of the two generated pages."""
    import fnmatch
    import re

    folder = ROOT / "results" / "memory_v2"
    names = set()
    for line in (folder / "README.md").read_text().splitlines():
        if line.startswith("| `"):
            names |= {name.rstrip("/") for name in re.findall(r"`([^`]+)`", line.split("|")[1])}
    assert len(names) > 60
    entries = [path.name for path in folder.iterdir() if path.name not in ("README.md", "factors.md", "pilot.md")]
    assert [name for name in entries if not any(fnmatch.fnmatch(name, pattern) for pattern in names)] == []


def test_a_reference_row_prints_the_interval_of_its_own_study_table():
    """A study's reference row (labelled ``folder/method``) draws its final's bootstrap from the stream its own study's
    table uses, so the two tables print one interval for the same runs (tuned_count_recall's tx_tuned: the label's
    own stream gave [-0.875, -0.779] beside the study's [-0.875, -0.786])."""
    env, finals = "sb3ma/popgym-CountRecallEasy-v0", [-0.745, -0.847, -0.796, -0.902, -0.863]
    rows = pd.DataFrame([{"method": "tx_tuned", "env": env, "seed": s, "timesteps": 10, "score": v, "wall_seconds": 1.0}
                         for s, v in enumerate(finals)])  # fmt: skip
    own = memory_v2.study_table(rows)["final"].tolist()
    labelled = memory_v2.study_table(rows.assign(method="tuned_count_recall/tx_tuned"))["final"].tolist()
    assert own == labelled == ["-0.831 [-0.875, -0.786]"]
    label_stream = memory_v2._rng(0, env, "tuned_count_recall/tx_tuned", "final")
    assert [round(bound, 3) for bound in memory_v2.bootstrap_mean(np.array(finals), label_stream)] == [-0.875, -0.779]


def test_equal_time_table_measures_the_longer_runs_against_the_pilot_level_and_speed():
    """The longer runs' steps and seconds to the reference's pilot final mean, those steps at the method's pilot seconds
    per step, and the reference's own pilot seconds to that level (a seed that never got there counts in n only)."""
    env = "sb3ma/popgym-CountRecallEasy-v0"

    def rows(method: str, seed: int, curve: list[tuple[int, float, float]]) -> list[dict]:
        return [{"method": method, "env": env, "seed": seed, "timesteps": t, "score": v, "wall_seconds": w}
                for t, v, w in curve]  # fmt: skip

    pilot = pd.DataFrame(
        rows("recurrent_ppo", 0, [(50, -0.8, 400.0), (100, -0.5, 800.0)])
        + rows("recurrent_ppo", 1, [(50, -0.4, 300.0), (100, -0.5, 900.0)])  # level -0.5: seed 1 reached it at 300 s
        + rows("transformer_ppo", 0, [(100, -0.7, 100.0)])
        + rows("transformer_ppo", 1, [(100, -0.7, 300.0)])  # 2 s per step on average
    )
    long = pd.DataFrame(
        rows("transformer_ppo", 0, [(100, -0.6, 90.0), (200, -0.45, 180.0), (400, -0.4, 360.0)])
        + rows("transformer_ppo", 1, [(100, -0.7, 95.0), (400, -0.52, 370.0)])
    )
    table = memory_v2.equal_time_table(long, pilot, "transformer_ppo", "recurrent_ppo")
    row = table.iloc[0].to_dict()
    assert row["steps"] == 400 and row["recurrent_ppo_final"] == "-0.5"
    assert row["steps_to_it"] == "200 (1/2)" and row["train_s_to_it"] == "180 s (1/2)"
    assert row["at_pilot_speed"] == "400 s (1/2)"
    assert row["recurrent_ppo_train_s_to_it"] == "550 s (2/2)"  # median of 800 (seed 0) and 300 (seed 1)
    assert row["per_seed"] == "-0.4 -0.52" and row["final"].startswith("-0.46 [")
    assert row["minus_recurrent_ppo_final"].startswith("+0.04 [")  # -0.46 against the pilot's -0.5


def test_equal_time_final_interval_is_the_one_study_table_prints_for_the_same_runs():
    """pilot.md's equal-time row and factors.md's table of the same study print one interval for the final."""
    env = "sb3ma/popgym-CountRecallEasy-v0"
    finals = [-0.188, -0.137, 0.0392, -0.2, -0.141]
    long = pd.DataFrame([{"method": "transformer_ppo", "env": env, "seed": s, "timesteps": 800, "score": v,
                          "wall_seconds": 9.0} for s, v in enumerate(finals)])  # fmt: skip
    pilot = pd.DataFrame([{"method": m, "env": env, "seed": 0, "timesteps": 100, "score": -0.5, "wall_seconds": 1.0}
                          for m in ("transformer_ppo", "recurrent_ppo")])  # fmt: skip
    row = memory_v2.equal_time_table(long, pilot, "transformer_ppo", "recurrent_ppo").iloc[0]
    assert row["final"] == memory_v2.study_table(long)["final"].iloc[0]
