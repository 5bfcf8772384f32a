"""Issue 35's pilots and factor studies, read into one markdown file (results/memory_v2/factors.md).

    python bench/memory_v2.py factors [--dir results/memory_v2] [--out results/memory_v2/factors.md]

Each study folder under ``--dir`` that has a ``scores.csv`` (written by ``sb3ma study run``) becomes a table: per task
and method, the runs, the final evaluation's mean with a 95% percentile-bootstrap CI over seeds, the mean of the area
under the learning curve (:func:`~sb3_masked_attention.evaluation.inference.area_under_curve`), the mean training
wall-clock, every seed's final score, and the difference of final means to the study's reference method (its first
method) with a 95% bootstrap CI (seeds resampled within each method). Small pilots: read the CIs, not the means.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DIR = ROOT / "results" / "memory_v2"
REPS = 10_000


def bootstrap_mean(values: np.ndarray, rng: np.random.Generator, reps: int = REPS) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the mean of ``values``."""
    means = rng.choice(values, size=(reps, len(values)), replace=True).mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def bootstrap_difference(a: np.ndarray, b: np.ndarray, rng: np.random.Generator, reps: int = REPS) -> tuple[float, float]:
    """95% percentile-bootstrap interval of ``mean(a) - mean(b)``, each resampled on its own."""
    diffs = rng.choice(a, (reps, len(a))).mean(axis=1) - rng.choice(b, (reps, len(b))).mean(axis=1)
    return float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))


def study_table(scores: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """One row per task and method (reference: the first method of the scores)."""
    from sb3_masked_attention.evaluation.inference import area_under_curve

    rng = np.random.default_rng(seed)
    order = list(dict.fromkeys(scores["method"]))
    areas = area_under_curve(scores).set_index(["method", "env", "seed"])["score"]
    last = scores.sort_values("timesteps").groupby(["method", "env", "seed"]).tail(1)
    rows = []
    for env, group in last.groupby("env", sort=True):
        finals = {m: g.sort_values("seed")["score"].to_numpy(float) for m, g in group.groupby("method")}
        reference = next(m for m in order if m in finals)
        for method in (m for m in order if m in finals):
            values = finals[method]
            low, high = bootstrap_mean(values, rng)
            runs = group[group["method"] == method]
            row = {
                "task": env,
                "method": method,
                "runs": len(values),
                "steps": int(runs["timesteps"].max()),
                "final": f"{values.mean():.3g} [{low:.3g}, {high:.3g}]",
                "auc": f"{areas.xs((method, env), level=('method', 'env')).mean():.3g}",
                "train_s": f"{runs['wall_seconds'].mean():.0f}" if "wall_seconds" in runs else "",
                "per_seed": " ".join(f"{v:.3g}" for v in values),
            }
            if method != reference:
                d_low, d_high = bootstrap_difference(values, finals[reference], rng)
                row[f"minus_{reference}"] = f"{values.mean() - finals[reference].mean():+.3g} [{d_low:+.3g}, {d_high:+.3g}]"
            rows.append(row)
    return pd.DataFrame(rows).fillna("")


def factors(directory: Path, out: Path) -> None:
    from sb3_masked_attention.evaluation.report import to_markdown
    from sb3_masked_attention.io import write_text_atomic

    sections = []
    for scores_path in sorted(directory.glob("*/scores.csv")):
        scores = pd.read_csv(scores_path)
        study = scores_path.parent
        sections.append(
            f"## {study.name}\n\nStudy file `studies/memory_v2/{study.name}.yml` (its header says what each method "
            f"changes); command: `sb3ma study run studies/memory_v2/{study.name}.yml --dir "
            f"{study.relative_to(ROOT)}`.\n\n" + to_markdown(study_table(scores)) + "\n"
        )
        print(f"{study.name}: {scores.groupby(['method', 'env', 'seed']).ngroups} runs", flush=True)
    if not sections:
        print(f"no study folder with a scores.csv under {directory}: nothing to write", flush=True)
        return
    text = (
        "# Issue 35: factor pilots\n\n"
        "Written by `python bench/memory_v2.py factors`. Final = the last evaluation's mean return over seeds with a "
        "95% percentile-bootstrap CI (10,000 resamples); auc = the mean height of the learning curve over the budget; "
        "train_s = training wall-clock (evaluations excluded) on the 2-core machine, shared by up to three runs at "
        "once: compare within a table only. The last column: the method's final mean minus the table's first "
        "method's, with a 95% bootstrap CI. Pilots of 2-5 seeds: a difference whose CI covers 0 is not shown to "
        "exist.\n\n" + "\n".join(sections)
    )
    write_text_atomic(out, text)
    print(f"wrote {out}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["factors"])
    parser.add_argument("--dir", type=Path, default=DIR, help="folder of study folders (default results/memory_v2)")
    parser.add_argument("--out", type=Path, default=None, help="markdown file (default DIR/factors.md)")
    args = parser.parse_args()
    factors(args.dir, args.out or args.dir / "factors.md")
    sys.exit(0)
