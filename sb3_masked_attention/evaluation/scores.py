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


def read_csv_file(path: str | os.PathLike, what: str = "scores file") -> pd.DataFrame:
    """Read a CSV, raising ValueError naming the file when it is missing, a folder, empty or not CSV."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a folder: expected a CSV file")
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} does not exist")
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ValueError(f"{what} {str(path)!r} is empty: expected a header line and rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        reason = str(error).strip().splitlines()[-1][:120]
        raise ValueError(f"{what} {str(path)!r} is not a readable CSV ({reason})") from None
    return table


def _lines(index: pd.Index) -> str:
    """CSV line numbers of the first few rows in ``index`` (+2: the header line, 1-based lines)."""
    return ", ".join(str(i + 2) for i in index[:5])


def _numeric(scores: pd.DataFrame, column: str, integer: bool = False) -> pd.Series:
    """``column`` as numbers; raise ValueError naming the CSV lines of NaN, infinite or non-numeric values."""
    values = pd.to_numeric(scores[column], errors="coerce")
    bad = ~np.isfinite(values.to_numpy(dtype=float))
    if integer:
        bad |= ~bad & (values.fillna(0) % 1 != 0).to_numpy()
    if bad.any():
        kind = "an integer" if integer else "a finite number"
        raise ValueError(
            f"scores column {column!r} has {int(bad.sum())} value(s) that are not {kind} "
            f"(NaN, infinite or text), first at CSV line(s) {_lines(scores.index[bad])}"
        )
    return values.astype(int) if integer else values.astype(float)


def validate_scores(scores: pd.DataFrame, min_runs: int = 3) -> pd.DataFrame:
    """Check a scores table and return it with typed columns; raise ValueError naming the problem.

    Every score, seed and timesteps value must be a finite number (seeds integers), and each run
    (method, env, seed) has one row, or with ``timesteps`` one row per evaluation point: a repeated
    row is refused, never counted twice or silently dropped.

    :param min_runs: fewest runs per (method, env) a bootstrap CI needs.
    """
    missing = [column for column in REQUIRED_COLUMNS if column not in scores.columns]
    if missing:
        raise ValueError(
            f"scores are missing the column(s) {missing}: expected {list(REQUIRED_COLUMNS)} (+ optional timesteps)"
        )
    if scores.empty:
        raise ValueError("scores are empty: expected at least one row")
    scores = scores.reset_index(drop=True)
    blank = scores["method"].isna() | scores["env"].isna()
    if blank.any():
        raise ValueError(
            f"scores have {int(blank.sum())} row(s) without a method or env, "
            f"first at CSV line(s) {_lines(scores.index[blank])}"
        )
    scores["method"], scores["env"] = scores["method"].astype(str), scores["env"].astype(str)
    scores["score"] = _numeric(scores, "score")
    scores["seed"] = _numeric(scores, "seed", integer=True)
    key = ["method", "env", "seed"]
    if "timesteps" in scores.columns:
        scores["timesteps"] = _numeric(scores, "timesteps", integer=True)
        negative = scores["timesteps"] < 0
        if negative.any():
            raise ValueError(
                f"scores column 'timesteps' has {int(negative.sum())} negative value(s), first at CSV line(s) "
                f"{_lines(scores.index[negative])}: expected environment steps >= 0"
            )
        key.append("timesteps")
    repeated = scores.duplicated(key, keep=False)
    if repeated.any():
        first = scores[repeated].iloc[0]
        same = scores.index[(scores[key] == first[key]).all(axis=1)]
        where = ", ".join(f"{name}={first[name].item() if hasattr(first[name], 'item') else first[name]!r}" for name in key)
        hint = "" if "timesteps" in key else " (for learning curves add a timesteps column)"
        raise ValueError(
            f"scores repeat the run {where} on CSV lines {_lines(same)}: each run needs one row{hint}; "
            f"{int(repeated.sum())} rows are repeated in all"
        )
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


def common_budget(scores: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Each env's learning curves cut to the budget every one of its runs reached, so that final scores and areas
    compare runs of one length; and a line per env where that left evaluations out (for the report).

    A run's final score is its last evaluation at or before the env's common budget (the smallest final
    ``timesteps`` of its runs): PPO ends on a whole rollout, so runs of one budget end a few steps apart, and a run
    stopped early shortens every run's comparison, which the returned lines say.

    :raises ValueError: a run with no evaluation at or before the common budget.
    """
    if "timesteps" not in scores.columns:
        return scores, []
    kept, notes = [], []
    for env, group in scores.groupby("env", sort=True):
        ends = group.groupby(["method", "seed"])["timesteps"].max()
        budget = int(ends.min())
        inside = group[group["timesteps"] <= budget]
        lost = sorted(set(ends.index) - set(inside.groupby(["method", "seed"]).size().index))
        if lost:
            method, seed = lost[0]
            raise ValueError(
                f"env {env!r}: run method={method!r}, seed={seed} has no evaluation at or before {budget} steps, where "
                "another run of this env ends: the runs cannot be compared at one budget"
            )
        if len(inside) < len(group):
            notes.append(
                f"{env}: runs end between {budget} and {int(ends.max())} steps; each is compared at {budget} steps "
                f"(its last evaluation at or before it; {len(group) - len(inside)} later evaluation(s) left out)"
            )
        kept.append(inside)
    return pd.concat(kept).sort_index(), notes


def final_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """One row per run (method, env, seed): the last evaluation when ``timesteps`` is present (of two at the same
    step, the later row: a stable sort, so the answer does not depend on the sort's implementation)."""
    if "timesteps" not in scores.columns:
        return scores
    ordered = scores.sort_values("timesteps", kind="stable")
    return ordered.groupby(["method", "env", "seed"], as_index=False).tail(1)


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
    elif normalization.endswith(".csv") and Path(normalization).exists():
        bounds = read_bounds(normalization)
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


def read_bounds(path: str | os.PathLike) -> dict[str, tuple[float, float]]:
    """``{env: (low, high)}`` from a CSV ``env,low,high``; raise ValueError naming the file and line of a bad value."""
    what = f"normalisation file {os.fspath(path)!r}"
    table = read_csv_file(path, "normalisation file")
    if not {"env", "low", "high"} <= set(table.columns):
        raise ValueError(f"{what} needs the columns env, low, high (has {list(table.columns)})")
    bounds = {}
    for line, row in zip(range(2, len(table) + 2), table.itertuples()):
        values = pd.to_numeric(pd.Series([row.low, row.high]), errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(values).all():
            raise ValueError(f"{what} line {line}: low={row.low!r}, high={row.high!r}: expected finite numbers")
        if str(row.env) in bounds:
            raise ValueError(f"{what} line {line}: env {row.env!r} appears twice")
        bounds[str(row.env)] = (float(values[0]), float(values[1]))
    return bounds


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
            raise ValueError(
                f"method {method!r} has different numbers of runs per env {counts}: expected the same on each "
                "(a study still running? report it once every run has finished)"
            )
        matrices[str(method)] = np.stack(columns, axis=1)
    return matrices, envs
