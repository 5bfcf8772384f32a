"""Per-task statistics over learning curves: area under the curve, first reach with k/n, Holm, interaction tests.

A small functional API over the scores format (:mod:`~sb3_masked_attention.evaluation.scores`): curves are rows
``method, env, seed, timesteps, score``; every function returns a DataFrame or plain numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RUN = ["method", "env", "seed"]


def _check_curves(scores: pd.DataFrame, columns: tuple[str, ...] = ("timesteps",)) -> None:
    missing = [column for column in (*RUN, "score", *columns) if column not in scores.columns]
    if missing:
        raise ValueError(f"scores lack the column(s) {missing}: expected {[*RUN, 'score', *columns]}")


def area_under_curve(scores: pd.DataFrame, budget: int | None = None, x: str = "timesteps") -> pd.DataFrame:
    """Each run's learning curve reduced to its mean height: the trapezoid area under ``score`` against ``x`` from
    the run's first evaluation to ``budget`` (default: its last), divided by that span.

    The result is a scores frame (``method, env, seed, score``, score = the curve's mean level), so every aggregate
    and test here takes it. A curve with one evaluation scores that evaluation.

    :param budget: cut each curve at this ``x`` (the runs' common budget); evaluations after it are ignored.
    :param x: ``timesteps``, or a wall-clock column such as ``wall_seconds``.
    """
    _check_curves(scores, (x,))
    if budget is not None and budget <= 0:
        raise ValueError(f"budget={budget!r} must be positive")
    rows = []
    for (method, env, seed), run in scores.sort_values(x).groupby(RUN, sort=True):
        if budget is not None:
            run = run[run[x] <= budget]
            if run.empty:
                raise ValueError(f"run {method}/{env}/seed {seed} has no evaluation at or before budget={budget}")
        xs, ys = run[x].to_numpy(dtype=float), run["score"].to_numpy(dtype=float)
        span = xs[-1] - xs[0]
        area = float(ys[0]) if span == 0 else float(np.sum((ys[1:] + ys[:-1]) / 2 * np.diff(xs)) / span)
        rows.append({"method": method, "env": env, "seed": seed, "score": area})
    return pd.DataFrame(rows, columns=[*RUN, "score"])


def first_reach(curve: pd.DataFrame, threshold: float, x: str = "timesteps") -> float | None:
    """The first ``x`` at which one run's ``score`` is >= ``threshold`` (None if never)."""
    reached = curve.sort_values(x)
    reached = reached[reached["score"] >= threshold]
    return None if reached.empty else float(reached[x].iloc[0])


def seeds_summary(scores: pd.DataFrame, threshold: float, by: tuple[str, ...] = ("method", "env")) -> pd.DataFrame:
    """Per group: "first reached ``threshold``" as the median over the seeds that reached it **with (k/n) beside
    it**, and how many seeds *ended* at or above it (a seed that touched the threshold once is not a seed that
    holds it), plus the final mean.

    :param by: the grouping columns (a run is ``by`` + ``seed``).
    """
    missing = [column for column in (*by, "seed", "timesteps", "score") if column not in scores.columns]
    if missing:
        raise ValueError(f"scores lack the column(s) {missing}: expected {[*by, 'seed', 'timesteps', 'score']}")
    rows = []
    for key, group in scores.groupby(list(by), sort=False):
        runs = [run.sort_values("timesteps") for _, run in group.groupby("seed")]
        firsts = [step for step in (first_reach(run, threshold) for run in runs) if step is not None]
        finals = np.array([run["score"].iloc[-1] for run in runs])
        n = len(runs)
        rows.append(
            {
                **dict(zip(by, key if isinstance(key, tuple) else (key,))),
                "seeds": n,
                f"first_reached_{threshold:g}": f"{np.median(firsts):.0f} ({len(firsts)}/{n})" if firsts else f"never (0/{n})",
                f"final_at_least_{threshold:g}": f"{int((finals >= threshold).sum())}/{n}",
                "final_mean": float(finals.mean()),
            }
        )
    return pd.DataFrame(rows)


def holm(p_values: np.ndarray | list[float]) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down; family-wise error control), in the input order.

    Reject hypothesis ``i`` at level ``alpha`` when ``holm(p)[i] <= alpha``.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or not np.all((p >= 0) & (p <= 1)):
        raise ValueError(f"p_values must be a list of probabilities in [0, 1], got {p_values!r}")
    order = np.argsort(p, kind="stable")
    m = len(p)
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted


def detectable_difference(std: float, runs_per_arm: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The difference in means two arms of ``runs_per_arm`` runs each, with standard deviation ``std``, detect with a
    two-sided test at level ``alpha`` and the given ``power`` (normal approximation: ``(z_{1-alpha/2} + z_power) *
    std * sqrt(2 / n)``); to size seeds from a pilot, or to say what a null result could have found."""
    from scipy.stats import norm

    if not std >= 0:
        raise ValueError(f"std must be a number >= 0, got {std!r}")
    if runs_per_arm < 2:
        raise ValueError(f"runs_per_arm must be at least 2, got {runs_per_arm!r}")
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"alpha and power must lie in (0, 1), got alpha={alpha!r}, power={power!r}")
    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * std * np.sqrt(2 / runs_per_arm))


def _check_test_inputs(y: np.ndarray, reps: int) -> None:
    if not np.isfinite(y).all():
        raise ValueError("values contain NaN or infinity")
    if reps < 1:
        raise ValueError(f"reps={reps!r} must be >= 1")


def _projections(levels_a: np.ndarray, levels_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Projections onto the additive model (intercept + both main effects) and onto the cell means: the interaction
    is what the second explains beyond the first."""
    columns = [np.ones(len(levels_a))]
    for levels in (levels_a, levels_b):
        columns += [(levels == level).astype(float) for level in np.unique(levels)[1:]]
    additive = np.column_stack(columns)
    cells = pd.factorize(pd.MultiIndex.from_arrays([levels_a, levels_b]))[0]
    one_hot = np.eye(cells.max() + 1)[cells]
    return additive @ np.linalg.pinv(additive), one_hot @ np.linalg.pinv(one_hot)


def interaction_test(
    values: np.ndarray | list[float],
    factor_a: np.ndarray | list,
    factor_b: np.ndarray | list,
    reps: int = 10_000,
    seed: int = 0,
) -> dict[str, float]:
    """Permutation test of a two-factor interaction (e.g. head-mask strategy x lag): does the effect of one factor
    depend on the other?

    Statistic: the interaction sum of squares (for balanced 2 x 2 cells of n runs, n x the difference of
    differences squared / 4). Null distribution by Freedman-Lane: the additive model's residuals are permuted and
    added back to its fitted values, so main effects stay in every permuted sample.

    :param values: one score per run (e.g. area under the curve).
    :param factor_a: each run's level of the first factor; ``factor_b`` likewise. Every cell needs >= 2 runs.
    :return: ``statistic``, ``p_value`` (with the +1 correction), and ``difference_of_differences`` for 2 x 2 designs
        (first level of ``a`` minus second, at the first level of ``b`` minus at the second; NaN otherwise).
    """
    y = np.asarray(values, dtype=float)
    a, b = np.asarray(factor_a), np.asarray(factor_b)
    if not (len(y) == len(a) == len(b)):
        raise ValueError(f"values, factor_a and factor_b differ in length: {len(y)}, {len(a)}, {len(b)}")
    _check_test_inputs(y, reps)
    counts = pd.crosstab(a, b)
    if counts.shape[0] < 2 or counts.shape[1] < 2 or int(counts.to_numpy().min()) < 2:
        raise ValueError(f"every cell of factor_a x factor_b needs >= 2 runs (and each factor >= 2 levels), got\n{counts}")
    additive, cells = _projections(a, b)
    interaction = cells - additive  # y -> cell means minus the additive fit
    observed = float(np.sum((interaction @ y) ** 2))
    fitted = additive @ y
    residuals = y - fitted
    rng = np.random.default_rng(seed)
    exceed = 0
    for start in range(0, reps, 1000):  # permuted samples as columns, a thousand at a time
        count = min(1000, reps - start)
        permuted = fitted[:, None] + residuals[rng.permuted(np.tile(np.arange(len(y)), (count, 1)), axis=1).T]
        exceed += int(np.sum(np.sum((interaction @ permuted) ** 2, axis=0) >= observed * (1 - 1e-9) - 1e-12))
    dod = float("nan")
    if counts.shape == (2, 2):
        means = pd.Series(y).groupby([a, b]).mean()
        (a0, a1), (b0, b1) = np.unique(a), np.unique(b)
        dod = float((means[a0, b0] - means[a1, b0]) - (means[a0, b1] - means[a1, b1]))
    return {"statistic": observed, "p_value": (exceed + 1) / (reps + 1), "difference_of_differences": dod}


def one_way_test(values: np.ndarray | list[float], groups: np.ndarray | list, reps: int = 10_000, seed: int = 0) -> dict:
    """Permutation test that the groups (e.g. head-mask strategies on one task) share one mean.

    Statistic: the between-group sum of squares (the F statistic's numerator; with the total fixed under
    permutation, the two order permutations alike). Labels are permuted ``reps`` times.

    :return: ``statistic``, ``p_value`` (with the +1 correction) and ``range`` (largest minus smallest group mean).
    """
    y = np.asarray(values, dtype=float)
    labels = pd.factorize(np.asarray(groups))[0]
    if len(y) != len(labels):
        raise ValueError(f"values and groups differ in length: {len(y)}, {len(labels)}")
    _check_test_inputs(y, reps)
    counts = np.bincount(labels)
    if len(counts) < 2 or counts.min() < 2:
        raise ValueError(f"every group needs >= 2 values (and there must be >= 2 groups), got counts {counts.tolist()}")

    def between(assignment: np.ndarray) -> np.ndarray:  # (reps, n) labels -> (reps,) between-group sums of squares
        sums = np.stack([np.bincount(row, weights=y, minlength=len(counts)) for row in np.atleast_2d(assignment)])
        return np.sum(sums**2 / counts, axis=1) - y.sum() ** 2 / len(y)

    observed = float(between(labels)[0])
    rng = np.random.default_rng(seed)
    permuted = rng.permuted(np.tile(labels, (reps, 1)), axis=1)
    exceed = int(np.sum(between(permuted) >= observed * (1 - 1e-9) - 1e-12))
    means = np.bincount(labels, weights=y) / counts
    return {"statistic": observed, "p_value": (exceed + 1) / (reps + 1), "range": float(means.max() - means.min())}
