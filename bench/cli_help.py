"""How long ``sb3ma --help`` and each command's ``--help`` take, beside importing torch alone (the floor that the
light command line avoids) and the package's heaviest import (what every help paid before it was light).

    python bench/cli_help.py [--repeats 5] [--out results/benchmarks]   # -> <out>/cli_help.md

Each measurement is a fresh interpreter (``python -m sb3_masked_attention.cli ...``), median of ``--repeats``, run in
turn so machine noise hits every row alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside this script, however it is loaded
from folders import measuring_folder, out_option

from sb3_masked_attention.cli_args import COMMANDS
from sb3_masked_attention.io import write_text_atomic

ROWS: dict[str, list[str]] = {
    "sb3ma --help": ["-m", "sb3_masked_attention.cli", "--help"],
    **{f"sb3ma {name} --help": ["-m", "sb3_masked_attention.cli", name, "--help"] for name in COMMANDS if name != "zoo"},
    "python -c 'import torch' (for comparison)": ["-c", "import torch"],
    "python -c 'import sb3_masked_attention.policies' (for comparison)": ["-c", "import sb3_masked_attention.policies"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    out_option(parser)
    args = parser.parse_args()
    out = measuring_folder(args.out, "cli_help")
    times: dict[str, list[float]] = {row: [] for row in ROWS}
    for _ in range(args.repeats):
        for row, command in ROWS.items():
            start = time.perf_counter()
            subprocess.run([sys.executable, *command], check=True, capture_output=True)
            times[row].append(time.perf_counter() - start)
    from sb3_masked_attention.machine import cpu_name

    cpu = cpu_name()
    lines = [
        "# Command-line start-up: `--help`",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}; load average at the start "
        f"{os.getloadavg()[0]:.1f}. Command: `python bench/cli_help.py --repeats {args.repeats} --out {out}`. Wall "
        f"seconds of a fresh interpreter, median of {args.repeats}. Target (issue 37): every `--help` under 1 s.",
        "",
        "| command | median s | min s | max s | under 1 s |",
        "|---|---|---|---|---|",
    ]
    for row, values in times.items():
        median = statistics.median(values)
        met = "" if "comparison" in row else ("yes" if median < 1 else "no")
        lines.append(f"| `{row}` | {median:.2f} | {min(values):.2f} | {max(values):.2f} | {met} |")
    write_text_atomic(out / "cli_help.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
