"""Per-task results, the headline of a report: unlike tasks are not pooled before each has been read on its own.

A pooled IQM over tasks whose scores sit at the floor or the ceiling trims those tasks away and reports the rest;
these tables and curves show each task separately first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sb3_masked_attention.evaluation.bootstrap import interval_estimates
from sb3_masked_attention.evaluation.inference import area_under_curve
from sb3_masked_attention.evaluation.scores import final_scores
from sb3_masked_attention.io import save_figure


def per_task_table(scores: pd.DataFrame, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per env and method: runs, final score (mean, std over seeds, IQM with a 95% stratified-bootstrap CI
    from rliable) and, when ``timesteps`` is present, the area under the learning curve (mean and std over seeds;
    :func:`~sb3_masked_attention.evaluation.inference.area_under_curve`); with ``steps_per_s`` (a study's per-run
    training speed), its median over the runs."""
    from rliable import metrics

    final = final_scores(scores)
    areas = area_under_curve(scores).set_index(["method", "env", "seed"])["score"] if "timesteps" in scores else None
    order = {method: i for i, method in enumerate(dict.fromkeys(scores["method"]))}  # the scores' own method order
    rows = []
    for env, group in final.groupby("env", sort=True):
        by_method = sorted(group.groupby("method"), key=lambda item: order[item[0]])
        runs = {method: g["score"].to_numpy(float)[:, None] for method, g in by_method}
        estimates, intervals = interval_estimates(runs, metrics.aggregate_iqm, reps, seed)
        for method, values in runs.items():
            low, high = np.ravel(intervals[method])
            row = {
                "env": env,
                "method": method,
                "runs": len(values),
                "final_mean": float(values.mean()),
                "final_std": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                "final_iqm": float(estimates[method]),
                "iqm_low": float(low),
                "iqm_high": float(high),
            }
            if areas is not None:
                area = areas.xs((method, env), level=("method", "env")).to_numpy(float)
                row.update(auc_mean=float(area.mean()), auc_std=float(area.std(ddof=1)) if len(area) > 1 else float("nan"))
            if "steps_per_s" in group:
                row["steps_per_s_median"] = float(group.loc[group["method"] == method, "steps_per_s"].median())
            rows.append(row)
    return pd.DataFrame(rows)


def _mean_curves(scores: pd.DataFrame, x: str) -> pd.DataFrame:
    """Per env, method and evaluation step: mean score, a normal 95% half-width over seeds, and the mean ``x``."""
    grouped = scores.groupby(["env", "method", "timesteps"], sort=True)
    table = grouped.agg(mean=("score", "mean"), std=("score", "std"), n=("score", "size"), x=(x, "mean")).reset_index()
    table["half_width"] = 1.96 * table["std"].fillna(0.0) / np.sqrt(table["n"])
    return table


def plot_learning_curves(scores: pd.DataFrame, path: str | Path, score_label: str = "Score") -> list[str]:
    """One panel per env: each method's mean learning curve with a 95% band (normal approximation over seeds),
    against environment steps and, when the scores carry ``wall_seconds``, against training wall-clock time (the
    seeds' mean time at each evaluation) in a second row. Returns the x axes drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_x = ["timesteps"] + (["wall_seconds"] if "wall_seconds" in scores and scores["wall_seconds"].notna().all() else [])
    envs = sorted(scores["env"].unique())
    methods = list(dict.fromkeys(scores["method"]))
    colors = {method: plt.get_cmap("tab10")(i % 10) for i, method in enumerate(methods)}
    fig, axes = plt.subplots(len(axes_x), len(envs), figsize=(4.2 * len(envs), 3.4 * len(axes_x)), squeeze=False)
    for row, x in enumerate(axes_x):
        curves = _mean_curves(scores, x)
        for col, env in enumerate(envs):
            ax = axes[row][col]
            for method in methods:
                curve = curves[(curves["env"] == env) & (curves["method"] == method)]
                if curve.empty:
                    continue
                ax.plot(curve["x"], curve["mean"], color=colors[method], label=f"{method} (n={int(curve['n'].max())})")
                ax.fill_between(curve["x"], curve["mean"] - curve["half_width"], curve["mean"] + curve["half_width"],
                                color=colors[method], alpha=0.2)  # fmt: skip
            ax.set_xlabel("environment steps" if x == "timesteps" else "training wall-clock (s)")
            ax.set_ylabel(score_label)
            ax.set_title(env, fontsize=9)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Learning curves per task: mean over seeds, 95% bands")
    fig.tight_layout()
    save_figure(fig, Path(path))
    return axes_x
