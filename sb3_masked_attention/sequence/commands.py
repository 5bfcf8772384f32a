"""``sb3ma events synth|train|eval|generate``: the action-sequence decoder on input-event logs (light to import:
flag defaults are read from their owners' source; each command imports what it runs)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from sb3_masked_attention.cli_args import (
    Parser,
    command_parser,
    no_progress_option,
    option,
    positive_int,
    set_threads,
    strategy,
    threads_option,
)
from sb3_masked_attention.sequence.config import ARCHITECTURE_NAMES, SequenceTrainConfig

SYNTHESIZE = "sb3_masked_attention.sequence.events:synthesize_sessions"
WINDOW = "sb3_masked_attention.sequence.data:WindowConfig"
GENERATE = "sb3_masked_attention.sequence.evaluate:generate_after"


def add_subparsers(commands: Any) -> None:
    events = command_parser(commands, "events")
    sub = events.add_subparsers(dest="events_command", required=True, parser_class=Parser)

    synth = sub.add_parser("synth", help="write synthetic human-like sessions (clicks, drags, key presses) as CSV")
    synth.add_argument("--sessions", type=positive_int, required=True)
    synth.add_argument("--out", required=True, help="CSV file")
    option(synth, SYNTHESIZE, "duration", help="seconds per session")
    option(synth, SYNTHESIZE, "seed")
    option(synth, SYNTHESIZE, "prefix", help="session ids are PREFIX0000, PREFIX0001, ...")
    synth.set_defaults(func=_cmd_synth)

    train = sub.add_parser("train", help="train (or resume) a decoder; validation split by session")
    train.add_argument("--events", required=True, help="CSV: session,t,event,x,y[,enumerated columns]")
    train.add_argument("--out", required=True, help="run directory")
    option(train, SequenceTrainConfig, "arch", choices=list(ARCHITECTURE_NAMES), help="gru: the no-attention baseline")
    for name in ("epochs", "batch_size", "n_heads", "n_layers"):
        option(train, SequenceTrainConfig, name, type=positive_int)
    option(train, SequenceTrainConfig, "input_dim", "--width", type=positive_int, help="model width")
    option(train, SequenceTrainConfig, "learning_rate")
    option(train, SequenceTrainConfig, "val_fraction", help="share of sessions for validation")
    option(train, SequenceTrainConfig, "head_mask_strategy", "--strategy", type=strategy, help="head masks of the history")
    option(train, WINDOW, "history_seconds")
    option(train, WINDOW, "max_history", type=positive_int, help="most history events kept")
    option(train, WINDOW, "max_actions", type=positive_int)
    option(train, WINDOW, "pause", help="a longer gap (s) ends a sequence")
    option(train, WINDOW, "screen", type=float, nargs=2, metavar=("WIDTH", "HEIGHT"))
    option(train, SequenceTrainConfig, "seed")
    no_progress_option(train)
    threads_option(train)
    train.set_defaults(func=_cmd_train)

    evaluate = sub.add_parser("eval", help="timing/length/event/coordinate metrics vs repeat-last (and --compare models)")
    evaluate.add_argument("--model", required=True, help="run directory or model.pt")
    evaluate.add_argument("--compare", nargs="*", default=[], help="more trained models in the same table (e.g. the GRU)")
    evaluate.add_argument("--events", required=True, help="held-out sessions (CSV)")
    evaluate.add_argument("--out", default=None, help="write metrics.csv, metrics.md and timing_distribution.png here")
    option(
        evaluate,
        "sb3_masked_attention.sequence.evaluate:evaluate_event_models",
        "seed",
        help="sampling seed of the generated timing distribution",
    )
    evaluate.set_defaults(func=_cmd_eval)

    generate = sub.add_parser("generate", help="generate the next action sequence after each session of a history CSV")
    generate.add_argument("--model", required=True)
    generate.add_argument("--history", required=True, help="CSV; each session's last event is the decision point")
    generate.add_argument("--out", default=None, help="CSV of generated events (default: print)")
    option(generate, GENERATE, "greedy", help="most likely values instead of sampling")
    option(generate, GENERATE, "seed")
    generate.set_defaults(func=_cmd_generate)


def _cmd_synth(args: argparse.Namespace) -> None:
    from sb3_masked_attention.sequence.events import save_events, synthesize_sessions

    log = synthesize_sessions(args.sessions, seed=args.seed, duration=args.duration, prefix=args.prefix)
    save_events(log, args.out)
    print(f"wrote {args.out}: {len(log.sessions)} sessions, {log.n_events} events")


def _cmd_train(args: argparse.Namespace) -> None:
    from sb3_masked_attention.sequence.data import WindowConfig
    from sb3_masked_attention.sequence.train import train_sequence_model

    set_threads(args)
    config = SequenceTrainConfig(**{f.name: getattr(args, f.name) for f in fields(SequenceTrainConfig)})
    window = WindowConfig(
        history_seconds=args.history_seconds,
        max_history=args.max_history,
        max_actions=args.max_actions,
        pause=args.pause,
        screen=tuple(args.screen),
    )
    train_sequence_model(args.events, args.out, config, window=window, progress=not args.no_progress)
    print(f"wrote {args.out}/model.pt (lowest validation loss; per-epoch losses in {args.out}/training.csv)")


def _load_models(paths: Sequence[str]) -> dict:
    from sb3_masked_attention.sequence.train import load_sequence_model

    models = {}
    for path in paths:
        model, arch = load_sequence_model(path)
        models[arch if arch not in models else f"{arch}:{path}"] = model
    return models


def _cmd_eval(args: argparse.Namespace) -> None:
    from sb3_masked_attention.sequence.evaluate import evaluate_event_models, markdown_table

    table = evaluate_event_models(_load_models([args.model, *args.compare]), args.events, out=args.out, seed=args.seed)
    print(markdown_table(table), end="")
    if args.out:
        print(f"wrote {args.out}/metrics.csv, metrics.md, timing_distribution.png")


def _cmd_generate(args: argparse.Namespace) -> None:
    from sb3_masked_attention.sequence.evaluate import generate_after

    model = next(iter(_load_models([args.model]).values()))
    rows = generate_after(model, args.history, greedy=args.greedy, seed=args.seed)
    if args.out:
        from sb3_masked_attention.io import atomic_path

        with atomic_path(args.out) as tmp:
            rows.to_csv(tmp, index=False)
        print(f"wrote {args.out}: {len(rows)} generated events")
    else:
        print(rows.to_csv(index=False), end="")
