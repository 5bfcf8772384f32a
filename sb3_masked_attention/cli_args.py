"""What every ``sb3ma`` subcommand uses to declare its flags: argument types, the user-error type, and
:func:`option`, which takes a flag's default from the config dataclass or function that owns it, so the
command line never restates a number."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, NoReturn

import yaml

from sb3_masked_attention.source_values import source_default
from sb3_masked_attention.strategies import HeadMaskStrategy


class UserError(Exception):
    """A mistake in the command line or its inputs: reported in one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are :class:`UserError` (one line, exit status 2)."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message}")


#: Every ``sb3ma`` command: the module of ``sb3_masked_attention`` that declares and runs it, and its line in
#: ``sb3ma --help`` (in this order). The command line imports only the invoked command's module: building every
#: feature's parser first would load torch, SB3 and pandas (seconds) before ``--help`` could answer.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("training_commands", "train an env's zoo_configs/ppo.yml entry (as rl_zoo3.train would) and evaluate it"),
    "demo": ("training_commands", "train a small model on a short T-maze and print its evaluation"),
    "strategies": ("analysis.commands", "list the named head-mask strategies"),
    "masks": ("analysis.commands", "draw each head's mask as a PNG"),
    "attention": ("analysis.commands", "capture, analyse and compress attention"),
    "report": (
        "evaluation.commands",
        "rliable statistics, tables and plots from a scores CSV (method,env,seed,score[,timesteps])",
    ),
    "study": ("evaluation.commands", "resumable studies: every (method, env, seed) run of a study file"),
    "evaluate": ("evaluation.commands", "evaluate a saved model over seeds; --ablate-heads: return drop per zeroed head"),
    "train-multiscale": ("multiscale_commands", "train (or resume) PPO with the multi-scale extractors on TerritoryControl"),
    "play-multiscale": (
        "multiscale_commands",
        "play TerritoryControl with a train-multiscale model; record the game as a GIF",
    ),
    "ad": ("ad.commands", "Algorithm Distillation on Dark Room: collect, train, eval"),
    "pretrain": ("pretrain.commands", "self-supervised pretraining of the head-masked transformer trunk"),
    "events": ("sequence.commands", "action-sequence decoder on input-event logs: synth, train, eval, generate"),
    "zoo": ("rl_zoo", "rl-zoo's train/enjoy with the package's algorithms registered (--algo ppo_tx)"),
}


def command_parser(commands: Any, name: str) -> Parser:
    """Add command ``name`` (one of :data:`COMMANDS`) to ``commands`` (an ``add_subparsers`` action), its help from
    the table (also shown at the top of its own ``--help``)."""
    return commands.add_parser(name, help=COMMANDS[name][1], description=COMMANDS[name][1])


def strategy(text: str) -> HeadMaskStrategy:
    """A strategy name, or comma-separated fractions such as ``0,0.25,0.5,0.75``."""
    if "," not in text:
        return text
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid fractions {text!r}: expected numbers separated by commas") from None


def _int_at_least(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected an integer >= {minimum}")
    return value


def positive_int(text: str) -> int:
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    return _int_at_least(text, 0)


def key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"invalid {text!r}: expected KEY=VALUE")
    return key, yaml.safe_load(value)


#: What owns a flag's default: a config dataclass, a function, or a reference ``"module:qualname"`` to one, read from
#: its source without importing it (:mod:`~sb3_masked_attention.source_values`), so that ``--help`` stays light.
Source = type | Callable[..., Any] | str


def default_of(source: Source, name: str) -> Any:
    """The default of field ``name`` of a dataclass, or of parameter ``name`` of a function."""
    if isinstance(source, str):
        return source_default(source, name)
    if dataclasses.is_dataclass(source):
        for field in dataclasses.fields(source):
            if field.name == name:
                if field.default is not dataclasses.MISSING:
                    return field.default
                if field.default_factory is not dataclasses.MISSING:
                    return field.default_factory()
        raise KeyError(f"{source.__name__} has no field {name!r} with a default")
    parameter = inspect.signature(source).parameters[name]
    if parameter.default is inspect.Parameter.empty:
        raise KeyError(f"{source.__name__} has no parameter {name!r} with a default")
    return parameter.default


def option(parser: argparse.ArgumentParser, source: Source, name: str, *flags: str, **kwargs: Any) -> None:
    """Add ``--name`` (or ``flags``) whose default is ``source``'s default for ``name``.

    The type is the default's (``int``, ``float``, ``str``) unless given; a ``False`` default makes a switch;
    ``(default: ...)`` is appended to the help.
    """
    default = default_of(source, name)
    flags = flags or ("--" + name.replace("_", "-"),)
    kwargs.setdefault("dest", name)
    if default is False and "action" not in kwargs:
        parser.add_argument(*flags, action="store_true", default=False, **kwargs)
        return
    if "type" not in kwargs and "action" not in kwargs and isinstance(default, (int, float, str)) and default is not True:
        kwargs["type"] = type(default)
    shown = ",".join(map(str, default)) if isinstance(default, (list, tuple)) else default
    kwargs["help"] = f"{kwargs.get('help', '')} (default: {shown})".strip()
    parser.add_argument(*flags, default=default, **kwargs)


def env_kwargs_option(parser: argparse.ArgumentParser, help: str = "environment keyword arguments") -> None:
    parser.add_argument("--env-kwargs", type=key_value, nargs="*", default=[], metavar="KEY=VALUE", help=help)


def no_progress_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


#: torch CPU threads of a training command unless told otherwise. Measured (results/benchmarks/memory.md, threads 1 and
#: 2 side by side): these small models train as fast or faster on one thread, and torch's default of one thread per core
#: was 3-9x slower on a busy 2-core machine (the threads contend with the env and with each other).
DEFAULT_THREADS = 1


def threads_option(parser: argparse.ArgumentParser, *aliases: str) -> None:
    """``--threads N``: torch CPU threads for the command (:data:`DEFAULT_THREADS` unless given)."""
    parser.add_argument(
        "--threads",
        *aliases,
        dest="threads",
        type=positive_int,
        default=DEFAULT_THREADS,
        help=f"torch CPU threads (default: {DEFAULT_THREADS}, measured fastest for these small models)",
    )


def set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` (before any torch work of the command)."""
    import torch

    torch.set_num_threads(args.threads)
