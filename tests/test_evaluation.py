"""Scores format, validation, normalisation and the rliable report."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rliable import library as rly
from rliable import metrics
from scipy import stats

from sb3_masked_attention.evaluation.report import aggregate_metrics, probability_of_improvement, significance, write_report
from sb3_masked_attention.evaluation.scores import (
    common_budget,
    final_scores,
    normalize_scores,
    score_matrices,
    validate_scores,
)


def make_scores(methods=("a", "b"), envs=("sb3ma/TMaze-v0", "CartPoleNoVel-v1"), seeds=5, timesteps=None, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i, method in enumerate(methods):
        for env in envs:
            for s in range(seeds):
                for t in timesteps or [None]:
                    row = {"method": method, "env": env, "seed": s, "score": rng.normal(0.3 * i, 0.1)}
                    if t is not None:
                        row["timesteps"] = t
                    rows.append(row)
    return pd.DataFrame(rows)


def test_summary_matches_rliable_called_directly():
    scores = make_scores()
    matrices, envs = score_matrices(validate_scores(scores))
    assert envs == sorted(envs) and matrices["a"].shape == (5, 2)
    summary = aggregate_metrics(matrices, reps=300, seed=1).set_index("method")
    points, intervals = rly.get_interval_estimates(
        matrices, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=300, random_state=np.random.RandomState(1)
    )
    for method in ("a", "b"):
        assert summary.loc[method, "iqm"] == pytest.approx(points[method][0])
        assert summary.loc[method, "mean"] == pytest.approx(matrices[method].mean())
        assert summary.loc[method, "iqm_low"] <= summary.loc[method, "iqm"] <= summary.loc[method, "iqm_high"]
        assert summary.loc[method, "std_across_seeds"] == pytest.approx(matrices[method].mean(axis=1).std(ddof=1))
        assert summary.loc[method, "runs"] == 5
    del intervals


def test_score_matrices_refuse_a_method_with_unequal_runs_per_env():
    scores = make_scores()
    unfinished = scores[~((scores["method"] == "b") & (scores["env"] == "sb3ma/TMaze-v0") & (scores["seed"] == 4))]
    with pytest.raises(ValueError, match=r"method 'b' has different numbers of runs per env .*'sb3ma/TMaze-v0': 4"):
        score_matrices(unfinished)


def test_probability_of_improvement_every_ordered_pair():
    matrices, _ = score_matrices(make_scores(methods=("a", "b", "c")))
    table = probability_of_improvement(matrices, reps=200)
    assert len(table) == 6
    both = table.set_index(["method_x", "method_y"])["probability"]
    assert both[("a", "b")] + both[("b", "a")] == pytest.approx(1.0)
    assert both[("c", "a")] == pytest.approx(metrics.probability_of_improvement(matrices["c"], matrices["a"]))
    assert ((table["low"] <= table["probability"]) & (table["probability"] <= table["high"])).all()


def test_significance_matches_scipy():
    scores = make_scores()
    table = significance(scores)
    row = table[(table["env"] == "CartPoleNoVel-v1")].iloc[0]
    a = scores[(scores.method == "a") & (scores.env == "CartPoleNoVel-v1")]["score"]
    b = scores[(scores.method == "b") & (scores.env == "CartPoleNoVel-v1")]["score"]
    assert row["welch_t_p"] == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert row["mann_whitney_u_p"] == pytest.approx(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    assert len(table) == 2  # one pair, two envs


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=2, max_size=12), st.integers(1, 4))
def test_final_scores_keep_each_runs_last_evaluation(steps, seeds):
    rows = [{"method": "m", "env": "e", "seed": s, "timesteps": t, "score": 10 * s + t} for s in range(seeds) for t in steps]
    final = final_scores(pd.DataFrame(rows))
    assert len(final) == seeds
    assert sorted(final["score"]) == [10 * s + max(steps) for s in range(seeds)]


def test_final_scores_of_two_evaluations_at_one_step_keep_the_later_row():
    rows = [{"method": "m", "env": "e", "seed": seed, "timesteps": t, "score": score}
            for seed in range(40) for t, score in ((5, 0.0), (9, 1.0), (9, 2.0), (3, 3.0))]  # fmt: skip
    assert final_scores(pd.DataFrame(rows))["score"].tolist() == [2.0] * 40


def test_min_max_normalisation_and_file(tmp_path):
    scores = pd.DataFrame(
        {"method": ["m"] * 2, "env": ["sb3ma/TMaze-v0", "CartPoleNoVel-v1"], "seed": [0, 0], "score": [1.0, 261.0]}
    )
    normalized = normalize_scores(scores, "min-max")
    np.testing.assert_allclose(normalized["score"], [1.0, (261 - 22) / (500 - 22)])
    np.testing.assert_allclose(normalized["raw_score"], [1.0, 261.0])
    bounds = tmp_path / "bounds.csv"
    pd.DataFrame({"env": ["sb3ma/TMaze-v0", "CartPoleNoVel-v1"], "low": [0, 0], "high": [2, 500]}).to_csv(bounds, index=False)
    np.testing.assert_allclose(normalize_scores(scores, bounds)["score"], [0.5, 261 / 500])
    with pytest.raises(ValueError, match="'z-score' is unknown"):
        normalize_scores(scores, "z-score")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda df: df.drop(columns=["seed"]), r"missing the column\(s\) \['seed'\]"),
        (
            lambda df: df[~((df.method == "b") & (df.env == "CartPoleNoVel-v1"))],
            r"method 'b' has runs on \['sb3ma/TMaze-v0'\] but none on \['CartPoleNoVel-v1'\]",
        ),
        (lambda df: df.assign(score=df["score"].where(df.index != 3)), "'score' has 1 value.*not a finite.*line\\(s\\) 5"),
        (lambda df: df[df.seed < 2], "has 2 run\\(s\\).*at least 3"),
        # a repeated run is refused, never counted as one more run
        (lambda df: pd.concat([df, df.iloc[[4]]]), "run method='a', env='sb3ma/TMaze-v0', seed=4 on CSV lines 6, 22"),
        # a NaN seed would drop the run from the groups silently
        (lambda df: df.assign(seed=df["seed"].where(df.index != 2)), "'seed' has 1 value.*not an integer.*line\\(s\\) 4"),
        (lambda df: df.assign(seed=df["seed"] + 0.5), "'seed' has 20 value"),
    ],
)
def test_bad_scores_name_the_problem(edit, message):
    with pytest.raises(ValueError, match=message):
        validate_scores(edit(make_scores()))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # a NaN timesteps would sort last and become the run's final score
        (lambda df: df.assign(timesteps=df["timesteps"].where(df.index != 7)), "'timesteps' has 1 value.*line\\(s\\) 9"),
        (lambda df: df.assign(timesteps=df["timesteps"].astype(object).where(df.index > 0, "ten")), "'timesteps' has 1"),
        # the same evaluation point twice with different scores: which one is the run's?
        (lambda df: pd.concat([df, df.iloc[[5]].assign(score=9.0)]), "seed=2, timesteps=2000 on CSV lines 7, 42"),
        (lambda df: df.assign(timesteps=df["timesteps"].where(df.index != 3, -1000)), "'timesteps' has 1 negative.*line"),
    ],
)
def test_bad_learning_curves_name_the_problem(edit, message):
    with pytest.raises(ValueError, match=message):
        validate_scores(edit(make_scores(timesteps=[1000, 2000])).reset_index(drop=True))


def test_runs_of_unequal_length_are_compared_at_the_budget_all_reached(tmp_path):
    scores = make_scores(timesteps=[1000, 2000, 3000])
    scores = scores[~((scores.method == "b") & (scores.seed == 1) & (scores.timesteps == 3000))]  # one run stopped early
    scores.loc[(scores.env == "CartPoleNoVel-v1") & (scores.timesteps == 3000), "timesteps"] = 3100  # rollout overshoot
    aligned, notes = common_budget(validate_scores(scores))
    assert set(aligned.groupby("env")["timesteps"].max()) == {2000}
    final = final_scores(aligned)
    assert len(final) == 20 and set(final["timesteps"]) == {2000}
    assert notes == [
        f"{env}: runs end between 2000 and {end} steps; each is compared at 2000 steps (its last evaluation at or "
        "before it; 9 later evaluation(s) left out)"
        for env, end in (("CartPoleNoVel-v1", 3100), ("sb3ma/TMaze-v0", 3000))
    ]
    path = tmp_path / "scores.csv"
    scores.to_csv(path, index=False)
    write_report(path, tmp_path / "report", reps=20)
    assert "- Budget: sb3ma/TMaze-v0: runs end between 2000 and 3000 steps" in (tmp_path / "report" / "report.md").read_text()
    late = scores[~((scores.method == "a") & (scores.seed == 0) & (scores.timesteps < 3000))]  # one run: 3000 only
    with pytest.raises(ValueError, match="run method='a', seed=0 has no evaluation at or before 2000 steps"):
        common_budget(validate_scores(late))


def test_report_files_and_cli(tmp_path):
    path = tmp_path / "scores.csv"
    make_scores(methods=("none", "specialized", "diversified"), timesteps=[1000, 2000, 3000]).to_csv(path, index=False)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sb3_masked_attention.cli",
            "report",
            str(path),
            "--out",
            str(tmp_path / "out"),
            "--reps",
            "100",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    for name in (
        "summary.csv",
        "probability_of_improvement.csv",
        "significance.csv",
        "sample_efficiency.csv",
        "report.md",
        "aggregate_intervals.png",
        "performance_profiles.png",
        "probability_of_improvement.png",
        "sample_efficiency.png",
        "per_task.csv",
        "significance_auc.csv",
        "learning_curves.png",
    ):
        assert (tmp_path / "out" / name).stat().st_size > 0, name
    curves = pd.read_csv(tmp_path / "out" / "sample_efficiency.csv")
    assert set(curves["method"]) == {"none", "specialized", "diversified"} and curves["timesteps"].max() == 3000
    report = (tmp_path / "out" / "report.md").read_text()
    assert "![sample efficiency](sample_efficiency.png)" in report and "| specialized |" in report
    assert report.index("## Per task") < report.index("## Pooled across tasks")  # tasks first, pooled after
    # Same seed, same numbers.
    again = write_report(path, tmp_path / "again", reps=100)
    pd.testing.assert_frame_equal(again, pd.read_csv(tmp_path / "out" / "summary.csv"), check_dtype=False)


def test_report_cli_user_errors_exit_2(tmp_path):
    path = tmp_path / "scores.csv"
    make_scores().drop(columns=["score"]).to_csv(path, index=False)
    for args in ([str(path)], [str(tmp_path / "missing.csv")], [str(path), "--normalize", "zscore"]):
        result = subprocess.run(
            [sys.executable, "-m", "sb3_masked_attention.cli", "report", *args, "--out", str(tmp_path / "o")],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_per_task_table_reads_each_env_on_its_own_and_holm_adjusts_the_tests():
    from sb3_masked_attention.evaluation.inference import area_under_curve, holm
    from sb3_masked_attention.evaluation.per_task import per_task_table

    scores = make_scores(methods=("a", "b", "c"), timesteps=[100, 200, 300], seeds=4)
    offsets = {"a": 0.0, "b": 1.0, "c": 2.0}
    scores["steps_per_s"] = scores["seed"] * 10.0 + scores["method"].map(offsets)  # one speed per run
    table = per_task_table(scores, reps=200).set_index(["env", "method"])
    final = scores[scores["timesteps"] == 300]
    for (env, method), row in table.iterrows():
        runs = final[(final["env"] == env) & (final["method"] == method)]["score"].to_numpy()
        assert row["runs"] == 4 and row["final_mean"] == pytest.approx(runs.mean())
        assert row["final_iqm"] == pytest.approx(metrics.aggregate_iqm(runs[:, None]))
        assert row["iqm_low"] <= row["final_iqm"] <= row["iqm_high"]
        areas = area_under_curve(scores).query("env == @env and method == @method")["score"]
        assert row["auc_mean"] == pytest.approx(areas.mean())
        assert row["steps_per_s_median"] == pytest.approx(15.0 + offsets[method])  # median of 0, 10, 20, 30 + offset
    tests = significance(scores)
    assert len(tests) == 2 * 3  # envs x pairs: one family
    np.testing.assert_allclose(tests["welch_t_p_holm"], holm(tests["welch_t_p"].to_numpy()))
    assert (tests["welch_t_p_holm"] >= tests["welch_t_p"]).all()
