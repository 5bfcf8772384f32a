"""Core benchmark: head-masked transformer PPO against RecurrentPPO and frame-stacked PPO-MLP.

Run side by side, same machine, same env (CartPoleNoVel-v1), same PPO budget:

    python bench/core.py throughput          # env steps/s over a full learn()
    python bench/core.py sample-efficiency   # env steps until mean eval return >= 475 (resumable)
    python bench/core.py kernel              # attention forward+backward: masked vs unmasked SDPA vs per-head loop
    python bench/core.py report              # writes core.md beside the CSVs (--out, default results/benchmarks)

Each measuring part appends to ``<out>/core_<part>.csv`` atomically, one row per finished run, and skips runs already
there (saying so), so a killed benchmark resumes where it stopped; ``--out`` defaults to a new folder
(``--out results/benchmarks`` adds to the committed results), and the part ends by writing ``<out>/core.md``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import as_completed
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside this script, however it is loaded
from folders import measuring_folder, out_option, say_skipped

from sb3_masked_attention.evaluation.study import worker_pool
from sb3_masked_attention.io import append_row, read_rows, write_text_atomic
from sb3_masked_attention.zoo import PROJECT_PPO_CONFIG, ZooRun, make_zoo_model, rl_zoo_config

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "benchmarks"
ENV_ID = "CartPoleNoVel-v1"
METHODS = ("transformer", "transformer_ppo_lstm_settings", "recurrent_ppo", "mlp_framestack")
LABELS = {
    "transformer": "PPO + HeadMaskedTransformerPolicy (h16, 2 layers, d64, 8 heads, specialized), zoo_configs/ppo.yml",
    "transformer_ppo_lstm_settings": "the same policy with rl-zoo's ppo_lstm PPO settings (n_epochs 20, normalize: true)",
    "recurrent_ppo": "sb3-contrib RecurrentPPO (rl-zoo tuned ppo_lstm)",
    "mlp_framestack": "PPO-MLP, 16 stacked frames",
}


# ---------------------------------------------------------------- building the contenders
HISTORY_WRAPPER = [{"sb3_masked_attention.wrappers.HistoryWrapper": {"history_len": 16}}]
MLP_KWARGS = "dict(ortho_init=False, activation_fn=nn.ReLU, net_arch=dict(pi=[64], vf=[64]))"
#: method -> (rl-zoo algo, config file (None: rl-zoo's own), overrides)
CONTENDERS: dict[str, tuple[str, Path | None, dict[str, Any]]] = {
    "transformer": ("ppo", PROJECT_PPO_CONFIG, {}),
    "transformer_ppo_lstm_settings": (
        "ppo",
        rl_zoo_config("ppo_lstm"),
        dict(
            policy="HeadMaskedTransformerPolicy",
            env_wrapper=HISTORY_WRAPPER,
            policy_kwargs="dict(head_mask_strategy='specialized')",
        ),
    ),
    "recurrent_ppo": ("ppo_lstm", None, {}),
    "mlp_framestack": ("ppo", rl_zoo_config("ppo_lstm"), dict(policy="MlpPolicy", frame_stack=16, policy_kwargs=MLP_KWARGS)),
}


def make_run(method: str, seed: int, log_folder: str, n_threads: int | None = None) -> ZooRun:
    """One contender, built by rl-zoo from its YAML entry plus overrides."""
    if n_threads:
        torch.set_num_threads(n_threads)
    algo, config, overrides = CONTENDERS[method]
    return make_zoo_model(algo, ENV_ID, log_folder, conf_file=config, hyperparams=overrides, seed=seed)


# ---------------------------------------------------------------- resumable CSV rows
def _done(path: Path, **keys: Any) -> bool:
    table = read_rows(path)
    if table.empty:
        return False
    match = np.ones(len(table), dtype=bool)
    for key, value in keys.items():
        match &= table[key].astype(str).to_numpy() == str(value)
    return bool(match.any())


# ---------------------------------------------------------------- 1. throughput
def throughput(steps: int, seeds: list[int], out: Path) -> None:
    path = out / "core_throughput.csv"
    todo = [(seed, method) for seed in seeds for method in METHODS if not _done(path, method=method, seed=seed, steps=steps)]
    say_skipped(len(seeds) * len(METHODS) - len(todo), len(seeds) * len(METHODS), path)
    for seed, method in todo:
        with tempfile.TemporaryDirectory() as logs:
            model = make_run(method, seed, logs).model
            start = time.perf_counter()
            model.learn(steps)
            elapsed = time.perf_counter() - start
        row = dict(method=method, seed=seed, steps=steps, seconds=elapsed, steps_per_second=model.num_timesteps / elapsed)
        print(row, flush=True)
        append_row(path, row)


# ---------------------------------------------------------------- 2. sample efficiency
def _steps_to_threshold(args: tuple[str, int, int, int, float]) -> dict[str, Any]:
    method, seed, budget, eval_freq, threshold = args
    from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold

    with tempfile.TemporaryDirectory() as logs:
        run = make_run(method, seed, logs, n_threads=1)
        model = run.model
        stop = StopTrainingOnRewardThreshold(reward_threshold=threshold, verbose=0)
        callback = EvalCallback(
            run.make_eval_env(5, seed=seed + 1000),
            callback_on_new_best=stop,
            n_eval_episodes=10,
            eval_freq=max(1, eval_freq // model.n_envs),
            deterministic=True,
            verbose=0,
        )
        start = time.perf_counter()
        model.learn(budget, callback=callback)
    solved = callback.best_mean_reward >= threshold
    return dict(
        method=method,
        seed=seed,
        budget=budget,
        threshold=threshold,
        solved=solved,
        steps_to_threshold=model.num_timesteps if solved else math.inf,
        best_mean_return=callback.best_mean_reward,
        seconds=time.perf_counter() - start,
    )


def sample_efficiency(
    seeds: list[int], budget: int, eval_freq: int, workers: int, out: Path, threshold: float = 475.0
) -> None:
    path = out / "core_sample_efficiency.csv"
    todo = [
        (m, s, budget, eval_freq, threshold)
        for s in seeds
        for m in METHODS
        if not _done(path, method=m, seed=s, budget=budget)
    ]
    say_skipped(len(seeds) * len(METHODS) - len(todo), len(seeds) * len(METHODS), path)
    with worker_pool(workers) as pool:  # workers end with this process (kill -9 included)
        for future in as_completed([pool.submit(_steps_to_threshold, args) for args in todo]):
            row = future.result()  # written as soon as it finishes, whatever the order
            print(row, flush=True)
            append_row(path, row)


# ---------------------------------------------------------------- 3. attention kernel
def _time(variants: dict[str, Callable[[], None]], repeats: int, rounds: int = 7) -> dict[str, float]:
    """Median over interleaved rounds of the mean time per call, so machine noise hits every variant alike."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            for _ in range(5):
                fn()
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            samples[name].append((time.perf_counter() - start) / repeats)
    return {name: float(np.median(times)) for name, times in samples.items()}


def kernel(batch: int, history_len: int, repeats: int, out: Path) -> None:
    import torch.nn.functional as F

    from sb3_masked_attention import HEAD_MASK_STRATEGIES
    from sb3_masked_attention.masks import head_window_mask

    n_heads, head_dim = 8, 8
    fractions = HEAD_MASK_STRATEGIES["specialized"]
    q, k, v = (torch.randn(batch, n_heads, history_len, head_dim, requires_grad=True) for _ in range(3))
    valid = torch.ones(batch, history_len, dtype=torch.bool)
    valid[::3, : history_len // 2] = False  # some padded windows, as early in episodes

    def masked() -> None:  # mask built every call, as in the extractor's forward
        F.scaled_dot_product_attention(q, k, v, attn_mask=head_window_mask(valid, fractions)).sum().backward()

    prebuilt = head_window_mask(valid, fractions)

    def masked_prebuilt() -> None:
        F.scaled_dot_product_attention(q, k, v, attn_mask=prebuilt).sum().backward()

    def unmasked() -> None:
        F.scaled_dot_product_attention(q, k, v).sum().backward()

    def per_head_loop() -> None:  # the readable reference: one head at a time
        outs = []
        for h in range(n_heads):
            scores = q[:, h] @ k[:, h].transpose(-2, -1) / math.sqrt(head_dim)
            outs.append(scores.masked_fill(~prebuilt[:, h], float("-inf")).softmax(-1) @ v[:, h])
        torch.stack(outs, 1).sum().backward()

    row: dict[str, Any] = dict(
        batch=batch, history_len=history_len, n_heads=n_heads, head_dim=head_dim, threads=torch.get_num_threads()
    )
    variants = dict(masked=masked, masked_prebuilt_mask=masked_prebuilt, unmasked_sdpa=unmasked, per_head_loop=per_head_loop)
    row.update({f"{name}_us": seconds * 1e6 for name, seconds in _time(variants, repeats).items()})
    print(row, flush=True)
    append_row(out / "core_kernel.csv", row)


# ---------------------------------------------------------------- report
def _machine() -> str:
    import sb3_contrib
    import stable_baselines3

    from sb3_masked_attention.machine import cpu_name

    return (
        f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"stable-baselines3 {stable_baselines3.__version__}, sb3-contrib {sb3_contrib.__version__}, "
        f"Python {platform.python_version()}"
    )


def _machine_of(out: Path) -> str:
    """The machine the folder's rows were measured on (recorded by each measuring part), not the one reporting."""
    path = out / "core_machine.txt"
    return path.read_text().strip() if path.exists() else "not recorded"


def report(out: Path) -> None:
    lines = [
        "# Core benchmark",
        "",
        f"Machine (of the last measuring run into this folder): {_machine_of(out)}",
        "",
        f"Env: {ENV_ID}; every contender is built by rl-zoo's ExperimentManager from a YAML entry "
        "(`sb3_masked_attention.zoo.make_zoo_model`): rl-zoo's tuned `ppo_lstm` entry for RecurrentPPO, the same "
        "entry with `policy: MlpPolicy, frame_stack: 16` for PPO-MLP and with the head-masked policy and a 16-step "
        "HistoryWrapper for the transformer at ppo_lstm's settings, and `zoo_configs/ppo.yml` for the transformer "
        "as shipped (ppo_lstm's settings but n_epochs 10 and normalising only `obs` and `prev_reward`). Same budget "
        "(100k steps), same env. Made by `python bench/core.py <part> --out results/benchmarks` (each part ends by "
        "rewriting this report; `python bench/core.py report` rewrites it alone).",
        "",
    ]
    tp = read_rows(out / "core_throughput.csv")
    if not tp.empty:
        sps = tp.groupby("method")["steps_per_second"].median()
        lines += [
            f"## 1. Training throughput (`python bench/core.py throughput`, {int(tp.steps.iloc[0])} steps per "
            f"learn, median of {tp.seed.nunique()} seeds)",
            "",
            "| method | env steps/s | transformer / method |",
            "|---|---|---|",
        ]
        for method in METHODS:
            if method in sps:
                lines.append(
                    f"| {LABELS[method]} | {sps[method]:.0f} | {sps.get('transformer', float('nan')) / sps[method]:.2f}x |"
                )
        if "recurrent_ppo" in sps and "transformer" in sps:
            ratio = sps["transformer"] / sps["recurrent_ppo"]
            lines += ["", f"Target >= 1.5x RecurrentPPO: measured **{ratio:.2f}x** ({'met' if ratio >= 1.5 else 'missed'})."]
        lines.append("")
    se = read_rows(out / "core_sample_efficiency.csv")
    if not se.empty:
        lines += [
            f"## 2. Sample efficiency (`python bench/core.py sample-efficiency`): env steps until the mean return of 10 "
            f"deterministic evaluation episodes first reaches {se.threshold.iloc[0]:.0f}, budget {int(se.budget.iloc[0])}",
            "",
            "| method | seeds | solved | median steps | per seed |",
            "|---|---|---|---|---|",
        ]
        medians = {}
        for method in METHODS:
            rows = se[se.method == method].sort_values("seed")
            if rows.empty:
                continue
            medians[method] = float(np.median(rows.steps_to_threshold))
            per_seed = ", ".join("not reached" if math.isinf(s) else f"{int(s)}" for s in rows.steps_to_threshold)
            lines.append(
                f"| {LABELS[method]} | {len(rows)} | {int(rows.solved.sum())} | "
                f"{'not reached' if math.isinf(medians[method]) else int(medians[method])} | {per_seed} |"
            )
        if "transformer" in medians and "recurrent_ppo" in medians:
            met = medians["transformer"] <= medians["recurrent_ppo"]
            lines += [
                "",
                f"Target: no more steps than RecurrentPPO: {'met' if met else 'missed'} "
                f"({medians['transformer']:.0f} vs {medians['recurrent_ppo']:.0f}).",
            ]
        lines.append("")
    kn = read_rows(out / "core_kernel.csv")
    if not kn.empty:
        r = kn.iloc[-1]
        lines += [
            f"## 3. Attention kernel (`python bench/core.py kernel`): forward+backward, batch {int(r.batch)}, "
            f"T={int(r.history_len)}, {int(r.n_heads)} heads x {int(r.head_dim)}, {int(r.threads)} threads",
            "",
            "| variant | time (us) | vs unmasked SDPA |",
            "|---|---|---|",
        ]
        for name in ("masked", "masked_prebuilt_mask", "unmasked_sdpa", "per_head_loop"):
            lines.append(f"| {name} | {r[f'{name}_us']:.0f} | {r[f'{name}_us'] / r.unmasked_sdpa_us:.2f}x |")
        over = r.masked_us / r.unmasked_sdpa_us
        speedup = r.per_head_loop_us / r.masked_us
        lines += [
            "",
            f"Head-masked (mask built each call) vs unmasked SDPA: **{over:.2f}x** (target <= 1.15x: "
            f"{'met' if over <= 1.15 else 'missed'}); "
            f"per-head loop / head-masked: **{speedup:.1f}x** (target >= 3x: {'met' if speedup >= 3 else 'missed'}).",
            "",
        ]
    write_text_atomic(out / "core.md", "\n".join(lines))
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parts = parser.add_subparsers(dest="part", required=True)
    p = parts.add_parser("throughput")
    p.add_argument("--steps", type=int, default=20_480)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p = parts.add_parser("sample-efficiency")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--budget", type=int, default=100_000)
    p.add_argument("--eval-freq", type=int, default=4096)
    p.add_argument("--workers", type=int, default=2)
    p = parts.add_parser("kernel")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--history-len", type=int, default=16)
    p.add_argument("--repeats", type=int, default=50)
    parts.add_parser("report")
    for part in parts.choices.values():
        out_option(part)
    args = parser.parse_args(argv)
    out = (args.out or OUT) if args.part == "report" else measuring_folder(args.out, "core")
    if args.part != "report":
        write_text_atomic(out / "core_machine.txt", _machine() + "\n")
    if args.part == "throughput":
        throughput(args.steps, args.seeds, out)
    elif args.part == "sample-efficiency":
        sample_efficiency(args.seeds, args.budget, args.eval_freq, args.workers, out)
    elif args.part == "kernel":
        kernel(args.batch, args.history_len, args.repeats, out)
    report(out)


if __name__ == "__main__":
    main()
