"""``sb3ma zoo train|enjoy``: rl-zoo's own scripts, unchanged, with the package's algorithms registered.

``python -m rl_zoo3.train`` fixes its ``--algo`` choices when it parses, so an algorithm rl-zoo does not ship cannot
be named there. ``sb3ma zoo train ARGS`` registers ``ppo_tx`` (:class:`~sb3_masked_attention.transformer_ppo.TransformerPPO`)
in rl-zoo's ``ALGOS`` and hands every argument to ``rl_zoo3.train`` (``enjoy`` to ``rl_zoo3.enjoy``), so each rl-zoo
flag works as documented by rl-zoo::

    sb3ma zoo train --algo ppo_tx --env sb3ma/TMaze-v0 --gym-packages envs --conf-file zoo_configs/ppo_tx.yml
    sb3ma zoo enjoy --algo ppo_tx --env sb3ma/TMaze-v0 --gym-packages envs -f logs/ --no-render -n 200
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

SCRIPTS = {"train": "rl_zoo3.train", "enjoy": "rl_zoo3.enjoy"}


def add_subparsers(commands: Any) -> None:
    from sb3_masked_attention.cli_args import Parser, command_parser

    zoo = command_parser(commands, "zoo")
    scripts = zoo.add_subparsers(dest="script", required=True, parser_class=Parser)
    for name, module in SCRIPTS.items():
        script = scripts.add_parser(
            name,
            help=f"python -m {module} with ppo_tx registered",
            description=f"Every argument is {module}'s (python -m {module} --help lists them), e.g. --algo ppo_tx "
            "--env sb3ma/TMaze-v0 --gym-packages envs --conf-file zoo_configs/ppo_tx.yml"
            + ("; --num-threads defaults to 1 here (rl-zoo's own default: one per core)" if name == "train" else ""),
        )
        script.set_defaults(func=_cmd_zoo, passthrough=True)


def _cmd_zoo(args: argparse.Namespace) -> None:
    import importlib

    from sb3_masked_attention.cli_args import DEFAULT_THREADS
    from sb3_masked_attention.environments import register_envs
    from sb3_masked_attention.zoo import register_algorithms

    register_envs()
    register_algorithms()
    script = importlib.import_module(SCRIPTS[args.script])
    extra = list(args.extra)
    if args.script == "train" and not any(arg.startswith("--num-threads") for arg in extra):
        extra += ["--num-threads", str(DEFAULT_THREADS)]  # rl-zoo's default is torch's, one thread per core
    sys.argv = [f"python -m {SCRIPTS[args.script]}", *extra]
    getattr(script, args.script)()
