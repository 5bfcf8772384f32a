"""``sb3ma ad collect|train|eval``: Algorithm Distillation on Dark Room (light to import: each command imports what
it runs; flag defaults are read from their owners' source)."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

from sb3_masked_attention.ad.config import ADTrainConfig
from sb3_masked_attention.cli_args import (
    Parser,
    command_parser,
    env_kwargs_option,
    no_progress_option,
    option,
    positive_int,
    set_threads,
    strategy,
    threads_option,
)
from sb3_masked_attention.source_values import source_constant

SPLITS = ["test", "train", "all"]
COLLECT = "sb3_masked_attention.ad.data:collect_histories"
EVALUATE = "sb3_masked_attention.ad.evaluate:evaluate_ad"


def add_subparsers(commands: Any) -> None:
    ad = command_parser(commands, "ad")
    sub = ad.add_subparsers(dest="ad_command", required=True, parser_class=Parser)

    collect = sub.add_parser("collect", help="record a source algorithm's learning runs on the training goals")
    option(collect, COLLECT, "env_id", "--env", help="Dark Room id")
    env_kwargs_option(collect)
    option(collect, COLLECT, "source", choices=list(source_constant("sb3_masked_attention.ad.data:RUNNERS")))
    option(collect, COLLECT, "episodes", type=positive_int, help="episodes per learning run")
    option(collect, COLLECT, "runs_per_goal", type=positive_int)
    option(collect, COLLECT, "seed")
    collect.add_argument("--out", required=True, help="dataset .npz")
    no_progress_option(collect)
    collect.set_defaults(func=_cmd_collect)

    train = sub.add_parser("train", help="train (or resume) the causal transformer on a dataset")
    train.add_argument("--dataset", required=True, help="dataset .npz from `sb3ma ad collect`")
    train.add_argument("--out", required=True, help="run directory (resumed if it holds a checkpoint)")
    for name in ("updates", "batch_size", "context_len", "d_model", "n_heads", "n_layers", "ff_dim", "checkpoint_every"):
        option(train, ADTrainConfig, name, type=positive_int)
    option(train, ADTrainConfig, "learning_rate")
    option(
        train, ADTrainConfig, "head_mask_strategy", "--strategy", type=strategy, help="head-mask strategy name or fractions"
    )
    option(train, ADTrainConfig, "dropout", help="embedding dropout while training (none at evaluation)")
    option(train, ADTrainConfig, "seed")
    threads_option(train, "--torch-threads")
    no_progress_option(train)
    train.set_defaults(func=_cmd_train)

    evaluate = sub.add_parser("eval", help="in-context evaluation on held-out goals (no weight updates) vs the source")
    evaluate.add_argument("model", help="model.pt or its run directory")
    evaluate.add_argument("--out", required=True, help="output directory")
    option(evaluate, EVALUATE, "episodes", type=positive_int, help="consecutive episodes per goal")
    option(evaluate, EVALUATE, "split", "--goals", choices=SPLITS)
    option(evaluate, EVALUATE, "greedy", help="most likely action instead of sampling")
    evaluate.add_argument("--no-cache", action="store_true", help="recompute the context every step")
    option(evaluate, EVALUATE, "source_runs", type=positive_int, help="source learning runs per goal for its curve")
    option(evaluate, EVALUATE, "last", type=positive_int, help="episodes averaged for the final return")
    option(evaluate, EVALUATE, "seed")
    evaluate.add_argument("--compress", default=None, help="window:W[:M], topk:K[:A] or hierarchy:R:M[:r1[:r2]]")
    evaluate.set_defaults(func=_cmd_eval)


def _cmd_collect(args: argparse.Namespace) -> None:
    from sb3_masked_attention.ad.data import collect_histories, save_histories

    histories = collect_histories(
        args.env_id,
        episodes=args.episodes,
        runs_per_goal=args.runs_per_goal,
        source=args.source,
        env_kwargs=dict(args.env_kwargs),
        seed=args.seed,
        progress=not args.no_progress,
    )
    save_histories(histories, args.out)
    curve = histories.episode_returns().mean(axis=0)
    print(
        f"wrote {args.out}: {histories.n_runs} learning runs x {histories.actions.shape[1]} steps; "
        f"source return per episode {curve[0]:.2f} (first) -> {curve[-1]:.2f} (last)"
    )


def _cmd_train(args: argparse.Namespace) -> None:
    from sb3_masked_attention.ad.train import train_ad

    set_threads(args)
    config = ADTrainConfig(**{f.name: getattr(args, f.name) for f in fields(ADTrainConfig)})
    train_ad(args.dataset, args.out, config, progress=not args.no_progress)
    print(f"wrote {args.out}/model.pt (checkpoints and TensorBoard logs beside it)")


def _cmd_eval(args: argparse.Namespace) -> None:
    from sb3_masked_attention.ad.compression import parse_compressor
    from sb3_masked_attention.ad.evaluate import evaluate_ad

    compress = parse_compressor(args.compress) if args.compress else None
    summary = evaluate_ad(
        args.model,
        args.out,
        episodes=args.episodes,
        split=args.split,
        seed=args.seed,
        greedy=args.greedy,
        use_cache=not args.no_cache and compress is None,
        source_runs=args.source_runs,
        last=args.last,
        compress=compress,
        label="AD" if compress is None else f"AD ({compress.name})",
    )
    last = f"last_{args.last}_episodes"
    print(
        f"{summary['goals']} {args.split} goals, {args.episodes} episodes: "
        f"AD return {summary['first_episode']:.2f} (first) -> {summary[last]:.2f} (last {args.last}) = "
        f"{100 * summary['fraction_of_optimal']:.0f}% of optimal {summary['optimal']:.2f}; "
        f"source {summary['source_first_episode']:.2f} -> {summary['source_' + last]:.2f}; "
        f"{1000 * summary['seconds_per_step']:.2f} ms per step"
    )
    print(f"wrote {args.out}/in_context.csv, in_context.png, summary.csv")
