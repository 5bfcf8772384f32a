"""``sb3ma strategies``, ``sb3ma masks`` and ``sb3ma attention capture|analyze|compress``.

Light to import (``--help``): the flags' defaults are read from their owners' source; each command imports what it
runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sb3_masked_attention.ad.commands import SPLITS
from sb3_masked_attention.cli_args import Parser, UserError, command_parser, env_kwargs_option, option, positive_int, strategy
from sb3_masked_attention.strategies import HEAD_MASK_STRATEGIES, resolve_head_mask_strategy

CAPTURE_AD = "sb3_masked_attention.analysis.capture:capture_ad"
COMPARE_COMPRESSION = "sb3_masked_attention.ad.evaluate:compare_compression"


def add_subparsers(commands: Any) -> None:
    command_parser(commands, "strategies").set_defaults(func=_cmd_strategies)

    masks = command_parser(commands, "masks")
    option(
        masks,
        "sb3_masked_attention.extractors.transformer:HeadMaskedTransformerExtractor.__init__",
        "head_mask_strategy",
        "--strategy",
        type=strategy,
        help="name or fractions",
    )
    option(masks, "sb3_masked_attention.wrappers:HistoryWrapper.__init__", "history_len", type=positive_int)
    masks.add_argument("--out", required=True, help="output PNG")
    masks.set_defaults(func=_cmd_masks)

    attention = command_parser(commands, "attention")
    sub = attention.add_subparsers(dest="attention_command", required=True, parser_class=Parser)
    capture = sub.add_parser("capture", help="record attention while a model acts (AD model.pt or SB3 .zip)")
    capture.add_argument("--model", required=True, help="AD model.pt (or its directory) or an SB3 model .zip")
    capture.add_argument("--env", default=None, help="gymnasium id (SB3 models; AD models use their training env)")
    env_kwargs_option(capture)
    option(
        capture,
        "sb3_masked_attention.analysis.capture:capture_sb3",
        "algo",
        choices=["ppo", "a2c", "maskable_ppo"],
        help="SB3 models",
    )
    capture.add_argument("--goal", type=_goal, default=None, help="AD: goal X,Y (default: the first held-out goal)")
    option(capture, CAPTURE_AD, "steps", type=positive_int, help="steps recorded")
    option(capture, CAPTURE_AD, "stride", type=positive_int, help="record every k-th step (long runs)")
    option(capture, CAPTURE_AD, "full_samples", help="steps whose full query-by-key matrices are kept")
    option(capture, CAPTURE_AD, "seed")
    capture.add_argument("--out", required=True, help="output .npz")
    capture.set_defaults(func=_cmd_capture)

    analyze = sub.add_parser("analyze", help="plots and compression recommendations from a capture")
    analyze.add_argument("capture", help="capture .npz")
    analyze.add_argument("--out", required=True, help="output directory")
    analyze.set_defaults(func=_cmd_analyze)

    compress = sub.add_parser("compress", help="return and speed of context-compression settings (AD models)")
    compress.add_argument("--model", required=True, help="AD model.pt or its directory")
    compress.add_argument(
        "--compress", nargs="+", required=True, help="settings: window:W[:M] topk:K[:A] hierarchy:R:M[:r1[:r2]]"
    )
    option(compress, COMPARE_COMPRESSION, "episodes", type=positive_int)
    option(compress, COMPARE_COMPRESSION, "split", "--goals", choices=SPLITS)
    option(compress, COMPARE_COMPRESSION, "repeats", type=positive_int, help="action-sampling seeds per setting")
    option(compress, COMPARE_COMPRESSION, "seed")
    compress.add_argument("--out", required=True, help="output directory")
    compress.set_defaults(func=_cmd_compress)


def _goal(text: str) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid goal {text!r}: expected X,Y") from None
    return x, y


def _cmd_strategies(args: argparse.Namespace) -> None:
    for name, fractions in HEAD_MASK_STRATEGIES.items():
        print(f"{name:12s} " + " ".join(f"{p:.2f}" for p in fractions))


def _cmd_masks(args: argparse.Namespace) -> None:
    from sb3_masked_attention.analysis.masks_plot import plot_head_masks

    chosen = args.head_mask_strategy
    fractions = resolve_head_mask_strategy(chosen, len(chosen) if isinstance(chosen, list) else 8)
    name = chosen if isinstance(chosen, str) else "custom"
    title = f"'{name}' head masks, {args.history_len}-step history (blue = may attend)"
    plot_head_masks(fractions, args.history_len, args.out, title=title)
    print(f"wrote {args.out}")


def _cmd_capture(args: argparse.Namespace) -> None:
    from sb3_masked_attention.analysis.capture import capture_ad, capture_sb3

    if Path(args.model).suffix == ".zip":
        if not args.env:
            raise UserError("sb3ma attention capture: --env is required for an SB3 model (.zip)")
        recorder = capture_sb3(
            args.model,
            args.env,
            args.out,
            args.steps,
            algo=args.algo,
            env_kwargs=dict(args.env_kwargs),
            stride=args.stride,
            full_samples=args.full_samples,
            seed=args.seed,
        )
    else:
        recorder = capture_ad(
            args.model,
            args.out,
            args.steps,
            goal=args.goal,
            stride=args.stride,
            full_samples=args.full_samples,
            seed=args.seed,
        )
    layers, heads = recorder.last_query.shape[1:3]
    print(
        f"wrote {args.out}: {recorder.count} steps, {layers} layers x {heads} heads x {recorder.context} context, "
        f"{len(recorder.full_steps)} full matrices ({recorder.nbytes / 2**20:.1f} MiB in memory)"
    )


def _cmd_analyze(args: argparse.Namespace) -> None:
    from sb3_masked_attention.analysis.analyze import analyze_capture

    analyze_capture(args.capture, args.out)
    print((Path(args.out) / "compression_recommendations.txt").read_text(), end="")
    print(f"wrote {args.out}: attention_heatmap_step*.png, attention_analysis_comprehensive.png, layer_head_analysis.png")


def _cmd_compress(args: argparse.Namespace) -> None:
    from sb3_masked_attention.ad.evaluate import compare_compression

    table = compare_compression(
        args.model, args.out, args.compress, episodes=args.episodes, split=args.split, seed=args.seed, repeats=args.repeats
    )
    for r in table.itertuples():
        name = r.setting if r.setting != "-" else r.strategy
        print(
            f"{name:28s} return {r.mean_return:6.2f} ({r.return_change_pct:+6.1f}%)  {r.ms_per_step:6.2f} ms/step  "
            f"{r.speedup_vs_recomputed:5.2f}x vs recomputed, {r.speedup_vs_cached:5.2f}x vs cached"
        )
    print(f"wrote {args.out}/compression.csv, compression.md, compression.png")
