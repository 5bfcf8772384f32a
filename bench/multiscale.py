"""Multi-scale extractors on TerritoryControl: their cost, training throughput, and the learning runs per preset.

    python bench/multiscale.py extractors               # fwd+bwd per batch of 128, with and without attention
    python bench/multiscale.py throughput               # env steps/s over whole MaskablePPO learns, per preset and lever
    python bench/multiscale.py profile                  # where one learn's time goes (cProfile)
    python bench/multiscale.py baselines                # the skill ladder: reference policies vs each preset's bots
    python bench/multiscale.py pilot                    # the settings grid for both extractors (before any learn)
    python bench/multiscale.py learn --preset small     # 2 extractors x 5 seeds, each at its pilot setting (resumable)
    python bench/multiscale.py learn --preset medium --init-from small   # curriculum runs
    python bench/multiscale.py final-eval --preset small   # final models on 50 held-out games, greedy and sampled;
                                                           # per-run table and the targets -> small/final_eval.md
    python bench/multiscale.py curriculum-sources --preset medium  # the models its curriculum runs started from
    python bench/multiscale.py plot --preset small      # learning curves vs steps and wall-clock
    python bench/multiscale.py rliable --preset small   # IQM/CI/probability of improvement of win rate and share
    python bench/multiscale.py attention --preset small # attention of a trained model at a front line
    python bench/multiscale.py game --preset small      # a held-out game of the trained model as a GIF
    python bench/multiscale.py tests                    # the pre-registered tests (results/multiscale/README.md)
    python bench/multiscale.py report                   # results/benchmarks/multiscale*.md

Where it writes: the cost parts (extractors, throughput, profile) and the study parts that run games or training
(baselines, pilot, learn, final-eval, curriculum-sources) write into ``--out``, by default a new ``runs/bench/...``
folder, so that a fresh clone measures instead of finding the committed rows; ``--out results/benchmarks`` (costs)
or ``--out results/multiscale`` (study) adds to, or resumes, the committed results. The parts that only read (plot,
rliable, attention, game, tests, report) read the committed folders unless told. The pilot's chosen settings
(results/multiscale/settings.json) are always the committed ones: they are pre-registered.

The learning study is in multiscale_study.py (the ladder, the pilot, the runs and their archive) and its reports in
multiscale_report.py; this file holds the costs (extractors, throughput, profile, report) and the command line.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the study modules beside this one, however this is loaded

import multiscale_report as reports
import multiscale_study as study
from folders import measuring_folder, out_option

from sb3_masked_attention.io import append_row, read_rows, write_text_atomic

BENCH = study.ROOT / "results" / "benchmarks"
EXTRACTOR_CSV = BENCH / "multiscale_extractors.csv"


# ------------------------------------------------------------------ extractor cost
def bench_extractors(repeats: int, threads: int) -> None:
    from envs.territory import TerritoryControlEnv
    from sb3_masked_attention.extractors.multiscale import (
        MultiScaleExtractor,
        MultiScaleExtractorWithAttention,
        count_parameters,
    )

    torch.set_num_threads(threads)
    space = TerritoryControlEnv(map_size=64, num_bots=1).observation_space
    torch.manual_seed(0)
    assert isinstance(space, gym.spaces.Dict)
    batch = {key: torch.rand(128, *(sub.shape or ())) for key, sub in space.spaces.items()}
    contenders = {
        "MultiScaleExtractor": MultiScaleExtractor(space),
        "MultiScaleExtractorWithAttention": MultiScaleExtractorWithAttention(space),
        "MultiScaleExtractorWithAttention, every stage": MultiScaleExtractorWithAttention(space, attention_stages=(0, 1, 2)),
    }
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):  # interleaved, so drifts in machine speed hit every contender alike
        for name, extractor in contenders.items():
            extractor.zero_grad()
            start = time.perf_counter()
            extractor(batch).sum().backward()
            times[name].append(time.perf_counter() - start)
    base = float(np.median(times["MultiScaleExtractor"][1:]))
    for name, extractor in contenders.items():
        median = float(np.median(times[name][1:]))  # the first call warms up
        append_row(
            EXTRACTOR_CSV,
            {
                "extractor": name,
                "threads": threads,
                "batch": 128,
                "parameters": count_parameters(extractor),
                "fwd_bwd_ms": round(1000 * median, 1),
                "ratio_to_plain": round(median / base, 3),
                "repeats": repeats - 1,
            },
        )
        print(f"{name:48s} {count_parameters(extractor):>9,d} params  {1000 * median:7.1f} ms  x{median / base:.3f}")


# ------------------------------------------------------------------ training throughput
THROUGHPUT_CSV = BENCH / "multiscale_training.csv"
PROFILE_CSV = BENCH / "multiscale_training_profile.csv"
WIDE = {"features_extractor_kwargs": {"cnn_channels": (32, 64, 64), "branch_dim": 256, "features_dim": 512}}
NARROW = {"features_extractor_kwargs": {"cnn_channels": (16, 32, 32), "branch_dim": 128, "features_dim": 256}}
#: The levers, each measured against the preset's zoo entry as ``sb3ma train-multiscale`` runs it by default
#: (DummyVecEnv, one torch thread): more environments per step (the same 1024-step rollouts), larger minibatches,
#: SubprocVecEnv, two torch threads, finer observations, the medium entry's wider extractor, and both of the last two
#: (the small preset before it had its own observation size and extractor).
VARIANTS: dict[str, dict] = {
    "entry": {},
    "16 envs x 64 steps": {"n_envs": 16, "ppo_kwargs": {"n_steps": 64}},
    "32 envs x 32 steps": {"n_envs": 32, "ppo_kwargs": {"n_steps": 32}},
    "batch 256": {"ppo_kwargs": {"batch_size": 256}},
    "SubprocVecEnv": {"subprocess_envs": True},
    "2 torch threads": {"threads": 2},
    "64x64 observations": {"map_resolution": 64, "local_view_size": 64},
    "wide extractor": {"policy_kwargs": WIDE},
    "64x64 + wide": {"map_resolution": 64, "local_view_size": 64, "policy_kwargs": WIDE},
    "16 envs x 64 steps, 2 threads": {"n_envs": 16, "ppo_kwargs": {"n_steps": 64}, "threads": 2},
    "narrow extractor": {"policy_kwargs": NARROW},
    "64x64 + narrow": {"map_resolution": 64, "local_view_size": 64, "tactical_size": 32, "policy_kwargs": NARROW},
}


class PhaseTimer(BaseCallback):
    """Wall-clock of a whole ``learn`` and of its rollouts (env steps + policy forward); the rest is the update."""

    def _on_training_start(self) -> None:
        self.start, self.rollout = time.perf_counter(), 0.0

    def _on_rollout_start(self) -> None:
        self._rollout_start = time.perf_counter()

    def _on_rollout_end(self) -> None:
        self.rollout += time.perf_counter() - self._rollout_start

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self.total = time.perf_counter() - self.start


def _train_for(preset: str, extractor: str, steps: int, out: Path, variant: dict, callback=None):
    from sb3_masked_attention.multiscale_training import MultiscaleConfig, train_multiscale

    torch.set_num_threads(variant.get("threads", 1))
    config = MultiscaleConfig(
        preset=preset,
        attention=extractor == "attention",
        map_resolution=variant.get("map_resolution"),
        local_view_size=variant.get("local_view_size"),
        tactical_size=variant.get("tactical_size"),
        subprocess_envs=variant.get("subprocess_envs", False),
        checkpoint_freq=10**9,
        eval_freq=0,  # MaskablePPO's learn alone: no evaluation episodes, no attention logs
        attention_log_freq=0,
    )
    return train_multiscale(
        out,
        config,
        total_timesteps=steps,
        n_envs=variant.get("n_envs"),
        ppo_kwargs=variant.get("ppo_kwargs"),
        policy_kwargs=variant.get("policy_kwargs"),
        progress_bar=False,
        verbose=0,
        callback=callback,
    )


def throughput(presets: list[str], variants: list[str], steps: int, repeats: int, label: str = "") -> None:
    """Env steps/s over a whole MaskablePPO ``learn`` of ``steps`` steps, per preset, extractor and lever
    (interleaved repeats, median) -> multiscale_training.csv; ``label`` is appended to each row's lever (e.g. the
    entry's version when it is re-measured after a change)."""
    import tempfile

    for preset in presets:
        with tempfile.TemporaryDirectory() as tmp:
            _train_for(preset, "plain", 1024, Path(tmp) / "warm", {})  # numba kernels loaded, first-call costs paid
            for extractor in study.EXTRACTORS:
                for name in variants:
                    times, rollouts, load = [], [], os.getloadavg()[0]
                    for repeat in range(repeats):
                        timer = PhaseTimer()
                        _train_for(preset, extractor, steps, Path(tmp) / f"{extractor}{name}{repeat}", VARIANTS[name], timer)
                        times.append(timer.total)
                        rollouts.append(timer.rollout)
                    seconds, rollout = float(np.median(times)), float(np.median(rollouts))
                    row: dict[str, Any] = {
                        "preset": preset,
                        "extractor": extractor,
                        "variant": name + label,
                        "steps": steps,
                        "repeats": repeats,
                        "seconds": round(seconds, 2),
                        "steps_per_s": round(steps / seconds, 1),
                        "rollout_share": round(rollout / seconds, 3),
                        "load_before": round(load, 2),
                        "machine": study.machine(),
                    }
                    append_row(THROUGHPUT_CSV, row)
                    print(
                        f"{preset:6s} {extractor:9s} {name:20s} {row['steps_per_s']:7.1f} steps/s "
                        f"(rollout {100 * row['rollout_share']:.0f}% of the time)"
                    )


#: Where a ``learn`` spends its time: (label, file fragment, function) of the profiled calls, cumulative time.
PROFILE_PARTS = (
    ("rollout: all", "ppo_mask", "collect_rollouts"),
    ("rollout: env step (VecEnv.step_wait)", "dummy_vec_env", "step_wait"),
    ("rollout: policy forward", "maskable/policies", "forward"),
    ("update: all", "ppo_mask", "train"),
    ("update: forward (evaluate_actions)", "maskable/policies", "evaluate_actions"),
    ("update: backward", "torch/_tensor", "backward"),
    ("update: Adam step", "torch/optim/adam", "step"),
    ("extractor forward (rollout + update)", "extractors/multiscale", "forward_with_attention"),
)


def profile(preset: str, extractor: str, steps: int) -> None:
    """cProfile one ``learn`` at the preset's entry; the cumulative time of each of PROFILE_PARTS -> CSV."""
    import cProfile
    import pstats
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        _train_for(preset, "plain", 1024, Path(tmp) / "warm", {})
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.enable()
        _train_for(preset, extractor, steps, Path(tmp) / "run", {})
        profiler.disable()
        total = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    for label, fragment, function in PROFILE_PARTS:
        seconds = sum(
            entry[3] for (path, _, name), entry in stats.items() if name == function and fragment in path.replace("\\", "/")
        )
        row = {"preset": preset, "extractor": extractor, "part": label, "seconds": round(seconds, 2)}
        row |= {"share": round(seconds / total, 3), "steps": steps, "machine": study.machine()}
        append_row(PROFILE_CSV, row)
        print(f"{label:42s} {seconds:7.2f} s  {100 * seconds / total:5.1f}%")


def report() -> None:
    lines = [
        "# Multi-scale extractors: parameters and CPU cost",
        "",
        f"Machine: {study.machine()}.",
        "",
        "Command: `python bench/multiscale.py extractors` (forward + backward of the extractor alone, batch 128, "
        "maps 6x128x128, 6x128x128, 6x64x64 and an 8-vector, features_dim 512; median of interleaved repeats; "
        "ratio to MultiScaleExtractor in the same process). Target: attention costs <= 10% more.",
        "",
    ]
    table = read_rows(EXTRACTOR_CSV)
    if len(table):
        lines += ["| extractor | torch threads | parameters | fwd+bwd ms | ratio |", "|---|---|---|---|---|"]
        for row in table.itertuples():
            lines.append(
                f"| {row.extractor} | {row.threads} | {row.parameters:,} | {row.fwd_bwd_ms} | {row.ratio_to_plain:.3f} |"
            )
    write_text_atomic(BENCH / "multiscale.md", "\n".join(lines) + "\n")
    print(f"wrote {BENCH / 'multiscale.md'}")
    throughput_report()


def throughput_report() -> None:
    """results/benchmarks/multiscale_training.md from the throughput and profile CSVs (every row)."""
    table, profiled = read_rows(THROUGHPUT_CSV), read_rows(PROFILE_CSV)
    lines = [
        "# Training throughput on TerritoryControl (MaskablePPO + the multi-scale extractors)",
        "",
        "Command: `python bench/multiscale.py throughput` (env steps per second over one whole MaskablePPO `learn` of "
        "`steps` steps at the preset's zoo entry, without evaluations; the numba kernels warmed up first; median of "
        "`repeats` interleaved learns; `rollout` = share of the time spent collecting rollouts, env steps and policy "
        "forward; the rest is the PPO update) and `python bench/multiscale.py profile` (cProfile of one learn, "
        "cumulative seconds). `load before` is the 1-minute load average just before the row's learns: this command "
        "alone keeps it near 1 on the 2-core machine, and its own 2-thread rows lift it to about 2 for a minute or two; "
        "other jobs sharing the cores show as more. Target: >= 500 env steps/s at the small preset with the attention "
        "extractor.",
        "",
        "Rows named *entry before* / *entry now* are the zoo entries before and after the change these measurements "
        "led to (small: 32 envs x 32 steps instead of 8 x 128; medium: 64x64 maps, 32x32 tactical map and the narrow "
        "extractor instead of 128x128 maps and the wide one); the profile is of the small entry before the change. "
        "Rows ending *at 4 ticks a step* re-measure the entries after amendment 2 (results/multiscale/README.md: one "
        "agent step = 4 game ticks at small and medium, batch 256, gamma 0.995; `throughput --variants entry --label "
        "'...'`): an env step then runs 4 game ticks.",
        "",
    ]
    if len(table):
        lines += [
            "| preset | extractor | lever | steps/s | rollout share | steps x repeats | load before | machine |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in table.itertuples():
            lines.append(
                f"| {row.preset} | {row.extractor} | {row.variant} | {row.steps_per_s:.0f} | {row.rollout_share:.2f} | "
                f"{row.steps} x {row.repeats} | {row.load_before:.2f} | {row.machine} |"
            )
    if len(profiled):
        lines += ["", "Where the time goes:", "", "| preset | extractor | part | seconds | share |", "|---|---|---|---|---|"]
        for row in profiled.itertuples():
            lines.append(f"| {row.preset} | {row.extractor} | {row.part} | {row.seconds:.2f} | {row.share:.3f} |")
    write_text_atomic(BENCH / "multiscale_training.md", "\n".join(lines) + "\n")
    print(f"wrote {BENCH / 'multiscale_training.md'}")


#: Parts that measure costs (their --out holds CSVs like results/benchmarks) and parts that play or train (their --out
#: is a study folder like results/multiscale).
COST_PARTS = ("extractors", "throughput", "profile")
STUDY_PARTS = ("baselines", "pilot", "learn", "final-eval", "curriculum-sources")


def _use_folders(bench: Path) -> None:
    """Point the cost parts' CSVs and reports at ``bench`` (module constants, read when each part runs)."""
    global BENCH, EXTRACTOR_CSV, THROUGHPUT_CSV, PROFILE_CSV
    BENCH = bench
    EXTRACTOR_CSV, THROUGHPUT_CSV = bench / "multiscale_extractors.csv", bench / "multiscale_training.csv"
    PROFILE_CSV = bench / "multiscale_training_profile.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    extractors = commands.add_parser("extractors")
    extractors.add_argument("--repeats", type=int, default=21)
    extractors.add_argument("--threads", type=int, default=1)
    throughput_parser = commands.add_parser("throughput")
    throughput_parser.add_argument("--presets", nargs="+", default=["small", "medium"])
    throughput_parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    throughput_parser.add_argument("--steps", type=int, default=8192)
    throughput_parser.add_argument("--repeats", type=int, default=2)
    throughput_parser.add_argument("--label", default="", help="appended to each row's lever name")
    profile_parser = commands.add_parser("profile")
    profile_parser.add_argument("--preset", default="small")
    profile_parser.add_argument("--extractor", default="attention", choices=list(study.EXTRACTORS))
    profile_parser.add_argument("--steps", type=int, default=8192)
    baselines_parser = commands.add_parser("baselines")
    baselines_parser.add_argument("--presets", nargs="+", default=["small", "medium", "full"])
    baselines_parser.add_argument("--episodes", type=int, default=50)
    baselines_parser.add_argument("--workers", type=int, default=2)
    for name in ("learn", "final-eval", "curriculum-sources", "plot", "attention", "game", "rliable"):
        sub = commands.add_parser(name)
        sub.add_argument("--preset", default="small", choices=list(study.EVALUATION))
        if name == "learn":
            sub.add_argument("--seeds", type=int, nargs="+", default=list(study.SEEDS))
            sub.add_argument("--extractors", nargs="+", default=list(study.EXTRACTORS), choices=list(study.EXTRACTORS))
            sub.add_argument("--init-from", default=None, choices=list(study.EVALUATION), help="curriculum: the preset's runs")
        if name in ("learn", "final-eval", "curriculum-sources"):
            sub.add_argument("--workers", type=int, default=2)
        if name == "final-eval":
            sub.add_argument("--games", type=int, default=study.FINAL_GAMES)
    commands.add_parser("report")
    commands.add_parser("tests")
    pilot_parser = commands.add_parser("pilot")
    pilot_parser.add_argument("--workers", type=int, default=2)
    for name, sub in commands.choices.items():
        out_option(sub, "results/benchmarks" if name in (*COST_PARTS, "report") else "results/multiscale")
    args = parser.parse_args()
    if args.command in COST_PARTS:
        _use_folders(bench=measuring_folder(args.out, f"multiscale-{args.command}"))
    elif args.command == "report":
        _use_folders(bench=args.out or BENCH)
    elif args.command in STUDY_PARTS:
        study.RESULTS = measuring_folder(args.out, f"multiscale-{args.command}", "results/multiscale")
    elif args.out is not None:
        study.RESULTS = args.out
    actions = {
        "throughput": lambda: throughput(args.presets, args.variants, args.steps, args.repeats, args.label),
        "profile": lambda: profile(args.preset, args.extractor, args.steps),
        "extractors": lambda: bench_extractors(args.repeats, args.threads),
        "baselines": lambda: study.baselines(args.presets, args.episodes, args.workers),
        "learn": lambda: study.learn(args.preset, args.seeds, args.extractors, args.workers, args.init_from),
        "final-eval": lambda: reports.final_eval(args.preset, args.games, args.workers),
        "curriculum-sources": lambda: reports.curriculum_sources(args.preset, args.workers),
        "plot": lambda: reports.plot(args.preset),
        "attention": lambda: reports.front_line_picture(args.preset),
        "game": lambda: reports.record_game(args.preset),
        "rliable": lambda: reports.rliable_report(args.preset),
        "tests": lambda: print(reports.primary_tests()),
        "pilot": lambda: study.pilot(args.workers),
        "report": report,
    }
    actions[args.command]()


if __name__ == "__main__":
    main()
