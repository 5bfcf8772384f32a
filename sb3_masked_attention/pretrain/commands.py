"""``sb3ma pretrain``: self-supervised pretraining of the head-masked transformer trunk (light to import: flag
defaults are read from their owners' source; the command imports what it runs)."""

from __future__ import annotations

import argparse
from typing import Any

from sb3_masked_attention.cli_args import (
    UserError,
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

CONFIG = "sb3_masked_attention.pretrain.train:PretrainConfig"
EXTRACTOR = "sb3_masked_attention.extractors.transformer:HeadMaskedTransformerExtractor.__init__"
OBJECTIVES = source_constant("sb3_masked_attention.pretrain.objectives:OBJECTIVES")


def add_subparsers(commands: Any) -> None:
    cmd = command_parser(commands, "pretrain")
    cmd.add_argument("--env", default=None, help="gymnasium id to collect history windows from")
    env_kwargs_option(cmd)
    option(
        cmd,
        CONFIG,
        "objectives",
        type=_names,
        help=f"comma-separated, losses summed: {', '.join(OBJECTIVES)}",
    )
    option(cmd, CONFIG, "updates", "--steps", type=positive_int, help="gradient updates (more on resume: trains on)")
    option(cmd, CONFIG, "inverse_horizon", type=positive_int, help="predict a_t at step t+H (2 for Euler physics)")
    option(cmd, CONFIG, "collect_steps", type=positive_int, help="environment steps (windows) to collect")
    option(cmd, CONFIG, "history_len", type=positive_int, help="must match the PPO model's")
    option(cmd, CONFIG, "normalize_keys", type=_names, help="keys standardised like the PPO run's VecNormalize")
    cmd.add_argument("--model", default=None, help="collect with this SB3 model (.zip) instead of random actions")
    cmd.add_argument("--dataset", default=None, help="train on windows saved with --save-data instead of collecting")
    cmd.add_argument("--save-data", default=None, help="also save the collected windows (.npz)")
    for name in ("d_model", "n_heads", "n_layers"):
        option(cmd, EXTRACTOR, name, type=positive_int)
    option(cmd, EXTRACTOR, "head_mask_strategy", "--strategy", type=strategy)
    option(cmd, CONFIG, "batch_size", type=positive_int)
    option(cmd, CONFIG, "learning_rate")
    option(cmd, CONFIG, "schedule", choices=["constant", "cosine"])
    option(cmd, CONFIG, "val_fraction", help="validation windows, as a share of --collect-steps")
    option(cmd, CONFIG, "eval_every", type=positive_int, help="updates between validations and checkpoints")
    option(cmd, CONFIG, "seed")
    cmd.add_argument("--out", required=True, help="saved trunk (.pt); run folder beside it (<name>.run/)")
    no_progress_option(cmd)
    threads_option(cmd)
    cmd.set_defaults(func=_cmd_pretrain)


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _cmd_pretrain(args: argparse.Namespace) -> None:
    from dataclasses import fields

    from sb3_masked_attention.pretrain.train import PretrainConfig, pretrain

    if args.env is None and args.dataset is None:
        raise UserError("sb3ma pretrain: give --env (collect windows) or --dataset (saved windows)")
    if args.env is not None:
        from sb3_masked_attention.environments import check_env_id

        check_env_id(args.env)
    set_threads(args)
    config = PretrainConfig(**{f.name: getattr(args, f.name) for f in fields(PretrainConfig)})
    extractor_kwargs = {name: getattr(args, name) for name in ("d_model", "n_heads", "n_layers", "head_mask_strategy")}
    pretrain(
        args.out,
        args.env,
        config,
        env_kwargs=dict(args.env_kwargs),
        model_path=args.model,
        dataset=args.dataset,
        save_data=args.save_data,
        extractor_kwargs=extractor_kwargs,
        progress=not args.no_progress,
    )
    print(
        f"wrote {args.out} (run folder and TensorBoard logs: {args.out.removesuffix('.pt')}.run); fine-tune with "
        f"policy_kwargs=dict(pretrained_extractor='{args.out}') or load_pretrained_extractor(model, '{args.out}')"
    )
