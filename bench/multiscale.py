"""Multi-scale extractors: cost of attention, and the learning runs on TerritoryControl.

    python bench/multiscale.py extractors   # fwd+bwd per batch of 128, with and without attention
    python bench/multiscale.py learn        # 2 extractors x 3 seeds on a 256x256 map, 4 bots (resumable)
    python bench/multiscale.py baselines    # the skill ladder: reference policies vs each preset's bots (50 games)
    python bench/multiscale.py final-eval   # final models on 20 held-out maps, deterministic and sampled actions
    python bench/multiscale.py attention    # results/multiscale/attention_maps.png from a trained model
    python bench/multiscale.py plot         # learning curves + final territory share -> results/multiscale/
    python bench/multiscale.py report       # results/benchmarks/multiscale.md

``learn`` runs ``sb3ma train-multiscale`` once per (extractor, seed), two at a time with one torch
thread each (two torch processes with two threads each on two cores thrash). Each run resumes
from its checkpoints, so the command can be killed and started again.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from stable_baselines3.common.callbacks import BaseCallback

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sb3_masked_attention.io import append_row, atomic_path, read_rows, write_text_atomic  # noqa: E402

RESULTS = ROOT / "results" / "multiscale"
BENCH = ROOT / "results" / "benchmarks"
EXTRACTOR_CSV = BENCH / "multiscale_extractors.csv"
SEEDS = (0, 1, 2)
EXTRACTORS = {"attention": [], "plain": ["--no-attention"]}
#: The learning run: a 256x256 plains map, 4 bots, 500-step episodes, MaskablePPO.
LEARN_ARGS = [
    "--map",
    "plains",
    "--map-size",
    "256",
    "--num-bots",
    "4",
    "--max-steps",
    "500",
    "--total-timesteps",
    "60000",
    "--n-envs",
    "8",
    "--n-steps",
    "128",
    "--batch-size",
    "128",
    "--checkpoint-freq",
    "10000",
    "--eval-freq",
    "10000",
    "--eval-episodes",
    "5",
    "--attention-log-freq",
    "10000",
    "--torch-threads",
    "1",
    "--no-subprocess",
    "--no-progress",
    "--ppo-kwargs",
    "n_epochs=2",
]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, torch {torch.__version__}, Python {platform.python_version()}"


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
    batch = {key: torch.rand(128, *sub.shape) for key, sub in space.spaces.items()}
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
#: The levers, each measured against the preset's zoo entry as ``sb3ma train-multiscale`` runs it by default
#: (DummyVecEnv, one torch thread): more environments per step (the same 1024-step rollouts), larger minibatches,
#: SubprocVecEnv, two torch threads, finer observations, the medium entry's wider extractor, and both of the last two
#: (the small preset before it had its own observation size and extractor).
VARIANTS: dict[str, dict] = {
    "entry": {},
    "16 envs x 64 steps": {"n_envs": 16, "ppo_kwargs": {"n_steps": 64}},
    "batch 256": {"ppo_kwargs": {"batch_size": 256}},
    "SubprocVecEnv": {"subprocess_envs": True},
    "2 torch threads": {"threads": 2},
    "64x64 observations": {"map_resolution": 64, "local_view_size": 64},
    "wide extractor": {"policy_kwargs": WIDE},
    "64x64 + wide": {"map_resolution": 64, "local_view_size": 64, "policy_kwargs": WIDE},
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


def throughput(presets: list[str], variants: list[str], steps: int, repeats: int) -> None:
    """Env steps/s over a whole MaskablePPO ``learn`` of ``steps`` steps, per preset, extractor and lever
    (interleaved repeats, median) -> multiscale_training.csv."""
    import tempfile

    load = os.getloadavg()[0]
    for preset in presets:
        with tempfile.TemporaryDirectory() as tmp:
            _train_for(preset, "plain", 1024, Path(tmp) / "warm", {})  # numba kernels loaded, first-call costs paid
            for extractor in EXTRACTORS:
                for name in variants:
                    times, rollouts = [], []
                    for repeat in range(repeats):
                        timer = PhaseTimer()
                        _train_for(preset, extractor, steps, Path(tmp) / f"{extractor}{name}{repeat}", VARIANTS[name], timer)
                        times.append(timer.total)
                        rollouts.append(timer.rollout)
                    seconds, rollout = float(np.median(times)), float(np.median(rollouts))
                    row = {
                        "preset": preset,
                        "extractor": extractor,
                        "variant": name,
                        "steps": steps,
                        "repeats": repeats,
                        "seconds": round(seconds, 2),
                        "steps_per_s": round(steps / seconds, 1),
                        "rollout_share": round(rollout / seconds, 3),
                        "load_before": round(load, 2),
                        "machine": machine(),
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
        row |= {"share": round(seconds / total, 3), "steps": steps, "machine": machine()}
        append_row(PROFILE_CSV, row)
        print(f"{label:42s} {seconds:7.2f} s  {100 * seconds / total:5.1f}%")


# ------------------------------------------------------------------ learning runs
def run_dir(extractor: str, seed: int) -> Path:
    return RESULTS / "runs" / f"{extractor}_seed{seed}"


def learn_one(extractor: str, seed: int) -> int:
    out = run_dir(extractor, seed)
    out.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "sb3_masked_attention.cli",
        "train-multiscale",
        *LEARN_ARGS,
        *EXTRACTORS[extractor],
        "--seed",
        str(seed),
        "--output-dir",
        str(out),
    ]
    with open(out / "train.log", "a") as log:
        return subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT).returncode


def learn(workers: int) -> None:
    jobs = [(extractor, seed) for seed in SEEDS for extractor in EXTRACTORS]
    with ThreadPoolExecutor(workers) as pool:
        for (extractor, seed), code in zip(jobs, pool.map(lambda job: learn_one(*job), jobs)):
            print(f"{extractor} seed {seed}: exit {code}")


def _reference_rows(job: tuple[str, str, int]) -> list[dict]:
    """``episodes`` games of one reference policy in the agent's seat at one preset (map drawn per game)."""
    from envs.territory import TerritoryControlEnv
    from envs.territory_policies import reference_policy

    preset, policy_name, episodes = job
    rows = []
    for episode in range(episodes):
        env = TerritoryControlEnv(preset=preset)
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
    """The skill ladder: every reference policy (``envs.territory_policies.REFERENCE_POLICIES``: wait, random, the
    scripted levels) in the agent's seat against the preset's bots, ``episodes`` games each -> reference_policies.csv
    (rows of other presets kept; a preset is redone whole)."""
    from concurrent.futures import ProcessPoolExecutor

    from envs.territory_policies import REFERENCE_POLICIES

    path = RESULTS / "reference_policies.csv"
    kept = read_rows(path)
    if len(kept) and "preset" in kept:
        kept = kept[~kept["preset"].isin(presets)]
    else:
        kept = pd.DataFrame()  # the old file (one unnamed setting, older rules) is replaced
    jobs = [(preset, name, episodes) for preset in presets for name in REFERENCE_POLICIES]
    with ProcessPoolExecutor(workers) as pool:
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


def _final_eval_one(job: tuple[str, int, int]) -> list[dict]:
    """20 held-out episodes of one run's final model, deterministic and sampled actions."""
    extractor, seed, episodes = job
    from sb3_contrib import MaskablePPO

    from envs.territory import TerritoryControlEnv

    torch.set_num_threads(1)
    model = MaskablePPO.load(run_dir(extractor, seed) / "final_model.zip", device="cpu")
    rows = []
    for deterministic in (True, False):
        for episode in range(episodes):
            env = TerritoryControlEnv(map_name="plains", map_size=256, num_bots=4, max_steps=500)
            obs, _ = env.reset(seed=20_000 + episode)
            total, done = 0.0, False
            while not done:
                action, _ = model.predict(obs, deterministic=deterministic, action_masks=env.action_masks())
                obs, reward, terminated, truncated, info = env.step(action)
                total += reward
                done = terminated or truncated
            rows.append(
                {
                    "extractor": extractor,
                    "seed": seed,
                    "deterministic": deterministic,
                    "episode": episode,
                    "return": total,
                    "territory_share": info["territory_share"],
                    "rank": info["rank"],
                    "is_success": info["is_success"],
                }
            )
    return rows


def final_eval(episodes: int, workers: int) -> None:
    """Every finished run's final model on 20 held-out maps, deterministic and sampled -> final_eval.csv."""
    from concurrent.futures import ProcessPoolExecutor

    jobs = [(e, s, episodes) for e in EXTRACTORS for s in SEEDS if (run_dir(e, s) / "final_model.zip").exists()]
    with ProcessPoolExecutor(workers) as pool:
        rows = [row for result in pool.map(_final_eval_one, jobs) for row in result]
    table = pd.DataFrame(rows)
    with atomic_path(RESULTS / "final_eval.csv") as tmp:
        table.to_csv(tmp, index=False)
    print(table.groupby(["extractor", "deterministic"])[["return", "territory_share", "rank", "is_success"]].mean())


def attention_picture(seed: int = 0) -> None:
    """What the trained attention extractor (seed ``seed``) looks at on one held-out observation."""
    from sb3_contrib import MaskablePPO
    from stable_baselines3.common.preprocessing import preprocess_obs

    from envs.territory import TerritoryControlEnv
    from sb3_masked_attention.analysis.multiscale_plot import plot_multiscale_attention

    model = MaskablePPO.load(run_dir("attention", seed) / "final_model.zip", device="cpu")
    env = TerritoryControlEnv(map_name="plains", map_size=256, num_bots=4, max_steps=500)
    obs, _ = env.reset(seed=20_000)
    for _ in range(120):  # into the game: fronts between players exist
        action, _ = model.predict(obs, action_masks=env.action_masks())
        obs, *_ = env.step(action)
    obs_tensor, _ = model.policy.obs_to_tensor(obs)
    with torch.no_grad():
        _, maps = model.policy.features_extractor.forward_with_attention(preprocess_obs(obs_tensor, env.observation_space))
    plot_multiscale_attention(
        obs,
        maps,
        RESULTS / "attention_maps.png",
        title=f"MultiScaleExtractorWithAttention, seed {seed} (60k steps):\nstep 120 of a held-out game",
    )
    print(f"wrote {RESULTS / 'attention_maps.png'}")


def load_evaluations() -> pd.DataFrame:
    frames = []
    for extractor in EXTRACTORS:
        for seed in SEEDS:
            table = read_rows(run_dir(extractor, seed) / "evaluations.csv")
            if len(table):
                frames.append(table.assign(extractor=extractor, seed=seed))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_training_returns(n_envs: int = 8) -> pd.DataFrame:
    """Episode returns from the runs' Monitor files, at the approximate global step they ended
    (the envs step in lockstep, so an env's cumulative episode length times ``n_envs``)."""
    frames = []
    for extractor in EXTRACTORS:
        for seed in SEEDS:
            for path in sorted((run_dir(extractor, seed) / "monitor").glob("*.monitor.csv")):
                rows = [line.split(",") for line in path.read_text().splitlines() if line and line[0] not in "#r"]
                if rows:
                    episodes = pd.DataFrame(rows, columns=["r", "l", "t"]).astype(float)
                    frames.append(
                        pd.DataFrame(
                            {
                                "extractor": extractor,
                                "seed": seed,
                                "timesteps": episodes["l"].cumsum() * n_envs,
                                "return": episodes["r"],
                            }
                        )
                    )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def plot() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = load_evaluations()
    if table.empty:
        raise SystemExit("no evaluations yet: run `python bench/multiscale.py learn` first")
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    colours = {"attention": "tab:red", "plain": "tab:blue"}
    labels = {"attention": "MultiScaleExtractorWithAttention", "plain": "MultiScaleExtractor"}
    for ax, column, ylabel in (
        (axes[0], "mean_territory_share", "final territory share (eval)"),
        (axes[1], "mean_return", "episode return (eval)"),
    ):
        for extractor, group in table.groupby("extractor"):
            for _, run in group.groupby("seed"):
                ax.plot(run["timesteps"], run[column], color=colours[extractor], alpha=0.3, linewidth=1)
            mean = group.groupby("timesteps")[column].mean()
            ax.plot(
                mean.index, mean.values, color=colours[extractor], linewidth=2.5, label=f"{labels[extractor]} (mean of seeds)"
            )
        ax.set_xlabel("environment steps")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    reference = read_rows(RESULTS / "reference_policies_previous_rules.csv")  # the runs plotted predate the rule change
    if len(reference):
        random_policy = reference[reference["policy"] == "random"]
        for ax, column in ((axes[0], "territory_share"), (axes[1], "return"), (axes[2], "return")):
            ax.axhline(
                random_policy[column].mean(),
                color="grey",
                linestyle="--",
                linewidth=1.2,
                label="random valid actions (reference)",
            )
    training = load_training_returns()
    bins = np.linspace(0, training["timesteps"].max(), 13)
    for extractor, group in training.groupby("extractor"):
        per_seed = []
        for _, run in group.groupby("seed"):
            binned = run.groupby(pd.cut(run["timesteps"], bins), observed=False)["return"].mean()
            per_seed.append(binned.values)
            axes[2].plot(bins[1:], binned.values, color=colours[extractor], alpha=0.3, linewidth=1)
        axes[2].plot(bins[1:], np.nanmean(per_seed, axis=0), color=colours[extractor], linewidth=2.5)
    axes[2].set_xlabel("environment steps")
    axes[2].set_ylabel("training episode return (mean per bin)")
    axes[2].grid(alpha=0.3)
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle(
        "MaskablePPO on TerritoryControl 256x256 plains, 4 bots, random map per episode: "
        "thin lines = seeds (3 each), thick = mean; eval = 5 deterministic episodes"
    )
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "learning_curves.png", dpi=110)
    final = table.sort_values("timesteps").groupby(["extractor", "seed"]).tail(1)
    final = final[["extractor", "seed", "timesteps", "mean_territory_share", "mean_return", "mean_rank", "mean_is_success"]]
    with atomic_path(RESULTS / "final.csv") as tmp:
        final.to_csv(tmp, index=False)
    # The run directories (checkpoints, TensorBoard) stay out of git; their evaluations are kept here.
    with atomic_path(RESULTS / "evaluations.csv") as tmp:
        table.to_csv(tmp, index=False)
    _write_readme(final, training)


def _write_readme(final: pd.DataFrame, training: pd.DataFrame) -> None:
    """results/multiscale/README.md: settings, command, final numbers, reference policies."""
    per = final.groupby("extractor")[["mean_territory_share", "mean_return", "mean_rank", "mean_is_success"]].agg(
        ["mean", "std"]
    )
    last = training[training["timesteps"] > 0.8 * training["timesteps"].max()]
    late = last.groupby("extractor")["return"].agg(["mean", "std", "count"])
    lines = [
        "# Multi-scale extractors on TerritoryControl: learning runs",
        "",
        "Made by `python bench/multiscale.py learn` (then `plot`): for each extractor and seed 0, 1, 2,",
        "",
        "```",
        "sb3ma train-multiscale " + " ".join(LEARN_ARGS) + " [--no-attention] --seed S --output-dir runs/...",
        "```",
        "",
        "MaskablePPO + `MultiScaleAttentionPolicy` (`multiscale_extractor` attention or plain), 8 DummyVecEnv copies, "
        "rollouts of 128 steps, batch 128, 2 epochs, lr 2.5e-4, ent 0.01; a new random 256x256 plains map every "
        "episode, 4 bots, 500-step episodes; one torch thread per run, two runs at a time on a 2-core CPU. "
        "Evaluation every 10k steps: 5 deterministic episodes on held-out seeds.",
        "",
        "![learning curves](learning_curves.png)",
        "",
        "What the attention extractor of seed 0 looks at (`python bench/multiscale.py attention`):",
        "",
        "![attention maps](attention_maps.png)",
        "",
        "## Final evaluation (last evaluation of each run; mean and std over 3 seeds)",
        "",
        "| extractor | territory share | return | rank (of 5) | win rate |",
        "|---|---|---|---|---|",
    ]
    for extractor, row in per.iterrows():
        lines.append(
            f"| {extractor} | {row[('mean_territory_share', 'mean')]:.3f} ± {row[('mean_territory_share', 'std')]:.3f} | "
            f"{row[('mean_return', 'mean')]:.3f} ± {row[('mean_return', 'std')]:.3f} | "
            f"{row[('mean_rank', 'mean')]:.2f} | {row[('mean_is_success', 'mean')]:.2f} |"
        )
    lines += [
        "",
        "Training episodes (stochastic policy) in the last 20% of the budget:",
        "",
        "| extractor | mean return | std | episodes |",
        "|---|---|---|---|",
    ]
    for extractor, row in late.iterrows():
        lines.append(f"| {extractor} | {row['mean']:.3f} | {row['std']:.3f} | {int(row['count'])} |")
    held_out = read_rows(RESULTS / "final_eval.csv")
    if len(held_out):
        per_run = held_out.groupby(["extractor", "deterministic", "seed"])[
            ["territory_share", "return", "rank", "is_success"]
        ].mean()
        summary = per_run.groupby(["extractor", "deterministic"]).agg(["mean", "std"])
        lines += [
            "",
            "Final models on 20 held-out maps (`python bench/multiscale.py final-eval`; per run, then mean and "
            "std over seeds):",
            "",
            "| extractor | actions | territory share | return | rank | win rate |",
            "|---|---|---|---|---|---|",
        ]
        for (extractor, deterministic), row in summary.iterrows():
            lines.append(
                f"| {extractor} | {'deterministic' if deterministic else 'sampled'} | "
                f"{row[('territory_share', 'mean')]:.3f} ± {row[('territory_share', 'std')]:.3f} | "
                f"{row[('return', 'mean')]:.3f} ± {row[('return', 'std')]:.3f} | {row[('rank', 'mean')]:.2f} | "
                f"{row[('is_success', 'mean')]:.2f} |"
            )
    reference = read_rows(RESULTS / "reference_policies_previous_rules.csv")  # the runs plotted predate the rule change
    if len(reference):
        lines += [
            "",
            "Reference policies on the same settings (`python bench/multiscale.py baselines`, 20 episodes):",
            "",
            "| policy | territory share | return | rank | win rate |",
            "|---|---|---|---|---|",
        ]
        for policy, row in reference.groupby("policy")[["territory_share", "return", "rank", "is_success"]].mean().iterrows():
            lines.append(
                f"| {policy} | {row['territory_share']:.3f} | {row['return']:.3f} | {row['rank']:.2f} | "
                f"{row['is_success']:.2f} |"
            )
    lines += [
        "",
        "Files: `evaluations.csv` (every evaluation of every run), `final.csv`, `final_eval.csv`, `reference_policies.csv`.",
        "",
    ]
    write_text_atomic(RESULTS / "README.md", "\n".join(lines))
    print(final.to_string(index=False))


def report() -> None:
    lines = [
        "# Multi-scale extractors: parameters and CPU cost",
        "",
        f"Machine: {machine()}.",
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    extractors = commands.add_parser("extractors")
    extractors.add_argument("--repeats", type=int, default=21)
    extractors.add_argument("--threads", type=int, default=1)
    learn_parser = commands.add_parser("learn")
    learn_parser.add_argument("--workers", type=int, default=2)
    baselines_parser = commands.add_parser("baselines")
    baselines_parser.add_argument("--presets", nargs="+", default=["small", "medium", "full"])
    baselines_parser.add_argument("--episodes", type=int, default=50)
    baselines_parser.add_argument("--workers", type=int, default=2)
    commands.add_parser("attention")
    final_parser = commands.add_parser("final-eval")
    final_parser.add_argument("--episodes", type=int, default=20)
    final_parser.add_argument("--workers", type=int, default=2)
    commands.add_parser("plot")
    commands.add_parser("report")
    throughput_parser = commands.add_parser("throughput")
    throughput_parser.add_argument("--presets", nargs="+", default=["small", "medium"])
    throughput_parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    throughput_parser.add_argument("--steps", type=int, default=8192)
    throughput_parser.add_argument("--repeats", type=int, default=2)
    profile_parser = commands.add_parser("profile")
    profile_parser.add_argument("--preset", default="small")
    profile_parser.add_argument("--extractor", default="attention", choices=list(EXTRACTORS))
    profile_parser.add_argument("--steps", type=int, default=8192)
    args = parser.parse_args()
    if args.command == "throughput":
        throughput(args.presets, args.variants, args.steps, args.repeats)
    elif args.command == "profile":
        profile(args.preset, args.extractor, args.steps)
    elif args.command == "extractors":
        bench_extractors(args.repeats, args.threads)
    elif args.command == "learn":
        learn(args.workers)
    elif args.command == "final-eval":
        final_eval(args.episodes, args.workers)
    elif args.command == "attention":
        attention_picture()
    elif args.command == "baselines":
        baselines(args.presets, args.episodes, args.workers)
    elif args.command == "plot":
        plot()
    else:
        report()


if __name__ == "__main__":
    main()
