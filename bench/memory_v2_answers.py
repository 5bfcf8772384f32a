"""Issue 35: what the greedy CountRecallEasy answers of TransformerPPO and RecurrentPPO get right and wrong. Run from
``bench/memory_v2.py count-answers``, which names the output file.

A policy that cannot count but knows how many cards have been dealt still beats random: the count of the queried colour
among the first ``t`` cards of a shuffled 26/26 deck is hypergeometric, and answering its mode is right often early in
an episode. That "clock" policy's expected return is :func:`clock_return` (-0.443; -0.405 when it also uses whether the
card just dealt is of the queried colour). So a greedy return between random (-0.926) and -0.405 does not show that a
policy counts. This part reruns a study's runs with the study runner's own code (checking each run's evaluations equal
the committed ones: the same run), keeps each trained model, plays fresh greedy episodes and records every answer
beside the true count and the clock's answer. Resumable: the (method, seed) pairs the CSV holds are skipped, and a kept
model is played again rather than retrained.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import as_completed
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sb3_masked_attention.io import write_text_atomic

if TYPE_CHECKING:
    from sb3_masked_attention.evaluation.study_spec import Run
    from sb3_masked_attention.zoo import ZooRun

ROOT = Path(__file__).resolve().parents[1]
#: The columns that name a measured run in this part's CSVs (and memory_v2_advantages.py's).
KEY = ("study", "method", "seed")

#: The study whose runs are replayed by default (tuned_count_recall: each method's searched settings), and the seeds.
STUDY = "tuned_count_recall"
SEEDS = (0, 1, 2)
#: Greedy episodes played per model, on env seeds no evaluation of the study used.
EPISODES = 100
EPISODE_SEED = 20_000
#: Where the reruns and their models are kept (git ignores runs/): a second call plays the kept models again.
WORK = ROOT / "runs" / "count_answers"
#: CountRecallEasy: one deck of 26 cards of each colour; 51 answers an episode, the k-th after k cards are dealt.
CARDS, PER_COLOUR, ANSWERS = 52, 26, 51


def clock_modes() -> np.ndarray:
    """``modes[t, same]``: the most likely count of the queried colour after ``t`` cards (1-51), given whether the card
    just dealt is of that colour (``same`` 1) or not (0); the lower count on a tie. The other ``t - 1`` cards are a
    uniform draw from the 51 left, which hold 25 (same) or 26 (not) of the colour."""
    from scipy.stats import hypergeom

    modes = np.zeros((ANSWERS + 1, 2), dtype=int)
    for t in range(1, ANSWERS + 1):
        counts = np.arange(PER_COLOUR + 1)
        modes[t, 0] = counts[np.argmax(hypergeom(CARDS - 1, PER_COLOUR, t - 1).pmf(counts))]
        modes[t, 1] = 1 + counts[np.argmax(hypergeom(CARDS - 1, PER_COLOUR - 1, t - 1).pmf(counts))]
    return modes


def clock_return(use_dealt: bool = True) -> float:
    """The expected return of answering the clock's mode at every step (+1/51 right, -1/51 wrong): with the card just
    dealt (``use_dealt``; it is of the queried colour with probability 1/2, the query deck being independent) or
    knowing ``t`` only."""
    from scipy.stats import hypergeom

    counts = np.arange(PER_COLOUR + 1)
    right = []
    for t in range(1, ANSWERS + 1):
        if use_dealt:
            same = hypergeom(CARDS - 1, PER_COLOUR - 1, t - 1).pmf(counts).max()
            other = hypergeom(CARDS - 1, PER_COLOUR, t - 1).pmf(counts).max()
            right.append((same + other) / 2)
        else:
            right.append(hypergeom(CARDS, PER_COLOUR, t).pmf(counts).max())
    return float(np.mean(2 * np.array(right) - 1))


def greedy_answers(model, env, n_episodes: int) -> pd.DataFrame:
    """Play ``n_episodes`` greedy episodes of ``model`` on a one-env VecEnv of CountRecallEasy (reset here) and count
    each (t, dealt_is_query, target, answer): ``t`` cards dealt, the true count ``target`` of the queried colour."""
    from sb3_masked_attention.episodes import play_episodes

    if env.num_envs != 1:
        raise ValueError(f"env.num_envs must be 1 (one episode at a time), got {env.num_envs}")
    rows: list[tuple[int, int, int, int]] = []

    def record(action: np.ndarray) -> None:  # before the step: the state the answer is scored against
        counts, query, dealt = (env.get_attr(name)[0] for name in ("counts", "query", "value"))
        rows.append((int(counts.sum()), int(dealt == query), int(counts[query]), int(action[0])))

    play_episodes(model, env, n_episodes, deterministic=True, on_action=record)
    answers = pd.DataFrame(rows, columns=["t", "dealt_is_query", "target", "answer"])
    return answers.value_counts().rename("n").reset_index().sort_values(["t", "dealt_is_query", "target", "answer"])


def replay(study: str, method: str, seed: int, folder: str) -> pd.DataFrame:
    """Rerun ``method``'s run ``seed`` of the memory_v2 study ``study`` into ``folder`` (or load the model a finished
    rerun kept) and count its greedy answers; ``same_run``: the rerun's evaluations equal the committed run's, step by
    step; ``rerun_final``, ``committed_final``: the two runs' last evaluations."""
    import torch

    from sb3_masked_attention.evaluation.study import execute_run, result_path

    torch.set_num_threads(1)
    run = study_run(study, method, seed)
    run_dir = Path(folder) / study / "runs" / run.key
    model_path = run_dir.with_suffix(".zip")  # beside the run folder, which execute_run empties when it starts
    if not (model_path.exists() and (run_dir / "result.csv").exists()):  # else a finished rerun: play its model
        rows = pd.DataFrame(execute_run(run, str(run_dir), model_path=str(model_path)))
        write_text_atomic(run_dir / "result.csv", rows.to_csv(index=False))
    rerun = pd.read_csv(run_dir / "result.csv")
    committed = pd.read_csv(result_path(ROOT / "results" / "memory_v2" / study, run))
    same_run = len(rerun) == len(committed) and np.array_equal(
        rerun[["timesteps", "score"]].to_numpy(), committed[["timesteps", "score"]].to_numpy()
    )
    zoo = run_model(run, run_dir / "zoo_eval")
    zoo.model.set_parameters(str(model_path), device="cpu")
    env = zoo.make_eval_env(1, seed=EPISODE_SEED + seed)
    answers = greedy_answers(zoo.model, env, EPISODES)
    env.close()
    zoo.train_env.close()
    finals = {"rerun_final": rerun["score"].iloc[-1], "committed_final": committed["score"].iloc[-1]}
    return answers.assign(study=study, method=method, seed=seed, same_run=same_run, **finals)


def study_file(study: str) -> Path:
    """The study file of the memory_v2 study ``study`` (its committed runs are in results/memory_v2/``study``)."""
    path = ROOT / "studies" / "memory_v2" / f"{study}.yml"
    if not path.is_file():
        raise ValueError(f"study={study!r} is invalid: expected the name of a study file in {path.parent}")
    return path


def study_run(study: str, method: str, seed: int) -> Run:
    """Run ``seed`` of ``method`` in the memory_v2 study ``study``."""
    from sb3_masked_attention.evaluation.study_spec import load_study

    return next(r for r in load_study(study_file(study)).runs if r.method.name == method and r.seed == seed)


def run_model(run: Run, folder: Path) -> ZooRun:
    """The model (and envs) ``run`` trains, as the study runner and ``rl_zoo3.train`` build it, logging to ``folder``."""
    from sb3_masked_attention.zoo import make_zoo_model

    return make_zoo_model(run.method.algo, run.env_id, folder, conf_file=run.method.conf_file,
                          hyperparams=run.method.hyperparams, env_kwargs=run.env_kwargs, seed=run.seed)  # fmt: skip


def fill_rows(
    out: Path,
    keys: list[tuple[str, str, int]],
    measure: Callable[..., pd.DataFrame],
    work: Path,
    workers: int,
    said: Callable[[pd.DataFrame], str] = lambda rows: f"{len(rows)} rows",
) -> None:
    """Measure each (study, method, seed) of ``keys`` that ``out`` does not hold yet, ``measure(study, method, seed)``
    in :func:`~sb3_masked_attention.evaluation.study.worker_pool` workers (which end with this process), adding its
    rows (which carry those three columns) to ``out`` atomically as each finishes; the others are said to be skipped.
    One writer: this holds ``work``'s folder lock, where the measurements keep their runs."""
    from sb3_masked_attention.evaluation.study import worker_pool
    from sb3_masked_attention.io import hold_folder_lock, read_rows

    hold_folder_lock(work, f"{work.name}'s work folder")
    done = read_rows(out)
    done_keys = set(done[list(KEY)].itertuples(index=False, name=None)) if len(done) else set()
    for key in (key for key in keys if key in done_keys):
        print(f"{' '.join(map(str, key))}: already in {out}, skipped", flush=True)
    with worker_pool(workers) as pool:
        futures = {pool.submit(measure, *key): key for key in keys if key not in done_keys}
        for future in as_completed(futures):
            rows = future.result()
            merged = pd.concat([read_rows(out), rows], ignore_index=True)
            write_text_atomic(out, merged.sort_values([*KEY, *rows.columns.difference(KEY, sort=False)]).to_csv(index=False))
            print(f"{' '.join(map(str, futures[future]))}: {said(rows)}", flush=True)


def count_answers(
    out: Path, study: str = STUDY, methods: tuple[str, ...] = (), seeds: tuple[int, ...] = SEEDS, workers: int = 2
) -> None:
    """Replay each (method, seed) of ``study`` (``methods``: all of its methods when empty) not yet in ``out``
    (``workers`` at a time, one torch thread each; the reruns and their models are kept in :data:`WORK`) and add its
    answer counts to ``out`` as each finishes."""
    from sb3_masked_attention.evaluation.study_spec import load_study

    names = list(dict.fromkeys(run.method.name for run in load_study(study_file(study)).runs))
    if unknown := sorted(set(methods) - set(names)):
        raise ValueError(f"methods {unknown} are not in study {study!r}: expected some of {names}")
    # seed by seed, so that each method's first seeds finish early (an LSTM run takes ten times a transformer's)
    keys = [(study, m, s) for s in seeds for m in methods or names]
    fill_rows(out, keys, partial(replay, folder=str(WORK)), WORK, workers,
              lambda rows: f"{rows['n'].sum()} answers (same run as committed: {bool(rows['same_run'].iloc[0])})")  # fmt: skip


def time_and_count(runs: pd.DataFrame) -> tuple[float, float]:
    """How far one model's answers (``runs``: its rows of answer counts) follow the time alone, and the count beyond it.

    Within each cell of the same ``t`` and ``dealt_is_query`` (all a clock knows): ``time_only`` is the share of
    answers equal to their cell's most common answer (1 for any policy that answers by the time alone), and
    ``count_given_time`` the correlation of answer and true count after each cell's means are taken out (0 for such a
    policy, 1 for one that answers the count); 0 where the answers do not vary within cells."""
    cells = runs.groupby(["t", "dealt_is_query"])
    common = cells.apply(lambda cell: cell.groupby("answer")["n"].sum().max(), include_groups=False).sum()
    weights = runs["n"].to_numpy(float)
    centred = {}
    for column in ("answer", "target"):
        means = cells.apply(lambda cell, c=column: np.average(cell[c], weights=cell["n"]), include_groups=False)
        centred[column] = runs[column].to_numpy(float) - means.loc[list(zip(runs["t"], runs["dealt_is_query"]))].to_numpy()
    spread = np.sqrt(np.average(centred["answer"] ** 2, weights=weights) * np.average(centred["target"] ** 2, weights=weights))
    together = np.average(centred["answer"] * centred["target"], weights=weights)
    return common / weights.sum(), float(together / spread) if spread > 1e-12 else 0.0


def answers_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One line per (study, method, seed): the rerun's and the committed run's last evaluations (10 episodes each), the greedy
    return on these episodes (2 x right - 1: 51 answers an episode), the
    share of answers right, within one of the count, and equal to the clock's mode; ``clock_right``: how often the
    clock's mode is right on the same steps; ``time_only`` and ``count_given_time`` (:func:`time_and_count`); and the
    share right in each third of the episode."""
    modes = clock_modes()[rows["t"], rows["dealt_is_query"]]
    rows = rows.assign(
        right=(rows["answer"] == rows["target"]) * rows["n"],
        within_1=((rows["answer"] - rows["target"]).abs() <= 1) * rows["n"],
        as_clock=(rows["answer"] == modes) * rows["n"],
        clock_right=(rows["target"] == modes) * rows["n"],
        third=pd.cut(rows["t"], [0, 17, 34, ANSWERS], labels=["t 1-17", "t 18-34", "t 35-51"]),
    )
    lines = []
    for (study, method, seed), runs in rows.groupby(["study", "method", "seed"], sort=False):
        total = runs["n"].sum()
        thirds = runs.groupby("third", observed=True)[["right", "n"]].sum()
        time_only, count_given_time = time_and_count(runs)
        lines.append({
            "study": study, "method": method, "seed": seed, "same_run": bool(runs["same_run"].all()),
            "rerun_final": runs["rerun_final"].iloc[0], "committed_final": runs["committed_final"].iloc[0], "answers": total,
            "return": 2 * runs["right"].sum() / total - 1, "right": runs["right"].sum() / total,
            "within_1": runs["within_1"].sum() / total, "as_clock": runs["as_clock"].sum() / total,
            "clock_right": runs["clock_right"].sum() / total, "time_only": time_only,
            "count_given_time": count_given_time,
            **{f"right {third}": thirds.loc[third, "right"] / thirds.loc[third, "n"] for third in thirds.index},
        })  # fmt: skip
    return pd.DataFrame(lines).round(3)
