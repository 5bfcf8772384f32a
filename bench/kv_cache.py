"""Key/value cache vs recomputing the whole context, per generated step, on the core transformer blocks.

    python bench/kv_cache.py            # -> <out>/kv_cache.csv and kv_cache.md (--out results/benchmarks: the committed)

For each context length L: fill the context, then time ``steps`` new tokens, (a) feeding only the new
token through blocks holding a KVCache, (b) running the whole causal context again and reading the
last position (what an evaluation loop without a cache does). Same process, interleaved, median.
Target (issue 6): >= 5x faster per step at contexts of >= 400 tokens.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))
from folders import measuring_folder, out_option  # noqa: E402

from sb3_masked_attention.attention import KVCache, TransformerBlock  # noqa: E402
from sb3_masked_attention.io import append_row, read_rows, write_text_atomic  # noqa: E402
from sb3_masked_attention.masks import causal_mask  # noqa: E402


def per_step_times(blocks: torch.nn.ModuleList, context: int, steps: int, d_model: int) -> tuple[float, float]:
    tokens = torch.randn(1, context + steps, d_model)
    caches = [KVCache() for _ in blocks]
    h = tokens[:, :context]
    with torch.no_grad():
        for block, cache in zip(blocks, caches):
            h, _ = block(h, cache=cache)
        cached, recomputed = [], []
        for step in range(steps):
            new = tokens[:, context + step : context + step + 1]
            start = time.perf_counter()
            h = new
            for block, cache in zip(blocks, caches):
                h, _ = block(h, cache=cache)
            cached.append(time.perf_counter() - start)
            start = time.perf_counter()
            h = tokens[:, : context + step + 1]
            mask = causal_mask(h.shape[1])
            for i, block in enumerate(blocks):
                h, _ = block(h, mask=mask, last_only=i == len(blocks) - 1)
            recomputed.append(time.perf_counter() - start)
    return statistics.median(cached), statistics.median(recomputed)


def run(contexts: list[int], steps: int, d_model: int, n_heads: int, n_layers: int, threads: int, out: Path) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    blocks = torch.nn.ModuleList(TransformerBlock(d_model, n_heads, 4 * d_model) for _ in range(n_layers)).eval()
    for context in contexts:
        cached, recomputed = per_step_times(blocks, context, steps, d_model)
        row = {
            "context": context,
            "d_model": d_model,
            "n_heads": n_heads,
            "n_layers": n_layers,
            "threads": threads,
            "cached_ms": round(1000 * cached, 3),
            "recomputed_ms": round(1000 * recomputed, 3),
            "speedup": round(recomputed / cached, 2),
        }
        append_row(out / "kv_cache.csv", row)
        print(row)


def report(out: Path) -> None:
    table = read_rows(out / "kv_cache.csv")
    machine = out / "kv_cache_machine.txt"
    lines = [
        "# Key/value cache: per-step cost of one new token",
        "",
        f"Machine: {machine.read_text().strip() if machine.exists() else 'not recorded'}. "
        "Command: `python bench/kv_cache.py --out results/benchmarks`. Causal TransformerBlocks of the attention core, "
        "batch 1; median over the timed steps; recomputation runs the whole causal context and reads the last "
        "position (last layer computes only it). Target: >= 5x at contexts >= 400.",
        "",
        "| context | d_model | heads | layers | threads | cached ms | recomputed ms | speedup |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.context} | {r.d_model} | {r.n_heads} | {r.n_layers} | {r.threads} | {r.cached_ms} | "
            f"{r.recomputed_ms} | {r.speedup}x |"
        )
    write_text_atomic(out / "kv_cache.md", "\n".join(lines) + "\n")
    print(f"wrote {out / 'kv_cache.md'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contexts", type=int, nargs="+", default=[100, 400, 800])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--n-heads", type=int, default=4)
    parser.add_argument("--n-layers", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    out_option(parser)
    args = parser.parse_args()
    out = measuring_folder(args.out, "kv_cache")
    machine = f"{platform.processor() or platform.machine()}, torch {torch.__version__}"
    write_text_atomic(out / "kv_cache_machine.txt", machine + "\n")  # the report names the measuring machine
    run(args.contexts, args.steps, args.d_model, args.n_heads, args.n_layers, args.threads, out)
    report(out)


if __name__ == "__main__":
    main()
