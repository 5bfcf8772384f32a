"""The scores format: one long CSV for every comparison the package makes.

Columns ``method, env, seed, score`` and, optionally, ``timesteps``: one row per training run, or,
with ``timesteps``, one row per evaluation point of a run (for sample-efficiency curves; the
final score of a run is its row with the largest ``timesteps``). ``score`` is the mean return of
the evaluation episodes. Extra columns are kept and ignored.

Normalisation per env (:func:`normalize_scores`): ``"none"``; ``"min-max"``, ``(score - random) /
(optimal - random)`` from the environments' documented ``random_return`` / ``optimal_return``
(``environments.KNOWN_BOUNDS`` for ids that do not document them); or the path of a CSV ``env,low,high``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

REQUIRED_COLUMNS = ("method", "env", "seed", "score")
NORMALIZATIONS = ("none", "min-max")


def validate_scores(scores: pd.DataFrame, min_runs: int = 3) -> pd.DataFrame:
    """Check a scores table and return it with typed columns; raise ValueError naming the problem.

    :param min_runs: fewest runs per (method, env) a bootstrap CI needs.
    """
    missing = [column for column in REQUIRED_COLUMNS if column not in scores.columns]
    if missing:
        raise ValueError(
            f"scores are missing the column(s) {missing}: expected {list(REQUIRED_COLUMNS)} (+ optional timesteps)"
        )
    if scores.empty:
        raise ValueError("scores are empty: expected at least one row")
    scores = scores.copy()
    scores["method"], scores["env"] = scores["method"].astype(str), scores["env"].astype(str)
    scores["score"] = pd.to_numeric(scores["score"], errors="coerce")
    bad = scores.index[~np.isfinite(scores["score"])]
    if len(bad):
        rows = ", ".join(str(i + 2) for i in bad[:5])  # +2: header line, 1-based lines
        raise ValueError(f"scores has {len(bad)} NaN or non-numeric score(s), first at CSV line(s) {rows}")
    envs = sorted(scores["env"].unique())
    for method, group in scores.groupby("method"):
        missing_envs = sorted(set(envs) - set(group["env"]))
        if missing_envs:
            raise ValueError(
                f"method {method!r} has runs on {sorted(group['env'].unique())} but none on {missing_envs}: "
                "every method needs runs on every env"
            )
    runs = final_scores(scores).groupby(["method", "env"]).size()
    few = runs[runs < min_runs]
    if len(few):
        (method, env), count = next(iter(few.items()))
        raise ValueError(f"method {method!r} has {count} run(s) on {env!r}: a confidence interval needs at least {min_runs}")
    return scores


def final_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per run (method, env, seed): the last evaluation when ``timesteps`` is present."""
    if "timesteps" not in scores.columns:
        return scores
    return scores.sort_values("timesteps").groupby(["method", "env", "seed"], as_index=False).tail(1)


def return_bounds_for(env_id: str) -> tuple[float, float]:
    """(random, optimal) return of ``env_id`` (:func:`~sb3_masked_attention.environments.return_bounds`)."""
    from sb3_masked_attention.environments import return_bounds

    bounds = return_bounds(env_id)
    if bounds is None:
        raise ValueError(f"env {env_id!r} documents no random_return/optimal_return: pass --normalize FILE.csv (env,low,high)")
    return bounds


def normalize_scores(scores: pd.DataFrame, normalization: str | os.PathLike = "none") -> pd.DataFrame:
    """Scores with ``score`` rescaled per env (the raw value kept in ``raw_score``)."""
    normalization = os.fspath(normalization)
    if normalization == "none":
        return scores.assign(raw_score=scores["score"])
    if normalization == "min-max":
        bounds = {env: return_bounds_for(env) for env in scores["env"].unique()}
    elif normalization.endswith(".csv") and Path(normalization).is_file():
        table = pd.read_csv(normalization)
        if not {"env", "low", "high"} <= set(table.columns):
            raise ValueError(f"normalisation file {normalization!r} needs the columns env, low, high")
        bounds = {str(row.env): (float(row.low), float(row.high)) for row in table.itertuples()}
        missing = sorted(set(scores["env"]) - set(bounds))
        if missing:
            raise ValueError(f"normalisation file {normalization!r} has no bounds for {missing}")
    else:
        raise ValueError(
            f"normalisation {normalization!r} is unknown: expected 'none', 'min-max' or an existing env,low,high CSV file"
        )
    for env, (low, high) in bounds.items():
        if not high > low:
            raise ValueError(f"normalisation bounds of {env!r} are low={low}, high={high}: expected high > low")
    low = scores["env"].map(lambda env: bounds[env][0])
    high = scores["env"].map(lambda env: bounds[env][1])
    return scores.assign(raw_score=scores["score"], score=(scores["score"] - low) / (high - low))


def score_matrices(scores: pd.DataFrame) -> tuple[dict[str, np.ndarray], list[str]]:
    """``{method: (runs, envs) array}`` of final scores, envs in sorted order, as rliable takes them.

    Runs of one method are matched across envs by seed order; a method needs the same number of
    runs on every env (rliable's stratified bootstrap resamples runs within each env).
    """
    final = final_scores(scores)
    envs = sorted(final["env"].unique())
    matrices = {}
    for method, group in final.groupby("method"):
        columns = [group[group["env"] == env].sort_values("seed")["score"].to_numpy() for env in envs]
        counts = {env: len(column) for env, column in zip(envs, columns)}
        if len(set(counts.values())) != 1:
            raise ValueError(f"method {method!r} has different numbers of runs per env {counts}: expected the same on each")
        matrices[str(method)] = np.stack(columns, axis=1)
    return matrices, envs
