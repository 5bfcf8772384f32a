"""In-context evaluation of a trained AD model: key/value cache vs recomputing the context, per step.

    python bench/ad_eval.py results/ad/model          # -> <out>/ad_eval.md (--out results/benchmarks: the committed)

Both runs evaluate the same model on the 16 held-out Dark Room goals at once (batch 16), same sampling
seed, ``episodes`` consecutive episodes. Timed: the model call of each step (embedding, every layer,
the action logits), median over the steps whose context holds at least ``--min-context`` tokens.
Target (issue 6): >= 5x faster per step at contexts of >= 400 tokens.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))
from folders import measuring_folder, out_option  # noqa: E402

from sb3_masked_attention.ad.evaluate import env_goals, in_context_returns  # noqa: E402
from sb3_masked_attention.ad.train import load_ad_model  # noqa: E402
from sb3_masked_attention.io import write_text_atomic  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="AD model.pt or its run directory")
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--min-context", type=int, default=400)
    parser.add_argument("--threads", type=int, default=1)
    out_option(parser)
    args = parser.parse_args()
    out = measuring_folder(args.out, "ad_eval")
    torch.set_num_threads(args.threads)
    model, meta = load_ad_model(args.model)
    goals = env_goals(meta["env_id"], "test", meta["env_kwargs"])
    runs = {}
    for name, cached in (("cached", True), ("recomputed", False)):
        runs[name] = in_context_returns(
            model, meta["env_id"], goals, args.episodes, meta["env_kwargs"], seed=0, use_cache=cached
        )
    first = args.min_context - 1  # step index whose context first holds min_context tokens
    if first >= len(runs["cached"].step_seconds):
        raise SystemExit(f"--episodes {args.episodes} never reaches a context of {args.min_context} tokens")
    cached_s = float(np.median(runs["cached"].step_seconds[first:]))
    recomputed_s = float(np.median(runs["recomputed"].step_seconds[first:]))
    context = min(model.context_len, len(runs["cached"].step_seconds))
    lines = [
        "# AD in-context evaluation: key/value cache vs recomputation",
        "",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} thread(s). "
        f"Command: `python bench/ad_eval.py {args.model} --episodes {args.episodes} --out {out}`.",
        "",
        f"Model: {model.config['n_layers']} layers, d_model {model.config['d_model']}, {model.config['n_heads']} heads, "
        f"context {model.context_len} tokens; batch = {len(goals)} held-out goals; {args.episodes} episodes "
        f"({len(runs['cached'].step_seconds)} steps). Median model-call time over the steps with >= {args.min_context} tokens "
        f"in context (the context is {context} tokens from then on).",
        "",
        "| path | ms per step | mean return |",
        "|---|---|---|",
        f"| key/value cache (one new token per step) | {1000 * cached_s:.2f} | {runs['cached'].returns.mean():.2f} |",
        f"| recompute the whole context each step | {1000 * recomputed_s:.2f} | {runs['recomputed'].returns.mean():.2f} |",
        "",
        f"Speed-up: **{recomputed_s / cached_s:.1f}x** (target >= 5x). Returns are identical until the context first fills; "
        "after that the cache slides (deeper cached keys keep what their tokens saw before the window) while "
        "recomputation starts each window afresh, so the two runs may diverge.",
    ]
    write_text_atomic(out / "ad_eval.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
