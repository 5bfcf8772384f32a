"""Issue 35: how much of an answer's own reward reaches its PPO advantage on CountRecallEasy. Run from
``bench/memory_v2.py advantage-signal``, which names the output file.

On CountRecallEasy an answer changes only its own step's reward: +1/51 right, -1/51 wrong. PPO's actor learns from the
advantage, which with a long discount also holds the later answers' rewards and the critic's errors. This part trains
each method's settings from a study file (the same model ``rl_zoo3.train`` would build) and, after each rollout,
compares the advantages of right and wrong answers: ``gap``, the mean advantage of right answers minus wrong ones'
(the reward's own gap is 2/51 = 0.0392; ``kept`` is the share of it the advantages keep), ``adv_std``, their spread,
and ``corr``, the correlation of advantage and rightness (the share of the advantage's variance that is the answer's
own signal is its square). Resumable: the (study, method, seed) runs the CSV holds are skipped.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

ROOT = Path(__file__).resolve().parents[1]
#: What is measured: (memory_v2 study, its method); seed 0 of each, for :data:`STEPS` steps.
RUNS = (("tuned_count_recall", "tx_tuned"), ("count_recall_advantage", "tx_gamma0"), ("tuned_count_recall", "lstm_tuned"))
#: Steps per run: 4 of RecurrentPPO's rollouts (8 envs x 1,024 steps), 128 of TransformerPPO's (8 x 32).
STEPS = 32_768
#: The reward's own gap between a right and a wrong answer.
REWARD_GAP = 2 / 51
#: Where the runs' rl-zoo folders go (git ignores runs/).
WORK = ROOT / "runs" / "advantage_signal"


class AdvantageSignal(BaseCallback):
    """After each rollout (its advantages computed), one row: the rollout's end step, the share of right answers, the
    advantages' gap between right and wrong answers, its share of :data:`REWARD_GAP`, their spread and correlation."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = cast(OnPolicyAlgorithm, self.model).rollout_buffer
        right = np.asarray(buffer.rewards).ravel() > 0
        advantages = np.asarray(buffer.advantages).ravel()
        if right.all() or not right.any():  # no gap to measure
            return
        gap = float(advantages[right].mean() - advantages[~right].mean())
        self.rows.append({
            "timesteps": self.num_timesteps, "right": float(right.mean()), "gap": gap, "kept": gap / REWARD_GAP,
            "adv_std": float(advantages.std()), "corr": float(np.corrcoef(advantages, right)[0, 1]),
        })  # fmt: skip


def measure_run(study: str, method: str, seed: int, steps: int, folder: str) -> pd.DataFrame:
    """Train ``method`` of ``study`` (seed ``seed``) for ``steps`` steps in ``folder``; one row per rollout."""
    import torch
    from memory_v2_answers import run_model, study_run

    torch.set_num_threads(1)
    run = study_run(study, method, seed)
    zoo = run_model(run, Path(folder) / study / run.key)
    signal = AdvantageSignal()
    zoo.model.learn(steps, callback=signal)
    zoo.train_env.close()
    return pd.DataFrame(signal.rows).assign(study=study, method=method, seed=seed)


def advantage_signal(out: Path, runs: tuple[tuple[str, str], ...] = RUNS, steps: int = STEPS, workers: int = 1) -> None:
    """Measure each of ``runs`` (seed 0) not yet in ``out``, ``workers`` at a time, adding its rows as it finishes."""
    from memory_v2_answers import fill_rows

    keys = [(study, method, 0) for study, method in runs]
    fill_rows(out, keys, partial(measure_run, steps=steps, folder=str(WORK)), WORK, workers,
              lambda rows: f"{len(rows)} rollouts")  # fmt: skip


def signal_table(rows: pd.DataFrame, after: int = 0) -> pd.DataFrame:
    """One line per run: its rollouts that end after ``after`` steps (a critic learns in the first ones), the share of
    right answers, and the means over those rollouts of ``gap``, ``kept``, ``adv_std`` and ``corr``, and of ``corr``
    squared (the share of the advantages' variance that is the signal)."""
    rows = rows[rows["timesteps"] > after]
    rows = rows.assign(signal_share=rows["corr"] ** 2)
    columns = ["right", "gap", "kept", "adv_std", "corr", "signal_share"]
    table = rows.groupby(["study", "method", "seed"], sort=False)[columns].mean()
    return table.assign(rollouts=rows.groupby(["study", "method", "seed"], sort=False).size()).reset_index().round(4)
