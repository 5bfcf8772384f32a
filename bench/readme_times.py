"""How long what the README promises takes: each quickstart script (its Python blocks, run as written in a fresh
interpreter) and, with ``--suite``, the test suite (``python -m pytest -q``, as ``make test`` runs it).

    python bench/readme_times.py [--suite] [--out results/benchmarks]   # -> <out>/readme_times.md

The load average is recorded beside the times: on a busy machine every figure grows.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside this script, however it is loaded
from folders import measuring_folder, out_option

from sb3_masked_attention.io import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]


def quickstarts() -> list[str]:
    """The Python blocks of the README's Quickstarts section, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstarts", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    """Wall seconds of ``command`` and the last line it printed (it must succeed)."""
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, (result.stdout.strip().splitlines() or [""])[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", action="store_true", help="also time the test suite")
    out_option(parser)
    args = parser.parse_args()
    out = measuring_folder(args.out, "readme_times")
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in line),
        platform.processor(),
    )
    rows = []
    for index, script in enumerate(quickstarts(), start=1):
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / "quickstart.py").write_text(script)
            seconds, last = timed([sys.executable, "quickstart.py"], Path(folder))
        rows.append((f"README quickstart script {index}", seconds, load, last))
        print(rows[-1], flush=True)
    if args.suite:
        load = os.getloadavg()[0]
        seconds, last = timed([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], ROOT)
        rows.append(("the test suite (`python -m pytest -q`)", seconds, load, last))
        print(rows[-1], flush=True)
    lines = [
        "# How long the README's promises take",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores, Python {platform.python_version()}; {time.strftime('%Y-%m-%d')}. "
        f"Command: `python bench/readme_times.py{' --suite' if args.suite else ''} --out {out}`. One run each, in turn.",
        "",
        "| what | wall time | load average at its start | its last line |",
        "|---|---|---|---|",
    ]
    lines += [f"| {what} | {seconds:.0f} s | {load:.1f} | `{last}` |" for what, seconds, load, last in rows]
    write_text_atomic(out / "readme_times.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
