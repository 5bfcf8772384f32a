"""The TerritoryControl learning study (results/multiscale/README.md): the skill ladder, the settings pilot, the
learning runs and their archive, and the held-out games of a finished run. Its commands are those of
``python bench/multiscale.py`` (``baselines``, ``pilot``, ``learn``); multiscale_report.py reports its results.

``learn`` runs ``sb3ma train-multiscale`` once per (extractor, seed), two at a time with one torch thread each
(two torch processes with two threads each on two cores thrash). Each run resumes from its checkpoints, so the
command can be killed and started again. Run folders (results/multiscale/runs/: models, checkpoints) stay out of
git, so a finished run is archived as soon as it ends: its training curve into {preset}/evaluations.csv and its
held-out games into {preset}/final_eval.csv. ``learn`` skips a run found there, so a machine that loses the run
folders loses no finished run; a curriculum run whose source model is gone first trains that source again (same
command and seed) and records in {source}/regenerated_models.csv whether its training curve matches the archived one.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sb3_masked_attention.evaluation.study import worker_pool  # noqa: E402
from sb3_masked_attention.io import append_row, atomic_path, read_rows, write_text_atomic  # noqa: E402

RESULTS = ROOT / "results" / "multiscale"
SEEDS = (0, 1, 2, 3, 4)
EXTRACTORS = {"attention": [], "plain": ["--no-attention"]}
#: Per preset: evaluation every N steps on E greedy games during training (the budget is the zoo entry's).
EVALUATION = {"small": (15_000, 10), "medium": (25_000, 10), "full": (50_000, 5)}
#: Held-out games of the final-eval: seeds 20000 + i (training games and evaluations use other seeds).
HELD_OUT_SEED = 20_000
#: Held-out games per run and action mode (the primary endpoint's 50).
FINAL_GAMES = 50


def machine() -> str:
    from sb3_masked_attention.machine import cpu_name

    return f"{cpu_name()}, torch {torch.__version__}, Python {platform.python_version()}"


# ------------------------------------------------------------------ the skill ladder
#: Bot levels the ladder is measured against per preset (None: the preset's own); small also against easy bots, the
#: setting of the issue's target.
LADDER_BOTS: dict[str, list[str | None]] = {"small": [None, "easy"], "medium": [None], "full": [None]}


def preset_bots(preset: str) -> str:
    from envs.territory import PRESETS

    return PRESETS[preset]["bot_level"]


def _reference_rows(job: tuple[str, str | None, str, int]) -> list[dict]:
    """``episodes`` games of one reference policy in the agent's seat at one preset (map drawn per game)."""
    from envs.territory import TerritoryControlEnv
    from envs.territory_policies import reference_policy

    preset, bot_level, policy_name, episodes = job
    rows = []
    for episode in range(episodes):
        env = TerritoryControlEnv(preset=preset, bot_level=bot_level)
        env.reset(seed=10_000 + episode)
        policy = reference_policy(policy_name, seed=episode)
        total, steps, done, start = 0.0, 0, False, time.perf_counter()
        while not done:
            _, reward, terminated, truncated, info = env.step(policy(env))
            total, steps, done = total + reward, steps + 1, terminated or truncated
        rows.append(
            {
                "preset": preset,
                "bot_level": env.bot_level,
                "num_bots": env.num_bots,
                "action_interval": env.action_interval,
                "policy": policy_name,
                "episode": episode,
                "return": total,
                "territory_share": info["territory_share"],
                "rank": info["rank"],
                "is_success": bool(info["is_success"]),
                "steps": steps,
                "steps_per_s": steps / (time.perf_counter() - start),
            }
        )
    return rows


def baselines(presets: list[str], episodes: int, workers: int) -> None:
    """The skill ladder: every reference policy (``envs.territory_policies.REFERENCE_POLICIES``: wait, random, constant,
    the scripted levels) in the agent's seat against the preset's bots (and :data:`LADDER_BOTS`), ``episodes`` games
    each -> reference_policies.csv (rows of other presets kept; a preset is redone whole)."""
    from envs.territory_policies import REFERENCE_POLICIES

    path = RESULTS / "reference_policies.csv"
    kept = read_rows(path)
    if len(kept) and "preset" in kept:
        kept = kept[~kept["preset"].isin(presets)]
    else:
        kept = pd.DataFrame()  # the old file (one unnamed setting, older rules) is replaced
    jobs = [
        (preset, bots, name, episodes) for preset in presets for bots in LADDER_BOTS[preset] for name in REFERENCE_POLICIES
    ]
    with worker_pool(workers) as pool:
        rows = [row for result in pool.map(_reference_rows, jobs) for row in result]
    table = pd.concat([kept, pd.DataFrame(rows)], ignore_index=True)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    print(ladder_table(table))


def ladder_table(table: pd.DataFrame) -> str:
    """Markdown: per preset and policy, games, win rate, final territory share, rank, return."""
    order = {name: i for i, name in enumerate(table["policy"].unique())}
    summary = (
        table.groupby(["preset", "bot_level", "num_bots", "policy"], sort=False)
        .agg(
            games=("episode", "size"),
            win_rate=("is_success", "mean"),
            share=("territory_share", "mean"),
            rank=("rank", "mean"),
            ret=("return", "mean"),
        )
        .reset_index()
    )
    summary = summary.sort_values(["preset", "policy"], key=lambda c: c.map(order) if c.name == "policy" else c)
    lines = ["| preset | bots | agent's seat | games | win rate | territory share | rank | return |", "|---" * 8 + "|"]
    for row in summary.itertuples():
        lines.append(
            f"| {row.preset} | {row.num_bots} {row.bot_level} | {row.policy} | {row.games} | {row.win_rate:.2f} | "
            f"{row.share:.3f} | {row.rank:.2f} | {row.ret:.3f} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------ run folders
def method_name(extractor: str, init_from: str | None) -> str:
    return extractor if init_from is None else f"{extractor} from {init_from}"


def run_dir(preset: str, extractor: str, seed: int, init_from: str | None = None) -> Path:
    suffix = "" if init_from is None else f"_from_{init_from}"
    return RESULTS / "runs" / preset / f"{extractor}_seed{seed}{suffix}"


#: ``sb3ma`` in a child that ends when its driver dies, kill -9 included, as the study runner's workers do: a plain
#: subprocess started from a pool thread outlived a killed driver and kept training (the run folder's lock refused the
#: restarted driver's run, but the orphan held a core).
LAUNCH = (
    "import sys; from sb3_masked_attention.evaluation.study import exit_with_driver; exit_with_driver(int(sys.argv[1])); "
    "from sb3_masked_attention.cli import main; sys.exit(main(sys.argv[2:]))"
)


def cli_command(args: list[str], driver_pid: int | None = None) -> list[str]:
    """The command line of ``sb3ma ARGS`` run so that it ends when ``driver_pid`` (default: this process) dies."""
    return [sys.executable, "-c", LAUNCH, str(os.getpid() if driver_pid is None else driver_pid), *args]


def _train(out: Path, args: list[str]) -> int:
    """``sb3ma train-multiscale ARGS --output-dir OUT`` on one torch thread (resumed if it has checkpoints), its log in
    ``OUT/train.log``; it ends with this driver (:func:`cli_command`)."""
    out.mkdir(parents=True, exist_ok=True)
    command = cli_command(["train-multiscale", *args, "--output-dir", str(out)])
    command += ["--attention-log-freq", "50000", "--torch-threads", "1", "--no-subprocess", "--no-progress"]
    with open(out / "train.log", "a") as log:
        return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode


def _ppo_args(settings: dict) -> list[str]:
    return ["--ppo-kwargs", *(f"{key}={value}" for key, value in settings.items())] if settings else []


# ------------------------------------------------------------------ the settings pilot (before the learning runs)
#: The same grid for both extractors, 2 seeds each, 150k steps at the small preset; each extractor keeps the setting
#: with the highest mean area under its greedy land-share curve (ties: the zoo entry's values first). The second pilot
#: (amendment 2 in results/multiscale/README.md); the first one's grid and outcome are in pilot_interval1/.
PILOT_GRID = {"learning_rate": (2.5e-4, 1e-4), "ent_coef": (0.01, 0.001)}
PILOT_SEEDS = (200, 201)
PILOT_STEPS, PILOT_EVAL_FREQ = 150_000, 15_000
SETTINGS_FILE = RESULTS / "settings.json"  # the committed pilot's choice, whatever folder a rerun writes into


def pilot_settings() -> list[dict]:
    import itertools

    return [dict(zip(PILOT_GRID, values)) for values in itertools.product(*PILOT_GRID.values())]


def pilot_dir(extractor: str, settings: dict, seed: int) -> Path:
    name = "_".join(f"{key}{value:g}" for key, value in settings.items())
    return RESULTS / "runs" / "small" / "pilot" / f"{extractor}_{name}_seed{seed}"


def pilot(workers: int) -> None:
    """Every grid setting x extractor x pilot seed at the small preset (finished runs are not redone), then the choice
    -> small/pilot.csv (per setting), small/pilot_evaluations.csv (every curve), settings.json."""
    from sb3_masked_attention.evaluation.inference import area_under_curve

    jobs = [(e, settings, seed) for seed in PILOT_SEEDS for settings in pilot_settings() for e in EXTRACTORS]

    def run(job: tuple[str, dict, int]) -> int:
        extractor, settings, seed = job
        args = ["--preset", "small", *EXTRACTORS[extractor], "--seed", str(seed), "--total-timesteps", str(PILOT_STEPS)]
        args += ["--eval-freq", str(PILOT_EVAL_FREQ), "--eval-episodes", "10", "--checkpoint-freq", "25000"]
        return _train(pilot_dir(extractor, settings, seed), args + _ppo_args(settings))

    with ThreadPoolExecutor(workers) as pool:
        codes = list(pool.map(run, jobs))
    if any(codes):
        raise SystemExit(f"{sum(1 for code in codes if code)} pilot runs failed: see their train.log")
    curves = []
    for extractor, settings, seed in jobs:
        table = read_rows(pilot_dir(extractor, settings, seed) / "evaluations.csv")
        name = " ".join(f"{key}={value:g}" for key, value in settings.items())
        curves.append(
            table.assign(method=f"{extractor} | {name}", env="small", seed=seed, score=table["mean_territory_share"])
        )
    curves_table = pd.concat(curves, ignore_index=True)
    with atomic_path(RESULTS / "small" / "pilot_evaluations.csv") as tmp:  # every curve (run folders stay out of git)
        curves_table.to_csv(tmp, index=False)
    areas = area_under_curve(curves_table[["method", "env", "seed", "timesteps", "score"]])
    summary = areas.groupby("method", sort=False)["score"].agg(["mean", "std", "size"]).reset_index()
    summary[["extractor", "setting"]] = summary["method"].str.split(" \\| ", expand=True)
    with atomic_path(RESULTS / "small" / "pilot.csv") as tmp:
        summary.drop(columns="method").to_csv(tmp, index=False)
    choice = {}
    for extractor in EXTRACTORS:
        rows = summary[summary["extractor"] == extractor].reset_index(drop=True)  # grid order: the entry's values first
        best = rows.loc[rows["mean"].idxmax(), "setting"]
        choice[extractor] = {key: float(value) for key, value in (item.split("=") for item in best.split())}
    chosen = RESULTS / "settings.json"  # the learning runs read the committed, pre-registered SETTINGS_FILE
    write_text_atomic(chosen, json.dumps(choice, indent=2) + "\n")
    print(summary.to_string(index=False))
    print(f"chosen: {choice} -> {chosen}")


def chosen_settings(extractor: str) -> dict:
    """The pilot's setting for ``extractor`` (the learning runs refuse to start without it)."""
    if not SETTINGS_FILE.exists():
        raise SystemExit(f"no {SETTINGS_FILE}: run `python bench/multiscale.py pilot` first (pre-registered order)")
    return json.loads(SETTINGS_FILE.read_text())[extractor]


# ------------------------------------------------------------------ learning runs
def learn_one(job: tuple[str, str, int, str | None]) -> int:
    """One learning run at the preset's zoo entry with the pilot's setting for its extractor."""
    preset, extractor, seed, init_from = job
    eval_freq, eval_games = EVALUATION[preset]
    args = ["--preset", preset, *EXTRACTORS[extractor], "--seed", str(seed), "--checkpoint-freq", "20000"]
    args += ["--eval-freq", str(eval_freq), "--eval-episodes", str(eval_games), *_ppo_args(chosen_settings(extractor))]
    if init_from is not None:
        args += ["--init-from", str(run_dir(init_from, extractor, seed) / "final_model.zip")]
    return _train(run_dir(preset, extractor, seed, init_from), args)


def learn(preset: str, seeds: list[int], extractors: list[str], workers: int, init_from: str | None) -> None:
    """Every (extractor, seed) of the preset not archived yet, ``workers`` at a time with one torch thread each; each
    run archived as it finishes (:func:`archive_run`)."""
    for extractor in extractors:
        chosen_settings(extractor)  # refuse before anything starts
    jobs = [(preset, extractor, seed, init_from) for seed in seeds for extractor in extractors]
    archived = evaluated_runs(preset)
    kept = sum((method_name(extractor, source), seed) in archived for _, extractor, seed, source in jobs)
    if kept:
        print(f"{kept} of {len(jobs)} runs already in {RESULTS / preset} (kept); pass --out NEW to rerun them", flush=True)
    lock = threading.Lock()  # one archiving at a time: each rewrites the preset's CSVs

    def run(job: tuple[str, str, int, str | None]) -> int:
        _, extractor, seed, source = job
        if (method_name(extractor, source), seed) in archived:
            return 0
        if source is not None and not (run_dir(source, extractor, seed) / "final_model.zip").exists():
            code = learn_one((source, extractor, seed, None))  # the curriculum's source, trained again
            if code:
                return code
            with lock:
                check_regenerated(source, extractor, seed)
        code = learn_one(job)
        if code == 0:
            with lock:
                archive_run(*job)
        return code

    with ThreadPoolExecutor(workers) as pool:
        for job, code in zip(jobs, pool.map(run, jobs)):
            state = "archived before" if (method_name(job[1], init_from), job[2]) in archived else f"exit {code}"
            print(f"{preset} {method_name(job[1], init_from)} seed {job[2]}: {state}")


def evaluated_runs(preset: str, file: str = "final_eval.csv") -> set[tuple[str, int]]:
    """(method, seed) of every run with held-out games in {preset}/{file}."""
    table = read_rows(RESULTS / preset / file)
    return set(zip(table["method"], table["seed"].astype(int))) if len(table) else set()


def replace_rows(path: Path, rows: pd.DataFrame, method: str, seed: int) -> None:
    """``rows`` in place of the CSV's rows of (method, seed), atomically."""
    table = read_rows(path)
    if len(table):
        table = table[~((table["method"] == method) & (table["seed"] == seed))]
        rows = pd.concat([table, rows], ignore_index=True)
    with atomic_path(path) as tmp:
        rows.to_csv(tmp, index=False)


def play_held_out(path: Path, jobs: list[tuple[str, str, int, str, int]], workers: int) -> None:
    """:func:`final_eval_one` of every job (preset, method, seed, run folder, games), ``workers`` at a time, each run's
    rows written into the CSV ``path`` in place of its earlier ones as soon as the run is done (a kill loses only the
    runs still playing)."""
    with worker_pool(workers) as pool:
        for (_, method, seed, _, _), rows in zip(jobs, pool.map(final_eval_one, jobs)):
            replace_rows(path, pd.DataFrame(rows), method, seed)


def archive_run(preset: str, extractor: str, seed: int, init_from: str | None) -> None:
    """A finished run's training curve -> {preset}/evaluations.csv and its :data:`FINAL_GAMES` held-out games (greedy
    and sampled) -> {preset}/final_eval.csv, replacing any earlier rows of the run."""
    folder, method = run_dir(preset, extractor, seed, init_from), method_name(extractor, init_from)
    curve = read_rows(folder / "evaluations.csv").assign(method=method, seed=seed)
    replace_rows(RESULTS / preset / "evaluations.csv", curve, method, seed)
    games = pd.DataFrame(final_eval_one((preset, method, seed, str(folder), FINAL_GAMES)))
    replace_rows(RESULTS / preset / "final_eval.csv", games, method, seed)
    wins = games.loc[games["actions"] == "greedy", "won"].mean()
    print(f"archived {preset} {method} seed {seed}: greedy held-out win rate {wins:.2f}")


def check_regenerated(preset: str, extractor: str, seed: int) -> None:
    """Compare a run trained again (its model was lost) with its archived training curve -> one row of
    {preset}/regenerated_models.csv: evaluations compared, whether they are identical, the largest differences."""
    archived = read_rows(RESULTS / preset / "evaluations.csv")
    if len(archived):
        archived = archived[(archived["method"] == extractor) & (archived["seed"] == seed)]
    again = read_rows(run_dir(preset, extractor, seed) / "evaluations.csv")
    columns = ["timesteps", "mean_territory_share", "mean_is_success"]
    comparable = 0 < len(again) == len(archived) and (archived["timesteps"].to_numpy() == again["timesteps"].to_numpy()).all()
    diffs = archived[columns].to_numpy() - again[columns].to_numpy() if comparable else None
    row = {
        "extractor": extractor,
        "seed": seed,
        "evaluations": len(again),
        "archived_evaluations": len(archived),
        "identical": diffs is not None and bool(np.abs(diffs).max() == 0),
        "max_diff_land_share": float(np.abs(diffs[:, 1]).max()) if diffs is not None else float("nan"),
        "max_diff_win_rate": float(np.abs(diffs[:, 2]).max()) if diffs is not None else float("nan"),
        "machine": machine(),
    }
    append_row(RESULTS / preset / "regenerated_models.csv", row)
    print(f"{preset} {extractor} seed {seed} trained again: identical training curve = {row['identical']}")


def finished_runs(preset: str) -> list[tuple[str, str, int, Path]]:
    """(method, extractor, seed, run folder) of every run of the preset with a final model."""
    found = []
    for folder in sorted((RESULTS / "runs" / preset).glob("*_seed*")):
        extractor, _, rest = folder.name.partition("_seed")
        seed, _, source = rest.partition("_from_")
        if (folder / "final_model.zip").exists() and extractor in EXTRACTORS:
            found.append((method_name(extractor, source or None), extractor, int(seed), folder))
    return found


def final_eval_one(job: tuple[str, str, int, str, int]) -> list[dict]:
    """``games`` held-out games of one run's final model, greedy and sampled."""
    from envs.territory import TerritoryControlEnv
    from sb3_masked_attention.multiscale_play import load_multiscale_model

    torch.set_num_threads(1)
    preset, method, seed, folder, games = job
    envs = [TerritoryControlEnv(preset=preset, bot_level=bots) for bots in LADDER_BOTS[preset]]  # the preset's first
    model = load_multiscale_model(Path(folder) / "final_model.zip", envs[0])  # bot levels share the spaces
    return [row for env in envs for row in _held_out_games(model, env, preset, method, seed, games)]


def _held_out_games(model, env, preset: str, method: str, seed: int, games: int) -> list[dict]:
    from sb3_masked_attention.multiscale_play import play_game

    rows = []
    for deterministic in (True, False):
        for game in range(games):
            info, _ = play_game(model, env, seed=HELD_OUT_SEED + game, deterministic=deterministic)
            rows.append(
                {
                    "preset": preset,
                    "bots": env.bot_level,
                    "method": method,
                    "seed": seed,
                    "actions": "greedy" if deterministic else "sampled",
                    "game": game,
                    "won": bool(info["is_success"]),
                    "territory_share": info["territory_share"],
                    "rank": info["rank"],
                    "return": info["return"],
                    "steps": info["steps"],
                }
            )
    return rows


def load_evaluations(preset: str) -> pd.DataFrame:
    """Training curves of the preset's finished runs: the archived ones from {preset}/evaluations.csv, and from the run
    folders here those of finished runs not archived. The archive wins: a folder of an archived run may hold a run
    trained again (a curriculum's lost source, :func:`check_regenerated`), which is not the run the results are of."""
    archived = read_rows(RESULTS / preset / "evaluations.csv")
    have = set(zip(archived["method"], archived["seed"].astype(int))) if len(archived) else set()
    frames = [archived] + [
        read_rows(folder / "evaluations.csv").assign(method=method, seed=seed)
        for method, _, seed, folder in finished_runs(preset)
        if (method, seed) not in have
    ]
    frames = [frame for frame in frames if len(frame)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
