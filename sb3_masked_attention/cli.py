"""``sb3ma``: the command line of sb3-masked-attention, a dispatcher.

Each feature owns its subcommands in a light module (an ``add_subparsers(commands)`` and the command functions, which
import what they run), named in :data:`~sb3_masked_attention.cli_args.COMMANDS`; their flags take their defaults
from the feature's config dataclass or function, read from its source. Only the invoked command's module is
imported, so ``--help`` answers without loading torch. User mistakes (unknown strategy or env, bad number, missing
file) exit with status 2 and one line, no traceback.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterable, Sequence

from sb3_masked_attention.cli_args import COMMANDS, Parser, UserError
from sb3_masked_attention.io import release_all_folder_locks


def build_parser(load: Iterable[str] | None = None) -> Parser:
    """The ``sb3ma`` parser, its subcommands in :data:`~sb3_masked_attention.cli_args.COMMANDS`' order.

    :param load: the commands whose feature module is imported to declare their flags (``None``: every command);
        the others are listed by name and help only, so that a command (or ``--help``) loads just its own feature.
    """
    parser = Parser(prog="sb3ma", description="Head-masked attention for Stable-Baselines3.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    modules = {COMMANDS[name][0] for name in (COMMANDS if load is None else load)}
    for module in dict.fromkeys(module for module, _ in COMMANDS.values()):  # each feature once, in order
        if module in modules:
            importlib.import_module(f"sb3_masked_attention.{module}").add_subparsers(commands)
    for name, (_, help_line) in COMMANDS.items():
        if name not in commands.choices:
            commands.add_parser(name, help=help_line)
    return parser


def _invoked(argv: Sequence[str]) -> list[str]:
    """The command named on the command line (its first word that is not an option), if it is one."""
    words = [word for word in argv if not word.startswith("-")]
    return [words[0]] if words and words[0] in COMMANDS else []


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
        argv = sys.argv[1:] if argv is None else list(argv)
        parser = build_parser(load=_invoked(argv))
        args, extra = parser.parse_known_args(argv)
        if extra and not getattr(args, "passthrough", False):  # only `sb3ma zoo` hands arguments on (to rl-zoo)
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.extra = extra
        args.func(args)
    except UserError as error:
        print(_bounded(str(error)), file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as error:
        print(_bounded(f"sb3ma: error: {error}"), file=sys.stderr)
        return 2
    except (FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError) as error:
        # a path the user gave that cannot be written where a file or folder is expected
        print(f"sb3ma: error: {error.filename!r}: {error.strerror}", file=sys.stderr)
        return 2
    except Exception as error:
        gym_error = sys.modules.get("gymnasium.error")  # loaded by any command that made an env; --help does not
        if gym_error is None or not isinstance(error, gym_error.Error):  # an unknown env id, a bad env setting
            raise
        print(_bounded(f"sb3ma: error: {error}"), file=sys.stderr)
        return 2
    finally:
        release_all_folder_locks()  # the command is over, finished or refused: its folders are free
    return 0


if __name__ == "__main__":
    sys.exit(main())
