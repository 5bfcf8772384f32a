"""Every bench script's measuring parts write into a new folder unless told, and say what they keep."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("bench_folders", ROOT / "bench" / "folders.py")
assert _spec is not None and _spec.loader is not None
folders = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(folders)


def test_the_default_is_a_new_folder_and_said(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = folders.measuring_folder(None, "core")
    assert out.is_dir() and out.parent == Path("runs") / "bench" and out.name.startswith("core-")
    assert "a new folder; --out results/benchmarks adds to the committed results" in capsys.readouterr().out
    given = folders.measuring_folder(tmp_path / "mine", "core")
    assert given == tmp_path / "mine" and given.is_dir() and "runs already there are kept" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("kept", "total", "said"),
    [
        (0, 5, ""),
        (2, 5, "2 of 5 runs already in X (kept): running the other 3"),
        (5, 5, "5 of 5 runs already in X (kept): nothing to do"),
    ],
)
def test_kept_runs_are_said(kept, total, said, capsys):
    folders.say_skipped(kept, total, Path("X"))
    printed = capsys.readouterr().out
    assert printed.startswith(said) and (not said or "pass --out NEW to rerun them" in printed)


@pytest.mark.parametrize(
    ("script", "part", "prefix", "written", "committed"),
    [
        (
            "core.py",
            ["kernel", "--batch", "2", "--history-len", "4", "--repeats", "1"],
            "core-",
            "core_kernel.csv",
            ["benchmarks/core_kernel.csv", "benchmarks/core.md", "benchmarks/core_machine.txt"],
        ),
        (
            "kv_cache.py",
            ["--contexts", "4", "--steps", "2", "--d-model", "8", "--n-heads", "2", "--n-layers", "1"],
            "kv_cache-",
            "kv_cache.md",
            ["benchmarks/kv_cache.csv", "benchmarks/kv_cache.md", "benchmarks/kv_cache_machine.txt"],
        ),
        ("territory.py", ["picture"], "territory-picture-", "territory_control.png", ["envs/territory_control.png"]),
    ],
)
def test_a_bench_script_run_bare_leaves_the_committed_results_alone(script, part, prefix, written, committed, tmp_path):
    before = {name: (ROOT / "results" / name).read_bytes() for name in committed}
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *part], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    (folder,) = (tmp_path / "runs" / "bench").iterdir()
    assert folder.name.startswith(prefix) and (folder / written).exists()
    assert {name: (ROOT / "results" / name).read_bytes() for name in committed} == before
