"""Issue 35's pilots and factor studies, read into one markdown file (results/memory_v2/factors.md).

    python bench/memory_v2.py factors [--dir results/memory_v2] [--out results/memory_v2/factors.md]
    python bench/memory_v2.py lstm-gradients [--out results/memory_v2/lstm_gradients.csv]
    python bench/memory_v2.py pilot [--dir results/memory_v2] [--out results/memory_v2/pilot.md]
    python bench/memory_v2.py tuning [--dir results/memory_v2] [--search tuning_20k]   (DIR/SEARCH/trials.csv)
    python bench/memory_v2.py count-probe [--out results/memory_v2/count_probe.csv]
    python bench/memory_v2.py previous-probe [--out results/memory_v2/previous_probe.csv]
    python bench/memory_v2.py training-logs [--study pilot] [--method transformer_ppo] [--env CartPoleNoVel-v1]
    python bench/memory_v2.py count-answers [--study tuned_count_recall] [--method M]
        [--out results/memory_v2/count_answers.csv]
    python bench/memory_v2.py advantage-signal [--out results/memory_v2/advantage_signal.csv]

The measuring parts live beside this file: lstm-gradients, count-probe and previous-probe in ``memory_v2_probes.py``,
count-answers in ``memory_v2_answers.py``, advantage-signal in ``memory_v2_advantages.py``.

Each study folder under ``--dir`` that has a ``scores.csv`` (written by ``sb3ma study run``) becomes a table: per task
and method, the runs, the final evaluation's mean with a 95% percentile-bootstrap CI over seeds, the mean of the area
under the learning curve (:func:`~sb3_masked_attention.evaluation.inference.area_under_curve`), the mean training
wall-clock, every seed's final score, and the difference of final means to the study's reference method (its first
method) with a 95% bootstrap CI (seeds resampled within each method). Small pilots: read the CIs, not the means.
"""

from __future__ import annotations

import argparse
import sys
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside this script, however it is loaded
from folders import measuring_folder

from sb3_masked_attention.evaluation.scores import final_scores

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


def _rng(seed: int, *keys: str) -> np.random.Generator:
    """A bootstrap's own random stream for one (task, method, statistic): its interval does not move when another
    task or method gets a run, and every table computing it gets the same one."""
    return np.random.default_rng([seed, *(zlib.crc32(key.encode()) for key in keys)])


def _own_name(method: str) -> str:
    """A method's name in its own study: a reference row is labelled ``folder/method`` (:func:`with_reference`), and
    its final's interval is drawn from the stream of its own study's table, so both tables print the same one."""
    return method.rsplit("/", 1)[-1]


def study_table(scores: pd.DataFrame, seed: int = 0, order: list[str] | None = None) -> pd.DataFrame:
    """One row per task and method, in ``order`` (default: the scores'); the reference is the first method."""
    from sb3_masked_attention.evaluation.inference import area_under_curve

    order = [*(order or []), *(m for m in dict.fromkeys(scores["method"]) if m not in (order or []))]
    areas = area_under_curve(scores).set_index(["method", "env", "seed"])["score"]
    last = final_scores(scores)
    rows = []
    for env, group in last.groupby("env", sort=True):
        finals = {m: g.sort_values("seed")["score"].to_numpy(float) for m, g in group.groupby("method")}
        reference = next(m for m in order if m in finals)
        for method in (m for m in order if m in finals):
            values = finals[method]
            low, high = bootstrap_mean(values, _rng(seed, env, _own_name(method), "final"))
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
                d_low, d_high = bootstrap_difference(values, finals[reference], _rng(seed, env, method, reference))
                difference = round(values.mean() - finals[reference].mean(), 12)  # equal means print as +0, not +1e-16
                row[f"minus_{reference}"] = f"{difference:+.3g} [{d_low:+.3g}, {d_high:+.3g}]"
            rows.append(row)
    return pd.DataFrame(rows).fillna("")


#: The CSV tables appended to factors.md: file name -> (heading, what it holds and the command that made it).
CSV_SECTIONS = {
    "lstm_gradients.csv": (
        "LSTM gradients through time at initialisation",
        "Command: `python bench/memory_v2.py lstm-gradients`. Norm of d(sum of h_T)/d(x_0) for sb3-contrib's LSTM "
        "(width 256, RecurrentPPO's default) over a T-Maze episode (cue at step 0, junction at step `lag`), mean and "
        "max over 20 random initialisations, at PyTorch's forget-gate initialisation and at biases 1 and 2.",
    ),
    "count_probe.csv": (
        "CountRecall as supervised learning",
        "Command: `python bench/memory_v2.py count-probe`. Each model trained to answer POPGym CountRecall's count at "
        "every step (1,500 Adam updates of 64 episodes, lr 1e-3), scored on 1,000 fresh episodes: exact answers, over "
        "all steps and over the last 10, and the mean absolute error.",
    ),
    "previous_probe.csv": (
        "RepeatPrevious as supervised learning",
        "Command: `python bench/memory_v2.py previous-probe`. Each model trained to name the suit dealt 4 steps before "
        "on POPGym RepeatPreviousEasy's stream (Adam at lr 3e-4, TransformerPPO's default; batches of 64 episodes), "
        "scored on 1,000 fresh episodes (steps 4-50) after each number of updates; each seed's accuracy (chance 0.25). "
        "`transformer`: TransformerPPO's memory over the whole episode (rotary base 10,000); `_rotary100`: base 100; "
        "`_window16`: reading the last 16 steps only.",
    ),
    "count_answers.csv": (
        "CountRecallEasy: counting or keeping time?",
        "Commands: `python bench/memory_v2.py count-answers` (tuned_count_recall's runs) and `python bench/memory_v2.py "
        "count-answers --study count_recall_advantage --method tx_gamma0`; seeds 0-2 of each `study`'s method rerun "
        "with the study runner's code, keeping the models (`same_run`: the rerun's evaluations equal the committed "
        "run's), each then played for 100 fresh greedy episodes. A policy that only knows how many cards have been "
        "dealt (a clock) answers the count's most likely value: expected return -0.443, or -0.405 also using the card "
        "just dealt (random -0.926). "
        "`as_clock`: answers equal to that clock's; `clock_right`: how often the clock is right on the same steps. "
        "Within each cell of the same step and the same 'card just dealt is the queried colour' (all a clock knows): "
        "`time_only`, the share of answers equal to their cell's most common one (1 for any policy that answers by "
        "the time alone), and `count_given_time`, the correlation of answer and true count with each cell's means "
        "taken out (0 for such a policy, 1 for one that counts). The reruns ran on an AMD EPYC; the committed runs "
        "on an earlier session's machine, whose kind the runs do not record: a run drifts across CPUs after its first "
        "evaluations (`same_run` False; `rerun_final` and `committed_final` are the two runs' last evaluations; the "
        "runner itself reran tx_tuned seed 0 here to the same scores as this part).",
    ),
    "advantage_signal.csv": (
        "CountRecallEasy: how much of an answer's reward reaches its advantage",
        "Command: `python bench/memory_v2.py advantage-signal`. Each method's settings (seed 0) trained for 32,768 "
        "steps, and after each rollout the advantages of right and wrong answers compared (means over the rollouts "
        "that end in the second half, 16,384-32,768 steps, once the critics have learned: 64 of TransformerPPO's, 2 "
        "of RecurrentPPO's, whose rollouts are 8,192 steps; `advantage_signal.csv` has every rollout): "
        "`gap`, right answers' mean advantage minus wrong ones' (an answer changes only its own reward, whose gap is "
        "2/51 = 0.0392), `kept`, the share of that gap the advantages keep, `adv_std`, their spread, `corr`, the "
        "correlation of advantage and rightness, and `signal_share`, its square: the share of the advantages' variance "
        "that is the answer's own signal.",
    ),
}


def csv_sections(directory: Path) -> str:
    """The :data:`CSV_SECTIONS` whose file exists in ``directory``, each as a heading, its text and the table."""
    from sb3_masked_attention.evaluation.report import to_markdown

    tables = {name: pd.read_csv(directory / name) for name in CSV_SECTIONS if (directory / name).exists()}
    from memory_v2_advantages import STEPS, signal_table
    from memory_v2_answers import answers_table

    shapes: dict[str, Callable[[pd.DataFrame], pd.DataFrame]] = {
        "previous_probe.csv": previous_probe_table,
        "count_answers.csv": answers_table,
        "advantage_signal.csv": partial(signal_table, after=STEPS // 2),
    }
    return "".join(
        f"\n## {CSV_SECTIONS[name][0]}\n\n{CSV_SECTIONS[name][1]}\n\n"
        + to_markdown(shapes.get(name, lambda table: table)(table))
        + "\n"
        for name, table in tables.items()
    )


def previous_probe_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The lag probe's rows as one line per model: accuracy after each number of updates, every seed's (``a / b``)."""
    cells = rows.groupby(["model", "updates"], sort=False)["accuracy"].agg(lambda v: " / ".join(f"{x:.3g}" for x in v))
    table = cells.unstack("updates")
    table.columns = [f"after {updates}" for updates in table.columns]
    return table.reset_index()


def factors(directory: Path, out: Path) -> None:
    from sb3_masked_attention.evaluation.report import to_markdown
    from sb3_masked_attention.io import folder_in_use, write_text_atomic

    studies = {path.parent: pd.read_csv(path) for path in sorted(directory.glob("*/scores.csv"))}  # the pilot too
    for study in [study for study in studies if folder_in_use(study)]:  # its table would change under it
        print(f"{study.name}: a runner is writing it: left out until it has finished", flush=True)
        del studies[study]
    sections = []
    for study, scores in studies.items():
        if study.name == "pilot":
            continue
        spec = study / "study.yml"
        order = list(yaml.safe_load(spec.read_text())["methods"]) if spec.exists() else None  # the study file's order
        scores, order, note = with_reference(studies, study, scores, order)
        sections.append(
            f"## {study.name}\n\nStudy file `studies/memory_v2/{study.name}.yml` (its header says what each method "
            f"changes); command: `sb3ma study run studies/memory_v2/{study.name}.yml --dir "
            f"{study.relative_to(ROOT)}`.{note}\n\n" + to_markdown(study_table(scores, order=order)) + "\n"
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
        "exist.\n\n"
        + "\n".join(sections)
        + fall_back_section(studies)
        + against_entries(directory, studies)
        + csv_sections(directory)
        + training_log_sections(directory)
    )
    write_text_atomic(out, text)
    print(f"wrote {out}")


#: One-factor studies whose reference runs are another study's: study folder -> (that folder, its method). Every
#: CountRecallEasy factor is measured against its method's searched settings (TransformerPPO's but one), until round 13
#: measured one on top of the gamma-0 entry.
REFERENCES = {
    **{
        f"count_recall_{factor}": ("tuned_count_recall", "tx_tuned")
        for factor in (
            "factors",
            "step_size",
            "positions",
            "discount",
            "entropy",
            "critic",
            "epochs",
            "inputs",
            "time",
            "advantage",
            "lambda",
            "rollout",
        )
    },
    "count_recall_lstm_gamma0": ("tuned_count_recall", "lstm_tuned"),
    # Round 13 measures a factor on top of the gamma-0 entry, so against the runs of that entry's settings.
    "count_recall_return_norm": ("count_recall_advantage", "tx_gamma0"),
}


def with_reference(
    studies: dict[Path, pd.DataFrame], study: Path, scores: pd.DataFrame, order: list[str] | None
) -> tuple[pd.DataFrame, list[str] | None, str]:
    """``study``'s scores with its :data:`REFERENCES` method's rows (from ``studies``, the folders' scores already
    read) put first, named ``folder/method``, the table's order and a sentence saying so; unchanged, with no sentence,
    when it has none or ``studies`` lacks that folder."""
    folder, method = REFERENCES.get(study.name, ("", ""))
    reference = studies.get(study.parent / folder) if folder else None
    if reference is None:
        return scores, order, ""
    label = f"{folder}/{method}"
    theirs = reference[reference["method"] == method].assign(method=label)
    theirs = theirs[theirs["env"].isin(set(scores["env"]))]
    order = [label, *(order if order is not None else scores["method"].unique())]
    note = f" The first row, the reference: `{method}` of `{folder}/` (the same seeds, budget and evaluations)."
    return pd.concat([theirs, scores], ignore_index=True), order, note


#: Searched settings run against the pilot's entries on the same task: study folder -> its method -> the pilot's
#: method whose entry it may replace (the study files' adoption rules compare the two finals).
AGAINST_ENTRIES = {"tuned_count_recall": {"tx_tuned": "transformer_ppo", "lstm_tuned": "recurrent_ppo"}}


def against_entries(directory: Path, studies: dict[Path, pd.DataFrame]) -> str:
    """A table per :data:`AGAINST_ENTRIES` folder in ``studies``: each searched method beside the pilot's runs of the
    entry it may replace (:func:`pilot_scores`, the same task; the archived runs, :data:`REPLACED_ENTRIES`, once the
    entry was replaced), with the difference to that entry's final mean."""
    from sb3_masked_attention.evaluation.report import to_markdown

    if not (directory / "pilot" / "scores.csv").exists():
        return ""
    pilot, _ = pilot_scores(directory)
    sections = []
    for folder, names in AGAINST_ENTRIES.items():
        scores = studies.get(directory / folder)
        if scores is None:
            continue
        tables = []
        for method, entry in names.items():
            mine = scores[scores["method"] == method]
            if mine.empty:
                continue
            label = f"{entry}_pilot"
            envs = set(mine["env"])
            replaced = archived(directory, REPLACED_ENTRIES.get(entry, ()), label)
            replaced = replaced[replaced["env"].isin(envs)]
            theirs = pilot[(pilot["method"] == entry) & pilot["env"].isin(envs - set(replaced["env"]))].assign(method=label)
            theirs = pd.concat([frame for frame in (theirs, replaced) if len(frame)], ignore_index=True)
            table = study_table(pd.concat([theirs, mine], ignore_index=True), order=[label, method])
            tables.append(table.rename(columns={f"minus_{label}": "minus_the_pilot_entry"}))
        sections.append(
            f"\n## {folder} against the pilot's entries\n\nEach searched method beside the pilot's runs of the entry it "
            "may replace (`_pilot`: the same seeds, budget and evaluations); the last column: its final mean minus the "
            "entry's, with a 95% bootstrap CI (the study file's adoption rule reads it).\n\n"
            + to_markdown(pd.concat(tables, ignore_index=True).fillna(""))
            + "\n"
        )
    return "".join(sections)


#: Fall-backs after solving: a POPGym task, the level at which a run counts as having solved it, and the level below
#: which a later evaluation counts as fallen back (optimal 1, random -0.5).
FALL_BACK = ("sb3ma/popgym-RepeatFirstEasy-v0", 0.95, 0.9)


def fall_back_table(scores: pd.DataFrame, solved: float, level: float) -> pd.DataFrame:
    """Per method: how steady its runs stay once solved. For each run, the evaluations after its first at ``solved`` or
    more; per method, the runs that got there (k/n), those evaluations' count, the share below ``level``, and the runs
    with at least one below it."""
    rows = []
    for method, frame in scores.groupby("method", sort=False):
        after, fell, reached = [], 0, 0
        for _, run in frame.sort_values("timesteps").groupby("seed"):
            hits = (run["score"] >= solved).to_numpy().nonzero()[0]
            if len(hits):
                reached += 1
                later = run["score"].iloc[hits[0] + 1 :]
                after.append(later)
                fell += int((later < level).any())
        later_scores = pd.concat(after) if after else pd.Series(dtype=float)
        rows.append({"method": method, "solved": f"{reached}/{frame['seed'].nunique()}",
                     "evaluations_after": len(later_scores),
                     "share_below": round(float((later_scores < level).mean()), 3) if len(later_scores) else "",
                     "runs_that_fell": f"{fell}/{reached}"})  # fmt: skip
    return pd.DataFrame(rows)


def fall_back_section(studies: dict[Path, pd.DataFrame]) -> str:
    """:func:`fall_back_table` for every study folder -> scores in ``studies`` with runs on :data:`FALL_BACK`'s task."""
    from sb3_masked_attention.evaluation.report import to_markdown

    env, solved, level = FALL_BACK
    frames = []
    for study, scores in studies.items():
        scores = scores[scores["env"] == env]
        if len(scores):
            frames.append(fall_back_table(scores, solved, level).assign(study=study.name))
    if not frames:
        return ""
    table = pd.concat(frames, ignore_index=True)
    return (
        f"\n## Fall-backs after solving {env}\n\nPer run, every evaluation after its first at {solved} or more "
        f"(solved: the runs that got there); share_below: of those evaluations, the share below {level}; runs_that_fell: "
        "the solved runs with at least one. A steady method has few. The final evaluation alone (the tables above) "
        "can miss or catch a fall-back by its timing.\n\n" + to_markdown(table[["study", *table.columns.drop("study")]]) + "\n"
    )


#: The training scalars summarised from each training_logs_*.csv, and the width of the step bins they are averaged in.
SUMMARY_TAGS = ("rollout/ep_rew_mean", "train/approx_kl", "train/clip_fraction", "train/entropy_loss",
                "train/explained_variance")  # fmt: skip
SUMMARY_BIN = 25_000


def training_log_summary(logs: pd.DataFrame) -> pd.DataFrame:
    """One row per tag of :data:`SUMMARY_TAGS`: its mean over seeds and updates in each :data:`SUMMARY_BIN` of steps
    (``0-25k`` holds steps below 25,000), and the range of the seeds' own means in that bin (``mean (low-high)``)."""
    logs = logs[logs["tag"].isin(SUMMARY_TAGS)].assign(bin=lambda d: d["step"] // SUMMARY_BIN)
    per_seed = logs.groupby(["tag", "bin", "seed"])["value"].mean()
    cells = per_seed.groupby(["tag", "bin"]).agg(lambda v: f"{v.mean():.3g} ({v.min():.3g} to {v.max():.3g})")
    table = cells.unstack("bin").reindex([tag for tag in SUMMARY_TAGS if tag in set(logs["tag"])])
    table.columns = [f"{b * SUMMARY_BIN // 1000}-{(b + 1) * SUMMARY_BIN // 1000}k" for b in table.columns]
    return table.rename_axis("tag").reset_index()


def training_log_sections(directory: Path) -> str:
    """A section per ``training_logs_*.csv`` in ``directory`` (:func:`training_logs`): :func:`training_log_summary`."""
    from sb3_masked_attention.evaluation.report import to_markdown

    sections = []
    for path in sorted(directory.glob("training_logs_*.csv")):
        logs = pd.read_csv(path)
        method, env = logs["method"].iloc[0], logs["env"].iloc[0]
        study = path.stem.removeprefix("training_logs_").removesuffix(f"_{method}_{env.replace('/', '-')}")
        option = "" if study == "pilot" else f"--study {study} "
        sections.append(
            f"\n## Training logs: {method} on {env}\n\n`{path.name}` (`python bench/memory_v2.py training-logs "
            f"{option}--method {method} --env {env}`), {logs['seed'].nunique()} seeds: SB3's scalars averaged over each "
            f"seed's updates in bins of {SUMMARY_BIN:,} steps, then over seeds (in brackets: the lowest and highest "
            "seed's). entropy_loss is minus the entropy.\n\n" + to_markdown(training_log_summary(logs)) + "\n"
        )
    return "".join(sections)


def _reached(runs: pd.DataFrame, level: float) -> tuple[list[float], list[float], int]:
    """Per seed of ``runs`` (one method, one task), the steps and training seconds of its first evaluation at or above
    ``level``, for the seeds that got there; and the number of seeds."""
    steps, seconds = [], []
    for _, run in runs.sort_values("timesteps").groupby("seed"):
        reached = run[run["score"] >= level]
        if not reached.empty:
            steps.append(float(reached["timesteps"].iloc[0]))
            seconds.append(float(reached["wall_seconds"].iloc[0]))
    return steps, seconds, int(runs["seed"].nunique())


def _median_of(values: list[float], n: int, unit: str = "") -> str:
    """The median of ``values`` (the seeds that got there) with k/n, or "never (0/n)"."""
    return f"{np.median(values):.0f}{unit} ({len(values)}/{n})" if values else f"never (0/{n})"


def targets_table(
    scores: pd.DataFrame, method: str = "transformer_ppo", reference: str = "recurrent_ppo", seeds: int = 5, seed: int = 0
) -> pd.DataFrame:
    """Issue 35's two targets per task, once both methods have all ``seeds`` runs ("open" before): ``method``'s final
    mean minus ``reference``'s with a 95% bootstrap CI (met: the CI's low end >= 0), and the median training wall-clock
    to ``reference``'s final mean level (met: every seed of ``method`` got there, in no more median time)."""
    last = final_scores(scores)
    rows = []
    for env, group in last.groupby("env", sort=True):
        finals = {m: g.sort_values("seed")["score"].to_numpy(float) for m, g in group.groupby("method")}
        if method not in finals or reference not in finals:
            continue
        complete = len(finals[method]) == len(finals[reference]) == seeds
        low, high = bootstrap_difference(finals[method], finals[reference], _rng(seed, env, method, reference))
        difference = finals[method].mean() - finals[reference].mean()
        curves = scores[scores["env"] == env]
        level = float(finals[reference].mean())
        _, mine, n_mine = _reached(curves[curves["method"] == method], level)
        _, theirs, _ = _reached(curves[curves["method"] == reference], level)
        faster = len(mine) == n_mine and bool(theirs) and float(np.median(mine)) <= float(np.median(theirs))
        rows.append({
            "task": env, "runs": f"{len(finals[method])} / {len(finals[reference])}",
            f"final_{method}_minus_{reference}": f"{difference:+.3g} [{low:+.3g}, {high:+.3g}]",
            "final_target": ("met" if low >= 0 else "missed") if complete else "open",
            "wall_clock_to_level": (f"{np.median(mine):.0f} s" if mine else "never") + f" ({len(mine)}/{n_mine}) vs "
            + (f"{np.median(theirs):.0f} s" if theirs else "never"),
            "wall_clock_target": ("met" if faster else "missed") if complete else "open",
        })  # fmt: skip
    return pd.DataFrame(rows)


#: Issue 35's third target: the `default` entry learns on a POPGym task it was not tuned on when its final mean's 95%
#: CI lies above random by at least this share of the random-to-optimal range. Stated after the pilot's runs (the
#: issue leaves the margin to us; no earlier note fixed one), so read it as a description, not a test set beforehand.
LEARNS_MARGIN = 0.25


def learns_table(scores: pd.DataFrame, method: str = "transformer_ppo", seed: int = 0) -> pd.DataFrame:
    """Per POPGym task (their envs state ``random_return`` and ``optimal_return``): ``method``'s final mean
    with its 95% bootstrap CI, on the task's scale and as a share of the random-to-optimal range, and whether the CI's
    low end clears :data:`LEARNS_MARGIN`."""
    from sb3_masked_attention.environments import register_envs, return_bounds

    register_envs()
    last = final_scores(scores[scores["method"] == method])
    rows = []
    for env, group in last.groupby("env", sort=True):
        bounds = return_bounds(env) if env.startswith("sb3ma/popgym-") else None
        if bounds is None:
            continue
        random, optimal = bounds
        finals = group.sort_values("seed")["score"].to_numpy(float)  # seed order: the interval depends on no other row
        low, high = bootstrap_mean(finals, _rng(seed, env, method, "learns"))

        def share(value: float, random: float = random, optimal: float = optimal) -> float:
            return (value - random) / (optimal - random)

        rows.append({
            "task": env, "random": f"{random:.3g}",
            "optimal": f"{optimal:.3g}", "final": f"{finals.mean():.3g} [{low:.3g}, {high:.3g}]",
            "share_of_range": f"{share(finals.mean()):.2f} [{share(low):.2f}, {share(high):.2f}]",
            "learns": "yes" if share(low) >= LEARNS_MARGIN else "no",
        })  # fmt: skip
    return pd.DataFrame(rows)


def reach_table(scores: pd.DataFrame, reference: str = "recurrent_ppo") -> pd.DataFrame:
    """Per task and method: when each seed first evaluated at or above the ``reference`` method's final mean on that
    task, in environment steps and in training wall-clock (median over the seeds that did, with k/n)."""
    last = final_scores(scores)
    rows = []
    for env, group in scores.groupby("env", sort=True):
        finals = last[(last["env"] == env) & (last["method"] == reference)]["score"]
        if finals.empty:
            continue
        level = float(finals.mean())
        for method, runs in group.groupby("method", sort=False):
            steps, seconds, n = _reached(runs, level)
            rows.append({
                "task": env, "method": method, f"{reference}_final": f"{level:.3g}",
                "steps_to_it": _median_of(steps, n), "train_s_to_it": _median_of(seconds, n),
            })  # fmt: skip
    return pd.DataFrame(rows)


#: The pilot's study folders: ``pilot/`` and those that add tasks with the same methods, entries, seeds and endpoints
#: (``pilot_autoencode/``: the one registered POPGym task pilot.yml left out).
PILOT_STUDIES = ("pilot", "pilot_autoencode")


def pilot_scores(directory: Path) -> tuple[pd.DataFrame, list[Path]]:
    """The pilot's scores: every :data:`PILOT_STUDIES` folder's ``scores.csv`` in ``directory`` that exists (the first
    must), one table; and the files read."""
    paths = [directory / study / "scores.csv" for study in PILOT_STUDIES]
    paths = [path for index, path in enumerate(paths) if index == 0 or path.exists()]
    return pd.concat([pd.read_csv(path) for path in paths], ignore_index=True), paths


def pilot_report(directory: Path, out: Path) -> None:
    """The memory_v2 pilot's per-task tables: finals and differences to TransformerPPO (:func:`study_table`), and
    how fast each method reached RecurrentPPO's final level, in steps and in wall-clock (:func:`reach_table`)."""
    from sb3_masked_attention.evaluation.report import to_markdown
    from sb3_masked_attention.io import write_text_atomic

    path = directory / "pilot" / "scores.csv"
    if not path.exists():
        print(f"{path} does not exist: run `sb3ma study run studies/memory_v2/pilot.yml --dir {path.parent}` first")
        return
    scores, paths = pilot_scores(directory)
    runs = scores.groupby(["method", "env", "seed"]).ngroups
    read = "`, `".join(str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p) for p in paths)
    studies = "`, `".join(f"studies/memory_v2/{p.parent.name}.yml" for p in paths)
    text = (
        "# memory_v2 pilot\n\nWritten by `python bench/memory_v2.py pilot` from "
        f"`{read}` ({runs} runs; the study file{'s' if len(paths) > 1 else ''} `{studies}` state"
        f"{'' if len(paths) > 1 else 's'} the endpoints). Final: the last evaluation's mean return over seeds "
        "with a 95% percentile-bootstrap CI; the last column: the method's final mean minus RecurrentPPO's (the issue's "
        "first target: TransformerPPO's difference with its CI not below 0), with a 95% bootstrap CI.\n\n"
        + to_markdown(study_table(scores, order=["recurrent_ppo", "transformer_ppo", "mlp_framestack"]))
        + "\n\n## The issue's targets, per task\n\n"
        "TransformerPPO's final mean minus RecurrentPPO's with a 95% bootstrap CI (met: not below 0), and the median "
        "training wall-clock to RecurrentPPO's final mean level (met: every TransformerPPO seed got there, in no more "
        'median time; wall-clock under a shared machine, see below). "open" until both methods have their 5 seeds.\n\n'
        + to_markdown(targets_table(scores))
        + "\n\n## Reaching RecurrentPPO's final level\n\n"
        "Per seed, the first evaluation at or above RecurrentPPO's final mean on the task: environment steps and "
        "training wall-clock (evaluations excluded; up to three runs shared the two cores, so wall-clock compares "
        "methods that ran side by side, not absolute speed); median over the seeds that got there, with k/n.\n\n"
        + to_markdown(reach_table(scores))
        + "\n\n## Does the `default` entry learn?\n\n"
        f"The `default` entry's final mean on each POPGym task with its 95% bootstrap CI, on the task's scale and as a "
        f"share of the range from random (0) to optimal (1); 'learns': the CI's low end at {LEARNS_MARGIN} or more (a "
        "margin stated after these runs). AutoencodeEasy: pilot_autoencode's (the `default` entry with a memory of 128 "
        "steps, to hold the episode's 103); CountRecallEasy, RepeatFirstEasy and RepeatPreviousEasy: the runs made "
        f"before those tasks got entries of their own (`{'`, `'.join(TX_DEFAULT_ENTRY)}`). "
        "StatelessCartPoleEasy runs CartPoleNoVel's entry, and RepeatPreviousEasy is where the default's "
        "initialisation was chosen, so neither counts as a task the default was not tuned on.\n\n"
        + to_markdown(learns_table(default_entry_scores(directory, scores)))
        + "\n"
        + against_gru(directory, scores)
        + more_seeds(directory, scores)
        + equal_time(directory, scores)
        + before_init_change(directory, scores)
    )
    write_text_atomic(out, text)
    print(text)


def default_entry_scores(directory: Path, scores: pd.DataFrame) -> pd.DataFrame:
    """The pilot's scores with TransformerPPO's rows on each task that later got a tuned entry replaced by the
    `default` entry's archived runs there (:data:`TX_DEFAULT_ENTRY`)."""
    default = archived(directory, TX_DEFAULT_ENTRY, "transformer_ppo")
    replaced = (scores["method"] == "transformer_ppo") & scores["env"].isin(set(default["env"]))
    return pd.concat([frame for frame in (scores[~replaced], default) if len(frame)], ignore_index=True)


def against_gru(directory: Path, scores: pd.DataFrame) -> str:
    """A section with TransformerPPO's differences to RecurrentPPO with a GRU (``pilot_gru/``, the card tasks) beside
    the LSTM's, when that study's scores are in ``directory``."""
    from sb3_masked_attention.evaluation.report import to_markdown

    path = directory / "pilot_gru" / "scores.csv"
    if not path.exists():
        return ""
    gru = pd.read_csv(path)
    untuned = archived(directory, LSTM_DEFAULT_ENTRY, "recurrent_ppo_untuned")
    both = pd.concat([frame for frame in (gru, scores[scores["env"].isin(set(gru["env"]))], untuned) if len(frame)])
    order = ["recurrent_ppo_gru", "transformer_ppo", "recurrent_ppo", "recurrent_ppo_untuned", "mlp_framestack"]
    return (
        "\n## Against RecurrentPPO with a GRU\n\n"
        f"`recurrent_ppo_gru` (`{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}`: MultiInputGruPolicy, "
        "5 seeds) ran the LSTM's untuned card-task entry (CartPoleNoVel's settings), with which the LSTM stayed near "
        "random on RepeatFirstEasy. `recurrent_ppo`: the LSTM's entries now (tuned on RepeatFirstEasy and "
        "CountRecallEasy); `recurrent_ppo_untuned`: its pilot runs of the untuned entry on those two tasks ("
        f"`{'`, `'.join(LSTM_DEFAULT_ENTRY)}`). Each method's final mean minus the GRU's, with a 95% bootstrap CI.\n\n"
        + to_markdown(study_table(both, order=order))
        + "\n"
    )


#: Runs of the pilot's entries on seeds the pilot did not use: study folder -> its method names -> the pilot's.
MORE_SEEDS = {"repeat_first_fresh_seeds": {"tx_tuned": "transformer_ppo", "lstm_tuned": "recurrent_ppo"}}


def more_seeds(directory: Path, scores: pd.DataFrame) -> str:
    """A section per :data:`MORE_SEEDS` folder in ``directory``: the pilot's comparison on those seeds alone, then
    pooled with the pilot's own seeds (the same entries, so the same settings)."""
    from sb3_masked_attention.evaluation.report import to_markdown

    sections = []
    for folder, names in MORE_SEEDS.items():
        path = directory / folder / "scores.csv"
        if not path.exists():
            continue
        extra = pd.read_csv(path)
        extra = extra[extra["method"].isin(set(names))]
        extra = extra.assign(method=extra["method"].map(names))
        pilot = scores[scores["env"].isin(set(extra["env"])) & scores["method"].isin(set(names.values()))]
        order = ["recurrent_ppo", "transformer_ppo"]
        seeds = " ".join(str(seed) for seed in sorted(set(extra["seed"])))
        sections.append(
            f"\n## The same entries on more seeds ({folder})\n\n"
            f"`{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}` ran the pilot's entries on seeds "
            f"{seeds}, which the pilot did not use. First those seeds alone, then pooled with the pilot's; the last "
            "column as in the first table (TransformerPPO's final mean minus RecurrentPPO's).\n\n"
            + to_markdown(study_table(extra, order=order))
            + "\n\nPooled with the pilot's seeds:\n\n"
            + to_markdown(study_table(pd.concat([pilot, extra], ignore_index=True), order=order))
            + "\n"
        )
    return "".join(sections)


#: Longer runs of one pilot entry, sized to another method's pilot training time: study folder -> (its method, the
#: pilot's method whose final level and training time it is measured against).
EQUAL_TIME = {"count_recall_equal_time": ("transformer_ppo", "recurrent_ppo")}


def equal_time_table(long: pd.DataFrame, pilot: pd.DataFrame, method: str, reference: str, seed: int = 0) -> pd.DataFrame:
    """Per task of ``long`` (``method``'s longer runs): the steps and training seconds each seed took to first evaluate
    at ``reference``'s final mean level in ``pilot`` (median over the seeds that did, with k/n), those steps at the
    pilot's seconds per step of ``method`` on the task (the pilot's conditions: the machine as shared then), the
    ``reference``'s pilot seconds to the same level, and the longer runs' final mean with a 95% bootstrap CI and its
    difference to ``reference``'s pilot final mean (seeds resampled within each)."""
    last = final_scores(pilot)
    rows = []
    for env, runs in long[long["method"] == method].groupby("env", sort=True):
        theirs = last[(last["env"] == env) & (last["method"] == reference)]["score"]
        mine = last[(last["env"] == env) & (last["method"] == method)]
        if theirs.empty or mine.empty:
            continue
        level = float(theirs.mean())
        steps, seconds, n = _reached(runs, level)
        _, their_seconds, n_theirs = _reached(pilot[(pilot["env"] == env) & (pilot["method"] == reference)], level)
        per_step = float((mine["wall_seconds"] / mine["timesteps"]).mean())
        finals = final_scores(runs).sort_values("seed")
        # the stream study_table draws for the same runs (factors.md): both files print one interval
        low, high = bootstrap_mean(finals["score"].to_numpy(float), _rng(seed, env, method, "final"))
        d_low, d_high = bootstrap_difference(
            finals["score"].to_numpy(float), theirs.to_numpy(float), _rng(seed, env, method, reference, "equal_time")
        )
        rows.append({
            "task": env, "method": method, "steps": int(finals["timesteps"].max()),
            f"{reference}_final": f"{level:.3g}", "steps_to_it": _median_of(steps, n),
            "train_s_to_it": _median_of(seconds, n, " s"),
            "at_pilot_speed": _median_of([step * per_step for step in steps], n, " s"),
            f"{reference}_train_s_to_it": _median_of(their_seconds, n_theirs, " s"),
            "final": f"{finals['score'].mean():.3g} [{low:.3g}, {high:.3g}]",
            "per_seed": " ".join(f"{v:.3g}" for v in finals["score"]),
            f"minus_{reference}_final": f"{finals['score'].mean() - level:+.3g} [{d_low:+.3g}, {d_high:+.3g}]",
        })  # fmt: skip
    return pd.DataFrame(rows)


def equal_time(directory: Path, scores: pd.DataFrame) -> str:
    """A section per :data:`EQUAL_TIME` folder in ``directory`` (:func:`equal_time_table` against the pilot's
    ``scores``)."""
    from sb3_masked_attention.evaluation.report import to_markdown

    sections = []
    for folder, (method, reference) in EQUAL_TIME.items():
        path = directory / folder / "scores.csv"
        if not path.exists():
            continue
        table = equal_time_table(pd.read_csv(path), scores, method, reference)
        sections.append(
            f"\n## {method} at {reference}'s training time ({folder})\n\n"
            f"`{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}` ran the pilot's `{method}` entry, "
            f"unchanged, for the steps that fit in `{reference}`'s pilot training time (`studies/memory_v2/{folder}.yml`"
            " states why and the endpoints). Per seed, the first evaluation at or above the pilot's "
            f"`{reference}` final mean: in steps, in training seconds as measured here (up to two runs on the two cores) "
            f"and as those steps at `{method}`'s pilot seconds per step on the task (the pilot's conditions: up to "
            f"three runs on the two cores), beside `{reference}`'s pilot seconds to the same level; medians over the "
            f"seeds that got there, with k/n. The last column: the longer runs' final mean minus `{reference}`'s pilot "
            "final mean (both at about the same training time when the steps were sized so), with a 95% bootstrap CI. "
            "A supplement: the pilot's targets above stay decided at its budgets.\n\n" + to_markdown(table) + "\n"
        )
    return "".join(sections)


#: The pilot's TransformerPPO rows from before TransformerMemoryPolicy kept PyTorch's initialisation (ortho_init=True,
#: SB3's default), taken out of pilot/ when it reran them (commit 080b563); the CartPoleNoVel entry's runs with
#: PyTorch's initialisation (the entry then went back to SB3's, and its first rows back into pilot/); and
#: the `default` entry's runs on the tasks that later got tuned entries, taken out of pilot/ then.
BEFORE_INIT_CHANGE = "pilot_tx_ortho_init.csv"
CARTPOLE_PYTORCH_INIT = "pilot_tx_cartpole_pytorch_init.csv"
TX_DEFAULT_ENTRY = (
    "pilot_tx_repeat_first_default.csv",
    "pilot_tx_repeat_previous_default.csv",
    "pilot_tx_count_recall_default.csv",
)
#: RecurrentPPO's runs of its untuned entry (CartPoleNoVel's settings) on RepeatFirstEasy and CountRecallEasy, taken
#: out of pilot/ when those tasks got tuned entries.
LSTM_DEFAULT_ENTRY = ("pilot_lstm_repeat_first_default.csv", "pilot_lstm_count_recall_default.csv")
#: Each pilot method's archived rows of entries since replaced (the runs the pilot made before the change).
REPLACED_ENTRIES = {"transformer_ppo": TX_DEFAULT_ENTRY, "recurrent_ppo": LSTM_DEFAULT_ENTRY}


def archived(directory: Path, names: tuple[str, ...] | str, method: str) -> pd.DataFrame:
    """The archived pilot rows in ``names`` (those that exist in ``directory``) under the method name ``method``."""
    names = (names,) if isinstance(names, str) else names
    frames = [pd.read_csv(directory / name).assign(method=method) for name in names if (directory / name).exists()]
    return pd.concat(frames) if frames else pd.DataFrame(columns=["method", "env", "seed", "timesteps", "score"])


def before_init_change(directory: Path, scores: pd.DataFrame) -> str:
    """A section comparing the pilot's TransformerPPO with its runs at the other initialisation (all against
    RecurrentPPO), when :data:`BEFORE_INIT_CHANGE` is in ``directory``."""
    from sb3_masked_attention.evaluation.report import to_markdown

    path = directory / BEFORE_INIT_CHANGE
    if not path.exists():
        return ""
    sb3_init = archived(directory, BEFORE_INIT_CHANGE, "sb3_init")
    both = [
        scores[scores["method"].isin(["recurrent_ppo", "transformer_ppo"]) & scores["env"].isin(set(sb3_init["env"]))],
        sb3_init,
        archived(directory, (CARTPOLE_PYTORCH_INIT, *TX_DEFAULT_ENTRY), "pytorch_init"),
    ]
    return (
        "\n## TransformerPPO at SB3's and at PyTorch's initialisation\n\n"
        "`transformer_ppo`: the entries as they are now: CountRecallEasy's, RepeatFirstEasy's and RepeatPreviousEasy's "
        "(tuned) with PyTorch's initialisation (`ortho_init=False`), CartPoleNoVel's, "
        "StatelessCartPoleEasy's and PendulumNoVel's with SB3's (`ortho_init=True`, with which they were tuned: their "
        "rows are the runs made before commit 080b563 made PyTorch's the policy's default). `sb3_init`: every pilot run "
        f"before that change, all with the `default` entry on the card tasks (`{BEFORE_INIT_CHANGE}`; CountRecallEasy's "
        "seed 4 started one minute after the change, and which initialisation it ran is not recorded: it is not in the "
        "file). `pytorch_init`: the same entries with PyTorch's initialisation where `transformer_ppo` has SB3's or a "
        f"tuned entry: CartPoleNoVel's (`{CARTPOLE_PYTORCH_INIT}`, the four seeds run before the entry went back to "
        f"SB3's) and the `default` entry on the card tasks (`{'`, `'.join(TX_DEFAULT_ENTRY)}`, before they got tuned "
        "ones)."
        "\n\n"
        + to_markdown(
            study_table(
                pd.concat([f for f in both if len(f)]), order=["recurrent_ppo", "transformer_ppo", "sb3_init", "pytorch_init"]
            )
        )
        + "\n"
    )


def tuning_trials(directory: Path, search: str = "tuning") -> None:
    """Every trial of the equal-budget search (``bench/memory_v2_tune.sh``) as rows: study, number, state, objective
    (rl-zoo's: the mean evaluation return), duration and the sampled parameters; written to ``tuning/trials.csv``."""
    import optuna

    from sb3_masked_attention.io import write_text_atomic

    database = directory / search / "optuna.db"
    if not database.exists():
        print(f"{database} does not exist: run `bash bench/memory_v2_tune.sh` first")
        return
    storage = f"sqlite:///{database}"
    rows = []
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        for trial in study.trials:
            start, end = trial.datetime_start, trial.datetime_complete
            seconds = (end - start).total_seconds() if start is not None and end is not None else None
            rows.append({"study": summary.study_name, "trial": trial.number, "state": trial.state.name,
                         "value": trial.value, "seconds": seconds, **trial.params})  # fmt: skip
    table = pd.DataFrame(rows)
    write_text_atomic(directory / search / "trials.csv", table.to_csv(index=False))
    done = table[table["state"] == "COMPLETE"].groupby("study").size() if len(table) else pd.Series(dtype=int)
    print(f"{len(table)} trials; complete per study: {done.to_dict()}; wrote {directory / search / 'trials.csv'}")
    write_text_atomic(directory / search / "tuning.md", tuning_summary(table, search))


def tuning_summary(table: pd.DataFrame, search: str) -> str:
    """Markdown: per study, trials by state, the best complete trial (rl-zoo's objective: the mean return of the last
    evaluation, 10 episodes, one seed) and its parameters; every trial is in trials.csv."""
    lines = [
        f"# Equal-budget tuning ({search})",
        "",
        "Made by `bash bench/memory_v2_tune.sh` (rl-zoo `-optimize`: TPE, median pruner, 4 start-up trials, 2 "
        "evaluations of 10 episodes per trial, seed 0; the env and folder of each search: results/memory_v2/README.md), "
        f"then `python bench/memory_v2.py tuning --search {search}`. A failed trial is one "
        "killed with a sitting: not counted, its budget spent again. Objective: the last evaluation's mean return "
        "(CartPoleNoVel's maximum is 500, POPGym's 1), one seed per trial, so a trial's value is a noisy estimate of "
        "its settings.",
        "",
        "A resumed search restarts rl-zoo's sampler from its seed, so its random start-up trials repeat settings an "
        "earlier sitting drew: the *distinct* column counts the different settings among the counted trials.",
        "",
        "| study | complete | pruned | failed | distinct settings (counted trials) | best trial | best value | "
        "complete trials' values |",
        "|---|---|---|---|---|---|---|---|",
    ]
    bests = {}
    for study, trials in table.groupby("study"):
        states = trials["state"].value_counts()
        complete = trials[trials["state"] == "COMPLETE"]
        best = complete.loc[complete["value"].idxmax()] if len(complete) else None
        bests[study] = best
        values = ", ".join(f"{v:g}" for v in complete["value"])
        counted = trials[trials["state"] != "FAIL"].drop(columns=["study", "trial", "state", "value", "seconds"])
        distinct = len(counted.astype(str).drop_duplicates())
        lines.append(
            f"| {study} | {states.get('COMPLETE', 0)} | {states.get('PRUNED', 0)} | {states.get('FAIL', 0)} | "
            f"{distinct} ({len(counted)}) | "
            f"{'-' if best is None else int(best['trial'])} | {'-' if best is None else f'{best.value:g}'} | {values} |"
        )
    for study, best in bests.items():
        if best is None:
            continue
        params = {key: value for key, value in best.items() if key not in ("study", "trial", "state", "value", "seconds")}
        shown = ", ".join(
            f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
            for key, value in params.items()
            if pd.notna(value)
        )
        lines += ["", f"{study}, trial {int(best['trial'])} (raw optuna parameters): {shown}"]
    return "\n".join(lines) + "\n"


#: The SB3 training scalars ``training-logs`` keeps.
TRAINING_TAGS = (
    "rollout/ep_rew_mean", "train/entropy_loss", "train/approx_kl", "train/clip_fraction", "train/explained_variance",
    "train/value_loss", "train/learning_rate",
)  # fmt: skip


def training_logs(study: Path, method: str, env: str, out: Path) -> None:
    """The SB3 training scalars (:data:`TRAINING_TAGS`) of every seed of ``method`` on ``env`` in a study folder, read
    from the runs' TensorBoard logs (not committed) into one long CSV (committed): method, env, seed, step, tag, value.
    A diagnostic source, e.g. for a learning curve that falls back."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from sb3_masked_attention.evaluation.study_spec import env_slug
    from sb3_masked_attention.io import write_text_atomic

    rows = []
    for folder in sorted((study / "runs" / method / env_slug(env)).glob("seed*")):
        for events_dir in sorted({path.parent for path in (folder / "tensorboard").rglob("events.out.tfevents.*")}):
            events = EventAccumulator(str(events_dir))
            events.Reload()
            for tag in TRAINING_TAGS:
                if tag in events.Tags()["scalars"]:
                    rows += [
                        {
                            "method": method,
                            "env": env,
                            "seed": int(folder.name[4:]),
                            "step": e.step,
                            "tag": tag,
                            "value": e.value,
                        }
                        for e in events.Scalars(tag)
                    ]
    if not rows:
        print(f"no TensorBoard logs of {method} on {env} under {study}: nothing to write", flush=True)
        return
    write_text_atomic(out, pd.DataFrame(rows).to_csv(index=False))
    print(f"wrote {out}: {len(rows)} rows", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = ["factors", "lstm-gradients", "pilot", "tuning", "count-probe", "previous-probe", "training-logs", "count-answers"]
    parts.append("advantage-signal")
    parser.add_argument("part", choices=parts)
    parser.add_argument(
        "--study",
        default=None,
        help="training-logs: the study folder in DIR (default pilot); count-answers: the memory_v2 study whose runs are "
        "replayed (default tuned_count_recall)",
    )
    parser.add_argument(
        "--method",
        default=None,
        help="training-logs: the method (default transformer_ppo); count-answers: the one replayed (default: all)",
    )
    parser.add_argument("--env", default="CartPoleNoVel-v1", help="training-logs: the env (default CartPoleNoVel-v1)")
    parser.add_argument("--dir", type=Path, default=DIR, help="folder of study folders (default results/memory_v2)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output file: the reports' default DIR/factors.md, DIR/pilot.md; the measuring parts' (lstm-gradients, "
        "count-probe, previous-probe) a new runs/bench folder (pass results/memory_v2/<file> to replace the committed one)",
    )
    parser.add_argument("--search", default="tuning", help="tuning: the search's folder in DIR (default tuning)")
    args = parser.parse_args()
    if args.part == "factors":
        factors(args.dir, args.out or args.dir / "factors.md")
    elif args.part == "pilot":
        pilot_report(args.dir, args.out or args.dir / "pilot.md")
    elif args.part == "tuning":
        tuning_trials(args.dir, args.search)
    elif args.part == "training-logs":
        study, method = args.study or "pilot", args.method or "transformer_ppo"
        name = f"training_logs_{study}_{method}_{args.env.replace('/', '-')}.csv"
        training_logs(args.dir / study, method, args.env, args.out or args.dir / name)
    else:  # the measuring parts: a CSV in a new runs/bench folder unless --out names one
        from memory_v2_advantages import advantage_signal
        from memory_v2_answers import STUDY, count_answers
        from memory_v2_probes import count_probe, lstm_gradients, previous_probe

        measures: dict[str, tuple[Callable[[Path], None], str]] = {
            "previous-probe": (previous_probe, "previous_probe"),
            "count-probe": (count_probe, "count_probe"),
            "lstm-gradients": (lstm_gradients, "lstm_gradients"),
            "count-answers": (
                partial(count_answers, study=args.study or STUDY, methods=(args.method,) if args.method else ()),
                "count_answers",
            ),
            "advantage-signal": (advantage_signal, "advantage_signal"),
        }
        measure, stem = measures[args.part]
        committed = f"results/memory_v2/{stem}.csv"
        measure(args.out or measuring_folder(None, f"memory_v2-{stem}", committed) / f"{stem}.csv")
    sys.exit(0)
