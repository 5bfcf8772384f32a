"""What trained TerritoryControl models choose with greedy and with sampled actions, and how sure their policy is.

    python bench/multiscale_actions.py --preset medium            # every finished run of the preset, 10 games each
    python bench/multiscale_actions.py --preset small --games 50

A greedy MaskablePPO action of the MultiDiscrete([targets, fractions]) space takes the most likely value of each
factor on its own. When the policy spreads its target over waiting, neutral land and the bots, that mode can be a
target it picks in few of its sampled steps, and a held-out game played greedily is then another strategy than the
one trained. For every finished run of ``bench/multiscale.py learn`` this plays the first ``games`` held-out games of
its final-eval (the same seeds, so the same games), greedy and sampled, and records at every step the chosen target
(wait, neutral land, a bot) and troop fraction, and the policy's masked probabilities of the three kinds of target.
-> <out>/action_choices.csv (one row per run and action mode) and action_choices.md; ``--out`` defaults to a new
folder (``--out results/multiscale/<preset>`` replaces the committed tables).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))  # the study module beside this one, however this is loaded

import multiscale_study as study  # noqa: E402
from folders import measuring_folder, out_option  # noqa: E402

from sb3_masked_attention.evaluation.study import worker_pool  # noqa: E402
from sb3_masked_attention.io import write_text_atomic  # noqa: E402

TARGET_KINDS = ("wait", "neutral", "bot")


def target_kind_probabilities(target_probs: np.ndarray) -> np.ndarray:
    """The policy's probability of each kind of target: (wait, neutral land, any bot) from its per-target ones."""
    return np.array([target_probs[0], target_probs[1], target_probs[2:].sum()])


def game_choices(model: Any, env: Any, seed: int, deterministic: bool) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One game of :func:`sb3_masked_attention.multiscale_play.play_game` (same seed, same draws: the final-eval's
    game), with each step's choice: target kind, fraction sent, whether a bot could be attacked, and the policy's
    probabilities of the target kinds and of the likeliest single bot.

    :return: the final ``info`` and one record per step.
    """
    from envs.territory import TROOP_FRACTIONS
    from sb3_masked_attention.multiscale_play import play_game

    steps: list[dict[str, Any]] = []

    def record(obs: Any, masks: np.ndarray, action: np.ndarray) -> None:
        obs_tensor, _ = model.policy.obs_to_tensor(obs)
        with torch.no_grad():  # no draw: the game's sampled actions stay those of play_game without a recorder
            distribution = model.policy.get_distribution(obs_tensor, action_masks=masks[None])
        target_probs = distribution.distributions[0].probs[0].numpy()
        target, fraction = int(action[0]), int(action[1])
        steps.append(
            {
                "kind": TARGET_KINDS[min(target, 2)],
                "fraction": TROOP_FRACTIONS[fraction] if target else 0.0,  # waiting sends nothing
                "bot_valid": bool(masks[2 : env.num_bots + 2].any()),
                **{f"p_{kind}": float(p) for kind, p in zip(TARGET_KINDS, target_kind_probabilities(target_probs))},
                "p_top_bot": float(target_probs[2:].max()),  # the likeliest single bot: greedy's candidate
            }
        )

    info, _ = play_game(model, env, seed=seed, deterministic=deterministic, on_step=record)
    return info, steps


def summarise(steps: pd.DataFrame) -> dict[str, float]:
    """Shares of steps per target kind, mean fraction of troops sent when sending, and, at steps where a bot could be
    attacked, the share attacking one and the policy's mean probability of doing so."""
    at_front = steps[steps["bot_valid"]]
    sending = steps[steps["kind"] != "wait"]
    return {
        "steps": len(steps),
        **{f"share_{kind}": float((steps["kind"] == kind).mean()) for kind in TARGET_KINDS},
        "mean_fraction_sent": float(sending["fraction"].mean()) if len(sending) else 0.0,
        "front_steps": len(at_front),
        "front_attack_share": float((at_front["kind"] == "bot").mean()) if len(at_front) else float("nan"),
        "front_p_bot": float(at_front["p_bot"].mean()) if len(at_front) else float("nan"),
        "front_p_top_bot": float(at_front["p_top_bot"].mean()) if len(at_front) else float("nan"),
        "front_p_wait": float(at_front["p_wait"].mean()) if len(at_front) else float("nan"),
        **{f"mean_p_{kind}": float(steps[f"p_{kind}"].mean()) for kind in TARGET_KINDS},
    }


def _run_choices(job: tuple[str, str, int, str, int]) -> list[dict[str, Any]]:
    """Both action modes of one run's final model on the first ``games`` held-out games."""
    from envs.territory import TerritoryControlEnv
    from sb3_masked_attention.multiscale_play import load_multiscale_model

    torch.set_num_threads(1)
    preset, method, seed, folder, games = job
    env = TerritoryControlEnv(preset=preset)
    model = load_multiscale_model(Path(folder) / "final_model.zip", env)
    rows = []
    for deterministic in (True, False):
        records, wins = [], 0
        for game in range(games):
            info, steps = game_choices(model, env, study.HELD_OUT_SEED + game, deterministic)
            records += steps
            wins += bool(info["is_success"])
        actions = "greedy" if deterministic else "sampled"
        row = {"preset": preset, "method": method, "seed": seed, "actions": actions, "games": games, "win_rate": wins / games}
        rows.append({**row, **summarise(pd.DataFrame(records))})
    return rows


def choices_table(table: pd.DataFrame) -> str:
    """Markdown: one line per run and action mode."""
    lines = [
        "| method | seed | actions | win rate | wait | neutral | bot | fraction sent | front steps | attacks at front | "
        "p(bot) at front | p(likeliest bot) | p(wait) at front |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table.sort_values(["method", "seed", "actions"]).itertuples():
        lines.append(
            f"| {row.method} | {row.seed} | {row.actions} | {row.win_rate:.2f} | {row.share_wait:.2f} | "
            f"{row.share_neutral:.2f} | {row.share_bot:.2f} | {row.mean_fraction_sent:.2f} | {row.front_steps} | "
            f"{row.front_attack_share:.2f} | {row.front_p_bot:.2f} | {row.front_p_top_bot:.2f} | {row.front_p_wait:.2f} |"
        )
    return "\n".join(lines)


def action_choices(preset: str, games: int, workers: int, out: Path) -> None:
    """Every finished run of ``preset`` -> ``out``/action_choices.csv and .md (rewritten whole)."""
    for name, value in (("games", games), ("workers", workers)):
        if value < 1:
            raise SystemExit(f"--{name} {value} is invalid: expected at least 1")
    runs = study.finished_runs(preset)
    if not runs:
        raise SystemExit(f"no finished run of the {preset} preset under {study.RESULTS / 'runs' / preset}")
    jobs = [(preset, method, seed, str(folder), games) for method, _, seed, folder in runs]
    if workers == 1:
        results = list(map(_run_choices, jobs))
    else:
        with worker_pool(workers) as pool:
            results = list(pool.map(_run_choices, jobs))
    table = pd.DataFrame([row for rows in results for row in rows])
    write_text_atomic(out / "action_choices.csv", table.to_csv(index=False))
    text = (
        f"# {preset}: what the trained models choose ({games} held-out games per run and action mode)\n\n"
        f"Command: `python bench/multiscale_actions.py --preset {preset} --games {games} --out {out}`. "
        "Shares of steps per target kind; fraction sent: mean share of troops sent when not waiting; front steps: "
        "steps at which a bot could be attacked, with the share of them attacking a bot, the policy's mean probability "
        "there of a bot target (any bot), of the likeliest single bot (the one a greedy action could pick) and of waiting.\n\n"
        f"{choices_table(table)}\n"
    )
    write_text_atomic(out / "action_choices.md", text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small", choices=list(study.EVALUATION))
    parser.add_argument("--games", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--study", type=Path, default=None, help="the study folder of the runs (default results/multiscale)")
    out_option(parser, "results/multiscale/<preset>")
    args = parser.parse_args()
    if args.study is not None:
        study.RESULTS = args.study
    committed = f"results/multiscale/{args.preset}"
    action_choices(
        args.preset, args.games, args.workers, measuring_folder(args.out, f"action_choices-{args.preset}", committed)
    )


if __name__ == "__main__":
    main()
