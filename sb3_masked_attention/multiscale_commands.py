"""``sb3ma train-multiscale`` (:mod:`~sb3_masked_attention.multiscale_training`) and ``sb3ma play-multiscale``
(:mod:`~sb3_masked_attention.multiscale_play`): light to import, so that ``--help`` answers without torch; flag
defaults are read from their owners' source and each command imports what it runs."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sb3_masked_attention.cli_args import (
    command_parser,
    key_value,
    non_negative_int,
    option,
    positive_int,
    set_threads,
    threads_option,
)
from sb3_masked_attention.source_values import source_constant

TRAINING = "sb3_masked_attention.multiscale_training"
CONFIG = f"{TRAINING}:MultiscaleConfig"
PRESETS = source_constant(f"{TRAINING}:PRESETS")


def add_subparsers(commands: Any) -> None:
    """``sb3ma train-multiscale`` and ``sb3ma play-multiscale``."""
    _add_train(commands)
    _add_play(commands)


def _add_train(commands: Any) -> None:
    cmd = command_parser(commands, "train-multiscale")
    option(cmd, CONFIG, "preset", choices=list(PRESETS), help="game settings and the zoo entry's PPO settings")
    option(cmd, CONFIG, "map_name", "--map", help="plains, islands, continents, or a .png/.npy map file")
    for name in ("map_size", "max_steps", "map_resolution", "tactical_size", "action_interval"):
        option(cmd, CONFIG, name, type=positive_int, help="None: the preset's")
    option(cmd, CONFIG, "bot_level", type=str, help="passive, expander, easy, medium or hard; None: the preset's")
    option(
        cmd,
        CONFIG,
        "local_view_size",
        type=positive_int,
        help="at most --map-size; None: the preset's, else min(256, map size)",
    )
    option(cmd, CONFIG, "num_bots", type=int, help="None: the preset's")
    cmd.add_argument("--total-timesteps", type=positive_int, default=None, help="(default: the zoo entry's n_timesteps)")
    cmd.add_argument("--n-envs", type=positive_int, default=None, help="(default: the zoo entry's)")
    cmd.add_argument("--no-attention", dest="attention", action="store_false", help="MultiScaleExtractor instead")
    option(cmd, CONFIG, "algo", choices=list(source_constant(f"{TRAINING}:ALGORITHMS")))
    cmd.add_argument("--output-dir", required=True, help="run directory (resumed if it holds checkpoints)")
    option(cmd, CONFIG, "device")
    option(cmd, CONFIG, "seed")
    for name in ("checkpoint_freq", "eval_episodes"):
        option(cmd, CONFIG, name, type=positive_int)
    for name in ("eval_freq", "attention_log_freq"):
        option(cmd, CONFIG, name, type=non_negative_int, help="0: none")
    cmd.add_argument(
        "--ppo-kwargs",
        type=key_value,
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="PPO arguments over the zoo entry's, e.g. n_epochs=2 learning_rate=1e-4 batch_size=64",
    )
    threads_option(cmd, "--torch-threads")
    cmd.add_argument(
        "--no-subprocess", dest="subprocess_envs", action="store_false", help="DummyVecEnv instead of SubprocVecEnv"
    )
    cmd.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    option(
        cmd,
        CONFIG,
        "init_from",
        type=str,
        help="curriculum: start from this model of `sb3ma train-multiscale` (e.g. a small preset's final_model.zip)",
    )
    cmd.set_defaults(func=_cmd_train_multiscale)


def _cmd_train_multiscale(args: Any) -> None:
    from sb3_masked_attention.multiscale_training import MultiscaleConfig, train_multiscale

    set_threads(args)
    fields = set(asdict(MultiscaleConfig()))
    config = MultiscaleConfig(**{key: value for key, value in vars(args).items() if key in fields})
    extractor = "MultiScaleExtractorWithAttention" if config.attention else "MultiScaleExtractor"
    print(f"Training {config.algo} + {extractor} on {config.zoo_id()} ({config.env_kwargs()}) into {args.output_dir}")
    model = train_multiscale(
        args.output_dir,
        config,
        total_timesteps=args.total_timesteps,
        n_envs=args.n_envs,
        ppo_kwargs=dict(args.ppo_kwargs),
        progress_bar=not args.no_progress,
        verbose=0 if args.no_progress else 1,
    )
    print(
        f"Done: {model.num_timesteps} steps; final_model.zip, best_model.zip, evaluations.csv, TensorBoard logs "
        f"in {args.output_dir}"
    )


def _add_play(commands: Any) -> None:
    cmd = command_parser(commands, "play-multiscale")
    cmd.add_argument("model", help="a model .zip of `sb3ma train-multiscale` (final_model.zip, best_model.zip)")
    cmd.add_argument("--preset", choices=list(PRESETS), default="small", help="the game (default: small)")
    cmd.add_argument("--bot-level", default=None, help="passive, expander, easy, medium or hard (default: the preset's)")
    cmd.add_argument("--seed", type=int, default=0, help="the game's seed (default: 0)")
    cmd.add_argument("--games", type=positive_int, default=1, help="games to play, seeds seed, seed+1, ... (default: 1)")
    cmd.add_argument("--sampled", action="store_true", help="sample actions (default: greedy)")
    cmd.add_argument("--out", default=None, help="animated GIF of the first game (default: none)")
    cmd.add_argument("--every", type=positive_int, default=4, help="a frame every this many steps (default: 4)")
    cmd.add_argument("--fps", type=float, default=8.0, help="GIF frames per second (default: 8)")
    cmd.set_defaults(func=_cmd_play)


def _cmd_play(args: Any) -> None:
    from envs.territory import TerritoryControlEnv
    from sb3_masked_attention.multiscale_play import load_multiscale_model, play_game, save_gif

    kwargs = {"preset": args.preset, **({"bot_level": args.bot_level} if args.bot_level else {})}
    env = TerritoryControlEnv(render_mode="rgb_array", **kwargs)
    model = load_multiscale_model(args.model, env)
    wins = 0
    for game in range(args.games):
        record = args.out is not None and game == 0
        info, frames = play_game(
            model, env, seed=args.seed + game, deterministic=not args.sampled, frame_every=args.every if record else None
        )
        wins += bool(info["is_success"])
        print(
            f"game {game} (seed {args.seed + game}): {'won' if info['is_success'] else 'lost'} after {info['steps']} steps, "
            f"land share {info['territory_share']:.3f}, rank {info['rank']} of {env.num_bots + 1}, return {info['return']:.3f}"
        )
        if record:
            save_gif(frames, args.out, fps=args.fps)
            print(f"wrote {args.out} ({len(frames)} frames)")
    if args.games > 1:
        print(f"won {wins} of {args.games} games ({'sampled' if args.sampled else 'greedy'} actions)")
