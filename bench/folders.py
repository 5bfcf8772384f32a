"""Where a bench script writes. A measuring part writes into ``--out``, by default a new ``runs/bench/<name>-<time>``
folder: on a fresh clone it measures (rather than finding the committed rows and stopping) and it never adds to the
committed results unless told to (``--out results/benchmarks``). A part that only rewrites a report from CSVs reads
``--out`` (default: the committed results)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def out_option(parser: argparse.ArgumentParser, committed: str = "results/benchmarks") -> None:
    """``--out DIR``: the folder of a part's CSVs and report (see the module's note for the defaults)."""
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"the folder of the CSVs: measuring parts write (resumably) into it, default a new runs/bench/<script>-<time> "
        f"folder (pass {committed} to add to the committed results); report parts read it (default {committed})",
    )


def measuring_folder(out: Path | None, name: str, committed: str = "results/benchmarks") -> Path:
    """``out`` if given, else a new ``runs/bench/<name>-<time>`` folder; said on stdout either way."""
    if out is None:
        out = Path("runs") / "bench" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        print(f"writing to {out} (a new folder; --out {committed} adds to the committed results)", flush=True)
    else:
        print(f"writing to {out} (runs already there are kept)", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    return out


def say_skipped(kept: int, total: int, path: Path) -> None:
    """One line for the runs a resumable part finds already done (nothing when there are none)."""
    if kept:
        rest = "nothing to do" if kept == total else f"running the other {total - kept}"
        print(f"{kept} of {total} runs already in {path} (kept): {rest}; pass --out NEW to rerun them", flush=True)
