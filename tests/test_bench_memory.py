"""bench/memory.py's command line: measuring parts write into a new folder unless told to add to the committed ones."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_measuring_part_writes_into_a_new_folder_by_default(tmp_path):
    command = [sys.executable, str(ROOT / "bench" / "memory.py"), "pilot", "--methods", "mlp_framestack"]  # no variants
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "writing to runs/bench/memory-" in result.stdout and "--out results/benchmarks adds" in result.stdout
    (folder,) = (tmp_path / "runs" / "bench").iterdir()
    assert folder.name.startswith("memory-")
    assert not (ROOT / "results" / "benchmarks" / "memory_tmaze_pilot.csv").stat().st_mtime > folder.stat().st_mtime
