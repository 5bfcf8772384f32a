"""Long-memory benchmark: TransformerPPO against RecurrentPPO, the window transformer and frame-stacked PPO-MLP.

    python bench/memory.py throughput   # env steps/s over a whole learn() and in rollouts alone, peak RSS
    python bench/memory.py tmaze [--corridors 50 200 500 1000] [--seeds 0 1 2] [--methods transformer_ppo]
                                        # Passive T-Maze range: success rate per corridor length (resumable)
    python bench/memory.py report       # writes results/benchmarks/memory.md from the CSVs

Throughput: CartPoleNoVel-v1 at rl-zoo's tuned ``ppo_lstm`` settings (8 envs, n_steps 32, batch 256, 20 epochs) for
every method, one torch thread, each run in its own process (for its peak RSS), one after another. Rows are
appended atomically to ``results/benchmarks/memory_throughput.csv``; finished runs are skipped (resumable).
T-Maze: ``sb3ma/TMaze-v0`` (cue only at t = 0, reward only at the junction) at each corridor length, the same
budget per length (``TMAZE_BUDGET`` env steps), evaluated every tenth of it on 100 deterministic episodes; one row
per finished run in ``results/benchmarks/memory_tmaze.csv`` (success = return 1). Not yet here (issue 16): the
RecurrentPPO and frame-stack runs of the range sweep, and the sample-efficiency comparison.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import platform
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "benchmarks"
ENV_ID = "CartPoleNoVel-v1"
STEPS = 4096
TOKENS = [{"sb3_masked_attention.wrappers.HistoryWrapper": {"history_len": 1}}]
WINDOW = [{"sb3_masked_attention.wrappers.HistoryWrapper": {"history_len": 16}}]
NORMALIZE = "dict(norm_obs_keys=['obs', 'prev_reward'])"  # never the one-hot previous action
#: method -> (rl-zoo algo, overrides of rl-zoo's ppo_lstm CartPoleNoVel entry)
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "recurrent_ppo": ("ppo_lstm", {}),
    **{
        f"transformer_ppo_m{m}": (
            "ppo_tx",
            dict(
                policy="TransformerMemoryPolicy",
                env_wrapper=TOKENS,
                normalize=NORMALIZE,
                policy_kwargs=f"dict(memory_len={m})",
            ),
        )
        for m in (16, 128, 1024)
    },
    "window_transformer_h16": (
        "ppo",
        dict(
            policy="HeadMaskedTransformerPolicy",
            env_wrapper=WINDOW,
            normalize=NORMALIZE,
            policy_kwargs="dict(head_mask_strategy='specialized')",
        ),
    ),
    "mlp_framestack16": (
        "ppo",
        dict(
            policy="MlpPolicy",
            frame_stack=16,
            policy_kwargs="dict(ortho_init=False, activation_fn=nn.ReLU, net_arch=dict(pi=[64], vf=[64]))",
        ),
    ),
}


TMAZE_BUDGET = 200_000


def tmaze_run(method: str, corridor: int, seed: int) -> dict[str, Any]:
    """One T-Maze run: TransformerPPO with a memory just longer than the episode, evaluated every tenth of the budget."""
    import torch
    from stable_baselines3.common.env_util import make_vec_env

    from sb3_masked_attention import HistoryWrapper
    from sb3_masked_attention.environments import register_envs
    from sb3_masked_attention.episodes import play_episodes
    from sb3_masked_attention.zoo import register_algorithms

    if method != "transformer_ppo":
        raise ValueError(f"method {method!r} is not in the T-Maze sweep yet: expected transformer_ppo")
    torch.set_num_threads(1)
    register_envs()
    register_algorithms()
    from sb3_masked_attention.transformer_ppo import TransformerPPO

    def envs(n: int, env_seed: int):
        wrapper = dict(history_len=1)
        return make_vec_env(
            "sb3ma/TMaze-v0", n, env_seed, env_kwargs=dict(corridor_length=corridor), wrapper_class=HistoryWrapper,
            wrapper_kwargs=wrapper,
        )  # fmt: skip

    episode = corridor + 2
    memory = 1 << (episode - 1).bit_length()  # the next power of two: the cue stays in memory
    model = TransformerPPO(
        "TransformerMemoryPolicy", envs(8, seed), n_steps=max(64, episode), batch_size=256, n_epochs=4,
        learning_rate=3e-4, ent_coef=0.01, max_grad_norm=0.5, seed=seed, policy_kwargs=dict(memory_len=memory),
    )  # fmt: skip
    start, first, success = time.perf_counter(), None, 0.0
    evaluation = envs(1, seed + 10_000)
    for _ in range(10):
        model.learn(TMAZE_BUDGET // 10, reset_num_timesteps=False)
        success = float((np.asarray(play_episodes(model, evaluation, 100).returns) > 0).mean())
        if first is None and success >= 0.95:
            first = model.num_timesteps
    return {
        "method": method,
        "corridor": corridor,
        "memory_len": memory,
        "seed": seed,
        "budget": model.num_timesteps,
        "final_success": success,
        "first_steps_to_95pct": first,
        "seconds": round(time.perf_counter() - start, 1),
    }


def tmaze(corridors: list[int], seeds: list[int], methods: list[str]) -> None:
    from sb3_masked_attention.io import append_row, read_rows

    path = OUT / "memory_tmaze.csv"
    for corridor in corridors:
        for method in methods:
            for seed in seeds:
                done = read_rows(path)
                if len(done) and ((done["method"] == method) & (done["corridor"] == corridor) & (done["seed"] == seed)).any():
                    continue
                with ProcessPoolExecutor(max_workers=1) as pool:
                    row = pool.submit(tmaze_run, method, corridor, seed).result()
                with open(path.with_suffix(".lock"), "a") as lock:  # two sweeps may share the file
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    append_row(path, row)
                print(row, flush=True)


def throughput_run(method: str) -> dict[str, Any]:
    """One learn() of ``STEPS`` steps in this (fresh) process; rollout time measured around collect_rollouts."""
    import torch

    from sb3_masked_attention.zoo import make_zoo_model, rl_zoo_config

    torch.set_num_threads(1)
    algo, overrides = METHODS[method]
    with tempfile.TemporaryDirectory() as log_folder:
        model = make_zoo_model(algo, ENV_ID, log_folder, conf_file=rl_zoo_config("ppo_lstm"), hyperparams=overrides).model
    rollout_seconds = 0.0
    collect = model.collect_rollouts

    def timed(*args: Any, **kwargs: Any) -> bool:
        nonlocal rollout_seconds
        start = time.perf_counter()
        result = collect(*args, **kwargs)
        rollout_seconds += time.perf_counter() - start
        return result

    model.collect_rollouts = timed  # type: ignore[method-assign]
    start = time.perf_counter()
    model.learn(STEPS)
    seconds = time.perf_counter() - start
    return {
        "method": method,
        "steps": model.num_timesteps,
        "seconds": round(seconds, 2),
        "steps_per_s": round(model.num_timesteps / seconds, 1),
        "rollout_steps_per_s": round(model.num_timesteps / rollout_seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch": torch.__version__,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }


def throughput() -> None:
    from sb3_masked_attention.io import append_row, read_rows

    path = OUT / "memory_throughput.csv"
    for method in METHODS:
        done = read_rows(path)
        if len(done) and method in set(done["method"]):
            continue
        with ProcessPoolExecutor(max_workers=1) as pool:  # a fresh process per method: its own peak RSS
            row = pool.submit(throughput_run, method).result()
        append_row(path, row)
        print(row, flush=True)


def report() -> None:
    from sb3_masked_attention.evaluation.report import to_markdown
    from sb3_masked_attention.io import read_rows, write_text_atomic

    tmaze_rows = read_rows(OUT / "memory_tmaze.csv")
    table = read_rows(OUT / "memory_throughput.csv")
    reference = float(table.set_index("method").loc["recurrent_ppo", "steps_per_s"])
    table["vs_recurrent_ppo"] = (table["steps_per_s"] / reference).round(2)
    text = (
        "# Long-memory benchmark\n\n"
        f"Command: `python bench/memory.py throughput && python bench/memory.py report`. {ENV_ID} at rl-zoo's tuned "
        f"`ppo_lstm` settings (8 envs, n_steps 32, batch 256, 20 epochs) for every method, {STEPS} steps each, one torch "
        "thread, each method in its own process, one after another, one run each (no repeats: expect +-10% noise). "
        "`rollout_steps_per_s` times `collect_rollouts` alone; `peak_rss_mb` is the process's peak resident memory.\n\n"
        + to_markdown(table)
    )
    if len(tmaze_rows):
        text += (
            "\n## Passive T-Maze range\n\n"
            f"Command: `python bench/memory.py tmaze`. TransformerPPO, memory = the next power of two above the episode "
            f"(corridor + 2), {TMAZE_BUDGET} env steps per run, 8 envs, n_steps = max(64, episode), 4 epochs, lr 3e-4, "
            "evaluated every tenth of the budget on 100 deterministic episodes (success = return 1). Every finished run "
            "is a row; `first_steps_to_95pct` is empty where a run never reached 95%.\n\n" + to_markdown(tmaze_rows)
        )
    write_text_atomic(OUT / "memory.md", text)
    print(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["throughput", "tmaze", "report"])
    parser.add_argument("--corridors", type=int, nargs="+", default=[50, 200, 500, 1000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["transformer_ppo"])
    args = parser.parse_args()
    if args.part == "tmaze":
        tmaze(args.corridors, args.seeds, args.methods)
    else:
        {"throughput": throughput, "report": report}[args.part]()
    sys.exit(0)
