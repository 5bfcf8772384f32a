import subprocess
import sys

import pytest
from stable_baselines3 import PPO

from sb3_masked_attention.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "sb3_masked_attention.cli", *args], capture_output=True, text=True)


def test_strategies_lists_every_name(capsys):
    assert main(["strategies"]) == 0
    out = capsys.readouterr().out
    assert "specialized  0.00 0.08 0.15 0.08 0.25 0.15 0.35 0.25" in out
    assert all(name in out for name in ("diversified", "none", "monotonic"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["masks", "--strategy", "bogus", "--out", "x.png"], "'bogus' is unknown"),
        (["masks", "--strategy", "0,0.5,1.5", "--out", "x.png"], "head 2: 1.5 is invalid"),
        (["masks", "--history-len", "0", "--out", "x.png"], "invalid value '0'"),
        (["train", "--env", "NoSuchEnv-v0"], "NoSuchEnv"),
        (
            ["train", "--env", "sb3ma/TMaze-v0", "--env-kwargs", "corridor_length=-1", "--total-timesteps", "64"],
            "corridor_length=-1",
        ),
        (["train", "--env", "sb3ma/TMaze-v0", "--env-kwargs", "oops"], "expected KEY=VALUE"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_user_errors_exit_2_with_one_line(args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


def test_masks_writes_a_png(tmp_path):
    out = tmp_path / "masks.png"
    assert main(["masks", "--strategy", "diversified", "--history-len", "8", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["masks.png"]  # no temporary file left behind


def test_train_saves_a_loadable_model_and_evaluates(tmp_path, capsys):
    code = main(
        [
            "train",
            "--env",
            "sb3ma/TMaze-v0",
            "--env-kwargs",
            "corridor_length=2",
            "--history-len",
            "4",
            "--strategy",
            "none",
            "--total-timesteps",
            "512",
            "--n-envs",
            "2",
            "--eval-episodes",
            "3",
            "--output-dir",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert code == 0
    assert "mean return" in capsys.readouterr().out
    model = PPO.load(tmp_path / "model.zip")
    assert model.policy.features_extractor.head_fractions == (0.0,) * 8
    assert (tmp_path / "tensorboard").is_dir()
