"""``sb3ma pretrain``: self-supervised pretraining of the head-masked transformer trunk."""

from __future__ import annotations

import argparse
from typing import Any

from sb3_masked_attention.cli_args import (
    UserError,
    env_kwargs_option,
    no_progress_option,
    option,
    positive_int,
    set_threads,
    strategy,
    threads_option,
)
from sb3_masked_attention.extractors.transformer import HeadMaskedTransformerExtractor
from sb3_masked_attention.pretrain.objectives import OBJECTIVES
from sb3_masked_attention.pretrain.train import PretrainConfig, pretrain


def add_subparsers(commands: Any) -> None:
    cmd = commands.add_parser("pretrain", help="self-supervised pretraining of the head-masked transformer trunk")
    cmd.add_argument("--env", default=None, help="gymnasium id to collect history windows from")
    env_kwargs_option(cmd)
    option(cmd, PretrainConfig, "objectives", type=_names, help=f"comma-separated, losses summed: {', '.join(OBJECTIVES)}")
    option(cmd, PretrainConfig, "updates", "--steps", type=positive_int, help="gradient updates (more on resume: trains on)")
    option(cmd, PretrainConfig, "inverse_horizon", type=positive_int, help="predict a_t at step t+H (2 for Euler physics)")
    option(cmd, PretrainConfig, "collect_steps", type=positive_int, help="environment steps (windows) to collect")
    option(cmd, PretrainConfig, "history_len", type=positive_int, help="must match the PPO model's")
    option(cmd, PretrainConfig, "normalize_keys", type=_names, help="keys standardised like the PPO run's VecNormalize")
    cmd.add_argument("--model", default=None, help="collect with this SB3 model (.zip) instead of random actions")
    cmd.add_argument("--dataset", default=None, help="train on windows saved with --save-data instead of collecting")
    cmd.add_argument("--save-data", default=None, help="also save the collected windows (.npz)")
    for name in ("d_model", "n_heads", "n_layers"):
        option(cmd, HeadMaskedTransformerExtractor.__init__, name, type=positive_int)
    option(cmd, HeadMaskedTransformerExtractor.__init__, "head_mask_strategy", "--strategy", type=strategy)
    option(cmd, PretrainConfig, "batch_size", type=positive_int)
    option(cmd, PretrainConfig, "learning_rate")
    option(cmd, PretrainConfig, "schedule", choices=["constant", "cosine"])
    option(cmd, PretrainConfig, "val_fraction", help="validation windows, as a share of --collect-steps")
    option(cmd, PretrainConfig, "eval_every", type=positive_int, help="updates between validations and checkpoints")
    option(cmd, PretrainConfig, "seed")
    cmd.add_argument("--out", required=True, help="saved trunk (.pt); run folder beside it (<name>.run/)")
    no_progress_option(cmd)
    threads_option(cmd)
    cmd.set_defaults(func=_cmd_pretrain)


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _cmd_pretrain(args: argparse.Namespace) -> None:
    from dataclasses import fields

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
