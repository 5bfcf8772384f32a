"""``sb3ma train`` and ``sb3ma demo`` (:mod:`sb3_masked_attention.training`): light to import, so that ``--help``
answers without torch; flag defaults are read from their owners' source and each command imports what it runs."""

from __future__ import annotations

import os
from typing import Any

from sb3_masked_attention.cli_args import (
    command_parser,
    env_kwargs_option,
    key_value,
    option,
    positive_int,
    set_threads,
    strategy,
    threads_option,
)
from sb3_masked_attention.source_values import source_default

TRAIN = "sb3_masked_attention.training:train"
EVALUATE = "sb3_masked_attention.training:evaluate"
DEMO = "sb3_masked_attention.training:DemoConfig"


def add_subparsers(commands: Any) -> None:
    """``sb3ma train`` and ``sb3ma demo``."""

    def common(parser: Any) -> None:
        option(parser, TRAIN, "seed")
        option(parser, EVALUATE, "n_episodes", "--eval-episodes", type=positive_int, help="evaluation episodes")
        parser.add_argument(
            "--output-dir", default=None, help="write model.zip, train_config.json, vecnormalize.npz, TensorBoard logs here"
        )
        parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
        threads_option(parser)

    cmd = command_parser(commands, "train")
    cmd.add_argument("--env", required=True, help="gymnasium id, e.g. sb3ma/TMaze-v0 or CartPoleNoVel-v1")
    env_kwargs_option(cmd)
    cmd.add_argument(
        "--strategy", type=strategy, default=None, help="head-mask strategy name or fractions (default: the entry's)"
    )
    cmd.add_argument(
        "--history-len", type=positive_int, default=None, help="steps in the history window (default: the entry's)"
    )
    cmd.add_argument("--total-timesteps", type=positive_int, default=None, help="(default: the entry's n_timesteps)")
    cmd.add_argument("--n-envs", type=positive_int, default=None, help="(default: the entry's)")
    cmd.add_argument(
        "--conf-file", default=None, help="rl-zoo hyperparameter file (default: the package's zoo_configs/ppo.yml)"
    )
    cmd.add_argument("--hyperparams", type=key_value, nargs="*", default=[], metavar="KEY=VALUE", help="as rl-zoo's -params")
    common(cmd)
    cmd.set_defaults(func=_cmd_train)

    demo = command_parser(commands, "demo")
    steps, corridor = source_default(DEMO, "total_timesteps"), source_default(DEMO, "corridor_length")
    demo.description = f"train {steps} steps on a {corridor}-step T-maze, print the evaluation"
    common(demo)
    demo.set_defaults(func=_cmd_demo)


def _train_and_report(env_id: str, env_kwargs: dict[str, Any], args: Any, **overrides: Any) -> None:
    from sb3_masked_attention.environments import check_env_id
    from sb3_masked_attention.training import evaluate, train

    set_threads(args)
    check_env_id(env_id)  # a bad id is refused before anything is announced
    shown = {key: str(value) if isinstance(value, os.PathLike) else value for key, value in overrides.items()}
    shown = {key: value for key, value in shown.items() if value not in (None, {})}
    print(f"Training PPO on {env_id} {env_kwargs or ''} with its zoo_configs entry {shown or ''}, seed {args.seed}")
    run = train(
        env_id,
        seed=args.seed,
        env_kwargs=env_kwargs,
        output_dir=args.output_dir,
        progress_bar=not args.no_progress,
        **overrides,
    )
    print(f"Evaluation on {env_id}: {evaluate(run, n_episodes=args.n_episodes)}")
    if args.output_dir:
        print(f"Model, rl-zoo config and TensorBoard logs in {args.output_dir}")


def _cmd_train(args: Any) -> None:
    _train_and_report(
        args.env,
        dict(args.env_kwargs),
        args,
        head_mask_strategy=args.strategy,
        history_len=args.history_len,
        total_timesteps=args.total_timesteps,
        n_envs=args.n_envs,
        hyperparams=dict(args.hyperparams),
        **({} if args.conf_file is None else {"conf_file": args.conf_file}),
    )


def _cmd_demo(args: Any) -> None:
    from sb3_masked_attention.training import DemoConfig

    demo = DemoConfig()
    _train_and_report(
        demo.env_id,
        {"corridor_length": demo.corridor_length},
        args,
        history_len=demo.history_len,
        total_timesteps=demo.total_timesteps,
    )
    print("A memoryless policy cannot beat a mean return of 0 here (50% success); remembering the cue gives 1.")
