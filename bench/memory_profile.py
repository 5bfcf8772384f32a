"""Where TransformerPPO's time goes: torch-profiler summaries of its rollouts and updates beside RecurrentPPO's, and the
arithmetic (FLOPs and bytes) that bounds them on this machine.

    python bench/memory_profile.py [--out results/benchmarks] [--compile]   # -> <out>/memory_profile.md

Each method is built as ``bench/memory.py throughput`` builds it (CartPoleNoVel-v1, rl-zoo's tuned ``ppo_lstm``
settings: 8 envs, n_steps 32, one minibatch of 256, 20 epochs), one torch thread, in its own process. After one warm-up
rollout and update: the median of 3 timed rollouts and 3 timed updates, then one rollout and one update under the torch
profiler (the top ops by self time). ``--compile`` also times TransformerPPO's rollout step under ``torch.compile``.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from folders import measuring_folder, out_option
from memory import ENV_ID, METHODS

PROFILED = ("recurrent_ppo", "transformer_ppo_m16", "transformer_ppo_m1024", "window_transformer_h16")
TOP_OPS = 12
#: TransformerPPO's shape at the benchmark settings: layers, width, heads, MLP width, envs, n_steps, minibatch.
L, D_MODEL, HEADS, FF, ENVS, N_STEPS, BATCH = 2, 64, 8, 256, 8, 32, 256


def update_flops(memory_len: int) -> float:
    """Multiply-adds x 2 of one TransformerPPO gradient step (forward and backward) at the benchmark's shape.

    Per layer, forward: the minibatch's tokens through the projections and the MLP, each stream's keys and values
    projected once (``ENVS x (M + n_steps)`` positions), and the attention of each stream's tokens over its keys and
    their own (``(M + n_steps) + slots`` keys, QK and PV). Backward costs twice the forward, except the streams' key
    and value projections, whose inputs are stored (a weight gradient only).
    """
    stream = memory_len + N_STEPS
    slots = BATCH // ENVS
    tokens = BATCH * (D_MODEL * 3 * D_MODEL + D_MODEL * D_MODEL + 2 * D_MODEL * FF)
    streams = ENVS * stream * D_MODEL * 2 * D_MODEL
    attention = ENVS * HEADS * slots * (stream + slots) * (D_MODEL // HEADS) * 2
    return 2.0 * L * (3 * tokens + 2 * streams + 3 * attention)


def step_bytes(memory_len: int) -> float:
    """Bytes of cached keys and values a rollout step reads (every env, every layer, float32)."""
    return 4.0 * L * ENVS * 2 * (memory_len + 1) * D_MODEL


def gemm_gflops() -> dict[str, float]:
    """Single-thread float32 matmul rate on this machine for the update's shapes (median of 20)."""
    import torch

    torch.set_num_threads(1)
    shapes = {"tokens x width (256x64 @ 64x256)": (256, 64, 256), "stream kv (8448x64 @ 64x128)": (8448, 64, 128)}
    rates = {}
    for name, (m, k, n) in shapes.items():
        a, b = torch.randn(m, k), torch.randn(k, n)
        seconds = []
        for _ in range(20):
            start = time.perf_counter()
            a @ b
            seconds.append(time.perf_counter() - start)
        rates[name] = 2 * m * k * n / statistics.median(seconds) / 1e9
    return rates


def _top_ops(profiler: Any, total_seconds: float) -> list[dict[str, Any]]:
    events = sorted(profiler.key_averages(), key=lambda event: event.self_cpu_time_total, reverse=True)
    return [
        dict(
            op=event.key,
            self_ms=round(event.self_cpu_time_total / 1e3, 2),
            calls=event.count,
            share=f"{event.self_cpu_time_total / 1e6 / total_seconds:.0%}",
        )
        for event in events[:TOP_OPS]
    ]


def profile_method(method: str, compile_step: bool = False) -> dict[str, Any]:
    """Rollout and update times and their top ops for one method (in this fresh process)."""
    import torch
    from sb3_contrib import RecurrentPPO
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import CallbackList
    from torch.profiler import ProfilerActivity, profile

    from sb3_masked_attention.zoo import make_zoo_model, rl_zoo_config

    torch.set_num_threads(1)
    algo, overrides = METHODS[method]
    with tempfile.TemporaryDirectory() as log_folder:
        model = make_zoo_model(algo, ENV_ID, log_folder, conf_file=rl_zoo_config("ppo_lstm"), hyperparams=overrides).model
    assert isinstance(model, (PPO, RecurrentPPO))  # and TransformerPPO, a PPO
    model._setup_learn(10**6, None)
    callback = CallbackList([])
    callback.init_callback(model)

    env = model.get_env()
    assert env is not None

    def rollout() -> None:
        model.collect_rollouts(env, callback, model.rollout_buffer, model.n_steps)

    def timed(work: Any) -> float:
        start = time.perf_counter()
        work()
        return time.perf_counter() - start

    rollout()  # warm-up
    model.train()
    rollout_s = statistics.median(timed(rollout) for _ in range(3))
    update_s = statistics.median(timed(model.train) for _ in range(3))  # an update may run on the same rollout again
    with profile(activities=[ProfilerActivity.CPU]) as rollout_profile:
        rollout()
    with profile(activities=[ProfilerActivity.CPU]) as update_profile:
        model.train()
    result: dict[str, Any] = dict(
        method=method,
        rollout_ms_per_step=1e3 * rollout_s / model.n_steps,
        update_ms_per_gradient_step=1e3 * update_s / model.n_epochs,
        rollout_ops=_top_ops(rollout_profile, rollout_s),
        update_ops=_top_ops(update_profile, update_s),
    )
    if compile_step and method.startswith("transformer_ppo"):
        result["compiled"] = compiled_step(model)
    if method == "transformer_ppo_m16":
        result["adam"] = adam_steps(model.policy.parameters())
    return result


def adam_steps(parameters: Any) -> dict[str, float]:
    """One Adam step over ``parameters`` (random gradients), ms: the loop over tensors (PyTorch's CPU default),
    ``foreach=True`` and ``fused=True`` (min of 5 runs of 100 steps)."""
    import torch

    params = [torch.nn.Parameter(p.detach().clone()) for p in parameters]
    for param in params:
        param.grad = torch.randn_like(param)
    times = {}
    settings: dict[str, dict[str, Any]] = {
        "loop": dict(foreach=False),
        "foreach": dict(foreach=True),
        "fused": dict(fused=True),
    }
    for name, kwargs in settings.items():
        optimizer = torch.optim.Adam(params, lr=1e-4, eps=1e-5, **kwargs)
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(100):
                optimizer.step()
            runs.append((time.perf_counter() - start) / 100 * 1e3)
        times[name] = min(runs)
    return times


def compiled_step(model: Any) -> dict[str, float]:
    """The memory's step for the 8 envs, eager and under ``torch.compile`` (median us of 300 calls, and compile time)."""
    import torch
    from stable_baselines3.common.utils import obs_as_tensor

    memory, state = model.policy.memory, model.policy.initial_state(model.n_envs)
    tokens = model.policy._tokens(obs_as_tensor(model._last_obs, model.device))
    starts = torch.zeros(model.n_envs)

    def per_call_us(step: Any) -> float:
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(300):
                step(tokens, state, starts)
            runs.append((time.perf_counter() - start) / 300 * 1e6)
        return min(runs)

    with torch.no_grad():
        eager = per_call_us(memory.step)
        start = time.perf_counter()
        compiled = torch.compile(memory.step, dynamic=False)
        compiled(tokens, state, starts)
        compile_s = time.perf_counter() - start
        return dict(eager_us=eager, compiled_us=per_call_us(compiled), compile_s=compile_s)


def _ops_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| op | self ms | calls | share |", "|---|---|---|---|"]
    lines += [f"| `{row['op']}` | {row['self_ms']} | {row['calls']} | {row['share']} |" for row in rows]
    return "\n".join(lines)


def write_report(results: list[dict[str, Any]], rates: dict[str, float], path: Path, note: str = "") -> str:
    import torch

    from sb3_masked_attention.io import write_text_atomic

    lines = [
        "# Where TransformerPPO's time goes",
        "",
        f"Command: `python bench/memory_profile.py{' --compile' if any('compiled' in r for r in results) else ''}` "
        f"(torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, one torch "
        f"thread). {ENV_ID} at rl-zoo's tuned `ppo_lstm` settings (8 envs, n_steps 32, one minibatch of 256, 20 "
        "epochs), as `bench/memory.py throughput` builds each method. Times: median of 3 after a warm-up; shares: an "
        "op's self time over the timed rollout (or update), from one profiled rollout (update)."
        + (f" {note}" if note else ""),
        "",
        "| method | rollout ms per step (8 envs) | update ms per gradient step |",
        "|---|---|---|",
    ]
    lines += [f"| {r['method']} | {r['rollout_ms_per_step']:.2f} | {r['update_ms_per_gradient_step']:.1f} |" for r in results]
    lines += ["", "## The arithmetic", "", "Single-thread float32 matmul on this machine:", ""]
    lines += [f"- {name}: {rate:.0f} GFLOP/s" for name, rate in rates.items()]
    lines += [
        "",
        "| method | FLOP per gradient step | achieved GFLOP/s | cached keys and values a rollout step reads |",
        "|---|---|---|---|",
    ]
    memory = {int(r["method"].rsplit("_m", 1)[1]): r for r in results if r["method"].startswith("transformer_ppo_m")}
    for memory_len, r in memory.items():
        flops = update_flops(memory_len)
        lines.append(
            f"| {r['method']} | {flops / 1e6:.0f} M | {flops / r['update_ms_per_gradient_step'] / 1e6:.1f} | "
            f"{step_bytes(memory_len) / 1e6:.2f} MB |"
        )
    if len(memory) >= 2:
        short, long = min(memory), max(memory)
        extra_ms = memory[long]["rollout_ms_per_step"] - memory[short]["rollout_ms_per_step"]
        extra_mb = (step_bytes(long) - step_bytes(short)) / 1e6
        lines += [
            "",
            f"A rollout step at memory {long} takes {extra_ms:.2f} ms more than at memory {short} for {extra_mb:.2f} MB "
            f"more of cached keys and values: {extra_mb / extra_ms:.1f} GB/s for the reads that grow with the memory.",
        ]
    for r in results:
        lines += ["", f"## {r['method']}", "", "Rollout:", "", _ops_table(r["rollout_ops"]), "", "Update:", ""]
        lines += [_ops_table(r["update_ops"])]
        if "adam" in r:
            a = r["adam"]
            lines += [
                "",
                f"One Adam step over this policy's parameters: {a['loop']:.2f} ms as a loop over tensors (PyTorch's CPU "
                f"default), {a['foreach']:.2f} ms with `foreach=True`, {a['fused']:.2f} ms with `fused=True` (the "
                "package's default since issue 34).",
            ]
        if "compiled" in r:
            c = r["compiled"]
            lines += [
                "",
                f"`torch.compile` of the memory step: {c['eager_us']:.0f} us eager, {c['compiled_us']:.0f} us "
                f"compiled, after {c['compile_s']:.0f} s of compiling.",
            ]
    text = "\n".join(lines) + "\n"
    write_text_atomic(path, text)
    return text


def main() -> None:
    from sb3_masked_attention.evaluation.study import worker_pool

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    out_option(parser)
    parser.add_argument("--compile", action="store_true", help="also time the rollout step under torch.compile")
    parser.add_argument("--note", default="", help="a sentence for the report's header (e.g. which commit ran)")
    args = parser.parse_args()
    results = []
    for method in PROFILED:
        print(f"profiling {method} ...", flush=True)
        with worker_pool(1) as pool:  # a fresh process per method, ending with this one
            results.append(pool.submit(profile_method, method, args.compile).result())
    with worker_pool(1) as pool:
        rates = pool.submit(gemm_gflops).result()
    print(write_report(results, rates, measuring_folder(args.out, "memory_profile") / "memory_profile.md", args.note))


if __name__ == "__main__":
    main()
