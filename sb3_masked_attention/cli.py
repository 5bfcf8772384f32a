"""``sb3ma``: the command line of sb3-masked-attention, a dispatcher.

Each feature owns its subcommands next to its code (an ``add_subparsers(commands)`` and the command
functions); their flags take their defaults from the feature's config dataclass or function. User
mistakes (unknown strategy or env, bad number, missing file) exit with status 2 and one line, no traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import gymnasium as gym

from sb3_masked_attention.cli_args import Parser, UserError
from sb3_masked_attention.io import release_all_folder_locks


def build_parser() -> Parser:
    """The ``sb3ma`` parser, its subcommands in the order the README lists them."""
    from sb3_masked_attention import multiscale_play, multiscale_training, rl_zoo, training
    from sb3_masked_attention.ad import commands as ad
    from sb3_masked_attention.analysis import commands as analysis
    from sb3_masked_attention.evaluation import commands as evaluation
    from sb3_masked_attention.pretrain import commands as pretrain
    from sb3_masked_attention.sequence import commands as sequence

    parser = Parser(prog="sb3ma", description="Head-masked attention for Stable-Baselines3.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for feature in (training, analysis, evaluation, multiscale_training, multiscale_play, ad, pretrain, sequence, rl_zoo):
        feature.add_subparsers(commands)
    return parser


#: The longest error line printed: a message that quotes a hostile value is cut, never megabytes long.
MAX_ERROR_CHARS = 2000


def _bounded(message: str) -> str:
    """``message`` on one line, cut to :data:`MAX_ERROR_CHARS` characters."""
    message = " ".join(message.splitlines())
    if len(message) <= MAX_ERROR_CHARS:
        return message
    return f"{message[:MAX_ERROR_CHARS]}... ({len(message) - MAX_ERROR_CHARS} more characters)"


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra and not getattr(args, "passthrough", False):  # only `sb3ma zoo` hands arguments on (to rl-zoo)
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.extra = extra
        args.func(args)
    except UserError as error:
        print(_bounded(str(error)), file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, gym.error.Error) as error:
        print(_bounded(f"sb3ma: error: {error}"), file=sys.stderr)
        return 2
    except (FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError) as error:
        # a path the user gave that cannot be written where a file or folder is expected
        print(f"sb3ma: error: {error.filename!r}: {error.strerror}", file=sys.stderr)
        return 2
    finally:
        release_all_folder_locks()  # the command is over, finished or refused: its folders are free
    return 0


if __name__ == "__main__":
    sys.exit(main())
