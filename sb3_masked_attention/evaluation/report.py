"""rliable statistics over a scores table, as CSV tables, plots and one Markdown report.

Every interval is a stratified bootstrap confidence interval computed by rliable
(``rliable.library.get_interval_estimates``); nothing here resamples by itself.
"""

from __future__ import annotations

import itertools
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from sb3_masked_attention.evaluation.bootstrap import interval_estimates, seeded_global_rng
from sb3_masked_attention.evaluation.inference import area_under_curve, holm
from sb3_masked_attention.evaluation.per_task import per_task_table, plot_learning_curves
from sb3_masked_attention.evaluation.scores import (
    common_budget,
    final_scores,
    normalize_scores,
    read_csv_file,
    score_matrices,
    validate_scores,
)
from sb3_masked_attention.io import atomic_path, make_dir, save_figure, write_text_atomic

#: rliable's aggregate metrics (names in ``rliable.metrics``; rliable is imported when first used: it takes a second).
AGGREGATES = {
    "IQM": "aggregate_iqm",
    "Mean": "aggregate_mean",
    "Median": "aggregate_median",
    "Optimality gap": "aggregate_optimality_gap",
}


def aggregate_metrics(matrices: dict[str, np.ndarray], reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per method: IQM, mean, median and optimality gap with 95% CIs, the std across seeds and the run count.

    ``std_across_seeds`` is the standard deviation over runs of each run's mean score over envs.
    """

    def all_aggregates(scores: np.ndarray) -> np.ndarray:
        from rliable import metrics

        return np.array([getattr(metrics, name)(scores) for name in AGGREGATES.values()])

    points, intervals = interval_estimates(matrices, all_aggregates, reps, seed)
    rows = []
    for method, matrix in matrices.items():
        row: dict = {"method": method}
        for i, name in enumerate(AGGREGATES):
            key = name.lower().replace(" ", "_")
            row[key], row[f"{key}_low"], row[f"{key}_high"] = (
                points[method][i],
                intervals[method][0, i],
                intervals[method][1, i],
            )
        row["std_across_seeds"] = float(matrix.mean(axis=1).std(ddof=1)) if len(matrix) > 1 else float("nan")
        row["runs"] = int(matrix.shape[0])
        row["envs"] = int(matrix.shape[1])
        rows.append(row)
    return pd.DataFrame(rows)


def probability_of_improvement(matrices: dict[str, np.ndarray], reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """P(X > Y) for every ordered pair of methods, with its 95% CI (rliable)."""
    pairs = list(itertools.permutations(matrices, 2))
    data = {str(i): (matrices[x], matrices[y]) for i, (x, y) in enumerate(pairs)}
    from rliable import metrics

    points, intervals = interval_estimates(data, metrics.probability_of_improvement, reps, seed)
    return pd.DataFrame(
        [
            {
                "method_x": x,
                "method_y": y,
                "probability": float(np.ravel(points[str(i)])[0]),
                "low": float(np.ravel(intervals[str(i)])[0]),
                "high": float(np.ravel(intervals[str(i)])[1]),
            }
            for i, (x, y) in enumerate(pairs)
        ]
    )


def significance(scores: pd.DataFrame) -> pd.DataFrame:
    """Per pair of methods and env: difference of means, Welch t-test and Mann-Whitney U p-values (two-sided), and
    the Welch p-values Holm-adjusted over every row of the table (one family: all envs and pairs).

    Runs are reduced to their final scores; pass :func:`~sb3_masked_attention.evaluation.inference.area_under_curve`
    of the scores to test the learning curves' areas instead."""
    from scipy import stats

    final = final_scores(scores)
    rows = []
    for env, group in final.groupby("env"):
        for x, y in itertools.combinations(sorted(group["method"].unique()), 2):
            a = group.loc[group["method"] == x, "score"].to_numpy()
            b = group.loc[group["method"] == y, "score"].to_numpy()
            same = np.ptp(np.concatenate([a, b])) == 0  # identical constants: no test can tell them apart
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # near-constant samples: scipy's precision notice
                welch = 1.0 if same else float(stats.ttest_ind(a, b, equal_var=False).pvalue)
                mann_whitney = 1.0 if same else float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
            rows.append(
                {
                    "env": env,
                    "method_x": x,
                    "method_y": y,
                    "mean_x": a.mean(),
                    "mean_y": b.mean(),
                    "difference": a.mean() - b.mean(),
                    "welch_t_p": welch,
                    "mann_whitney_u_p": mann_whitney,
                }
            )
    table = pd.DataFrame(rows)
    if len(table):
        table["welch_t_p_holm"] = holm(table["welch_t_p"].to_numpy())
    return table


def sample_efficiency(scores: pd.DataFrame, points: int = 20, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """IQM over runs and envs at ``points`` budgets, with 95% CIs (needs ``timesteps``).

    Each run's score at budget ``t`` is its last evaluation at or before ``t`` (the score it had
    reached), so runs evaluated at different steps share one grid, from the latest first evaluation
    to the earliest last one.
    """
    runs = scores.sort_values("timesteps").groupby(["method", "env", "seed"])
    start = runs["timesteps"].min().max()
    stop = runs["timesteps"].max().min()
    grid = np.unique(np.linspace(start, stop, points).round().astype(np.int64))
    rows = []
    for method, method_scores in scores.groupby("method"):
        at_budget = {}
        for t in grid:
            reached = method_scores[method_scores["timesteps"] <= t]
            at_budget[str(t)] = score_matrices(final_scores(reached))[0][method]
        from rliable import metrics

        estimates, intervals = interval_estimates(at_budget, metrics.aggregate_iqm, reps, seed)
        for t in at_budget:
            low, high = np.ravel(intervals[t])
            rows.append(
                {"method": method, "timesteps": int(t), "iqm": float(estimates[t]), "low": float(low), "high": float(high)}
            )
    return pd.DataFrame(rows)


def _plots(out: Path, matrices, summary, improvement, curves, reps: int, seed: int, score_label: str) -> list[str]:
    """Write the PNGs; return their names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from rliable import plot_utils

    methods = list(matrices)
    palette = plt.get_cmap("tab10")
    colors = {method: palette(i % 10) for i, method in enumerate(methods)}
    handles = [Line2D([0], [0], color=colors[m], linewidth=2, label=m) for m in methods]
    written = []
    points = {
        m: summary.set_index("method").loc[m, [k.lower().replace(" ", "_") for k in AGGREGATES]].to_numpy(float)
        for m in methods
    }
    intervals = {
        m: np.stack(
            [
                summary.set_index("method")
                .loc[m, [f"{k.lower().replace(' ', '_')}_{end}" for k in AGGREGATES]]
                .to_numpy(float)
                for end in ("low", "high")
            ]
        )
        for m in methods
    }
    fig, _ = plot_utils.plot_interval_estimates(
        points,
        intervals,
        metric_names=list(AGGREGATES),
        algorithms=methods,
        colors=colors,
        xlabel=score_label,
        xlabel_y_coordinate=max(-1.2 / len(methods), -0.6),
    )
    save_figure(fig, out / "aggregate_intervals.png")
    written.append("aggregate_intervals.png")

    all_scores = np.concatenate([m.ravel() for m in matrices.values()])
    tau = np.linspace(all_scores.min(), all_scores.max(), 101)
    with seeded_global_rng(seed):
        from rliable import library as rly

        profiles, profile_cis = rly.create_performance_profile(matrices, tau, reps=reps)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plot_utils.plot_performance_profiles(
        profiles,
        tau,
        performance_profile_cis=profile_cis,
        ax=ax,
        colors=colors,
        xlabel=f"{score_label} ($\\tau$)",
        ylabel="fraction of runs with score > $\\tau$",
    )
    ax.legend(handles=handles, loc="lower left", fontsize=8)
    ax.set_title("Performance profiles (95% CI bands)")
    save_figure(fig, out / "performance_profiles.png")
    written.append("performance_profiles.png")

    unordered = improvement[improvement["method_x"] < improvement["method_y"]]
    estimates = {f"{r.method_x},{r.method_y}": r.probability for r in unordered.itertuples()}
    cis = {f"{r.method_x},{r.method_y}": np.array([r.low, r.high]) for r in unordered.itertuples()}
    ax = plot_utils.plot_probability_of_improvement(estimates, cis, figsize=(5, 0.5 + 0.45 * len(estimates)))
    ax.figure.suptitle("Probability of improvement P(X > Y), 95% CIs", y=1.02)
    save_figure(ax.figure, out / "probability_of_improvement.png")
    written.append("probability_of_improvement.png")

    if curves is not None:
        frames = np.sort(curves["timesteps"].unique())
        pts = {m: g.set_index("timesteps").loc[frames, "iqm"].to_numpy() for m, g in curves.groupby("method")}
        cis = {m: g.set_index("timesteps").loc[frames, ["low", "high"]].to_numpy().T for m, g in curves.groupby("method")}
        fig, ax = plt.subplots(figsize=(7, 4.5))
        plot_utils.plot_sample_efficiency_curve(
            frames,
            pts,
            cis,
            algorithms=list(pts),
            ax=ax,
            colors=colors,
            xlabel="environment steps",
            ylabel=f"IQM {score_label.lower()}",
            labelsize="large",
            ticklabelsize="medium",
        )
        ax.legend(handles=handles, fontsize=8)
        ax.set_title("Sample efficiency: IQM over runs and envs, 95% CI bands")
        save_figure(fig, out / "sample_efficiency.png")
        written.append("sample_efficiency.png")
    return written


def to_markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """``table`` as a Markdown table, floats to ``digits`` significant digits."""
    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    cells = table.map(lambda v: f"{v:.{digits}g}" if isinstance(v, float) else str(v))
    return header + "\n".join("| " + " | ".join(row) + " |" for row in cells.to_numpy().tolist()) + "\n"


def write_report(
    scores_path: str | os.PathLike,
    out: str | os.PathLike,
    reps: int = 2000,
    seed: int = 0,
    normalize: str | os.PathLike = "none",
) -> pd.DataFrame:
    """Read a scores CSV and write ``per_task.csv``, ``summary.csv``, ``probability_of_improvement.csv``,
    ``significance.csv``, [``sample_efficiency.csv``, ``significance_auc.csv``], the PNGs and ``report.md`` into
    ``out``: per-task tables and learning curves first, then the pooled rliable aggregates.

    :return: the summary table.
    """
    if isinstance(reps, bool) or not isinstance(reps, int) or reps < 1:
        raise ValueError(f"reps={reps!r} is invalid: expected a positive integer")
    scores_path, out = Path(scores_path), Path(out)
    try:
        scores = validate_scores(read_csv_file(scores_path))
    except ValueError as error:
        message = str(error)
        where = f"scores file {str(scores_path)!r}: "
        raise ValueError(message if message.startswith("scores file") else where + message) from None
    scores, budget_notes = common_budget(scores)
    scores = normalize_scores(scores, normalize)
    make_dir(out, "output directory")
    matrices, envs = score_matrices(scores)
    summary = aggregate_metrics(matrices, reps, seed)
    improvement = probability_of_improvement(matrices, reps, seed)
    tests = significance(scores)
    has_curves = "timesteps" in scores.columns
    curves = sample_efficiency(scores, reps=reps, seed=seed) if has_curves else None
    tasks = per_task_table(scores, reps, seed)
    tables = {
        "per_task.csv": tasks,
        "summary.csv": summary,
        "probability_of_improvement.csv": improvement,
        "significance.csv": tests,
    }
    if has_curves:
        tables["sample_efficiency.csv"] = curves
        tables["significance_auc.csv"] = significance(area_under_curve(scores))
    for name, table in tables.items():
        with atomic_path(out / name) as tmp:
            table.to_csv(tmp, index=False)
    score_label = "Score" if os.fspath(normalize) == "none" else "Normalized score"
    _plots(out, matrices, summary, improvement, curves, reps, seed, score_label)
    if has_curves:
        plot_learning_curves(scores, out / "learning_curves.png", score_label)

    shown = summary[["method", "runs", "iqm", "iqm_low", "iqm_high", "mean", "median", "optimality_gap", "std_across_seeds"]]
    lines = [
        "# Report",
        "",
        f"Scores: `{scores_path}` ({len(final_scores(scores))} runs; envs: {', '.join(envs)}; normalisation: "
        f"{os.fspath(normalize)}). "
        f"95% stratified-bootstrap CIs from rliable, {reps} resamples, seed {seed}.",
        "",
        *[f"- Budget: {note}." for note in budget_notes],
        *([""] if budget_notes else []),
        "## Per task",
        "",
        "Final score per env and method (IQM with its 95% CI over that env's runs)"
        + ("; `auc`: the learning curve's mean level (area under it over its span)." if has_curves else ".")
        + " Read these before the pooled aggregates below, which mix tasks.",
        "",
        to_markdown(tasks),
    ]
    if has_curves:
        lines += ["![learning curves per task](learning_curves.png)", ""]
    lines += [
        "Two-sided tests per env and pair of methods, final scores; `welch_t_p_holm`: Holm-adjusted over every row.",
        "",
        to_markdown(tests),
        "",
    ]
    if has_curves:
        auc_tests = to_markdown(tables["significance_auc.csv"])
        lines += ["The same tests on the areas under the learning curves:", "", auc_tests, ""]
    lines += [
        "## Pooled across tasks",
        "",
        "rliable's aggregates over every run of every env: a pooled IQM trims the runs at the floor and the ceiling, "
        "so tasks can drop out of it; see the per-task tables above.",
        "",
        to_markdown(shown),
        "![aggregate metrics](aggregate_intervals.png)",
        "",
        "## Performance profiles",
        "",
        "![performance profiles](performance_profiles.png)",
        "",
        "## Probability of improvement",
        "",
        to_markdown(improvement),
        "![probability of improvement](probability_of_improvement.png)",
        "",
    ]
    if curves is not None:
        lines += ["## Sample efficiency (pooled)", "", "![sample efficiency](sample_efficiency.png)", ""]
    write_text_atomic(out / "report.md", "\n".join(lines))
    return summary
