"""The committed AD evaluation's fraction of optimal with a 95% bootstrap interval over its held-out goals, computed
from its ``in_context.csv`` (no model run): what ``sb3ma ad eval`` now writes into ``summary.csv`` for new runs.

    python bench/ad_goal_interval.py [results/ad/eval] [--last 5]   # -> <folder>/goal_interval.md

The interval covers which goals were held out, not the sampling of actions (one sampling run per goal).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import envs  # noqa: E402, F401  (registers the Dark Room ids)
from sb3_masked_attention.ad.evaluate import env_goals, fraction_of_optimal_interval, make_goal_envs  # noqa: E402
from sb3_masked_attention.io import write_text_atomic  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, default=ROOT / "results" / "ad" / "eval")
    parser.add_argument("--last", type=int, default=5, help="episodes averaged per goal (default: 5, as the summary)")
    parser.add_argument("--env", default="sb3ma/Darkroom-v0", help="the model's env (default: sb3ma/Darkroom-v0)")
    args = parser.parse_args()
    table = pd.read_csv(args.folder / "in_context.csv")
    ad = table[table["method"] == "AD"]
    final = ad[ad["episode"] > ad["episode"].max() - args.last].groupby(["goal_x", "goal_y"])["return"].mean()
    goals = env_goals(args.env, "test")
    probe: Any = make_goal_envs(args.env, goals[:1])[0].unwrapped  # a Dark Room env: optimal return per goal
    optimal = np.array([float(probe.optimal_return_for(goal)) for goal in goals])
    returns = np.array([float(final.loc[goal]) for goal in goals])
    low, high = fraction_of_optimal_interval(returns, optimal)
    fraction = returns.sum() / optimal.sum()
    met = "yes" if low >= 0.8 else "no: the point estimate is above it; the interval includes it" if fraction >= 0.8 else "no"
    shown = args.folder.relative_to(ROOT) if args.folder.is_absolute() else args.folder
    text = (
        "# AD: fraction of optimal with an interval over the held-out goals\n\n"
        f"Command: `python bench/ad_goal_interval.py {shown} --last {args.last}`, from `in_context.csv` (no model "
        f"run). {len(goals)} held-out goals; per goal the mean return of the last {args.last} episodes; the fraction is "
        "their sum over the sum of the goals' optimal returns; 95% percentile bootstrap over goals (10,000 resamples, "
        "seed 0). It covers which goals were held out, not the sampling of actions (one sampling run per goal).\n\n"
        "| fraction of optimal | 95% interval over goals | target | met |\n|---|---|---|---|\n"
        f"| {fraction:.3f} | [{low:.3f}, {high:.3f}] | 0.80 | {met} |\n"
    )
    write_text_atomic(args.folder / "goal_interval.md", text)
    print(text)


if __name__ == "__main__":
    main()
