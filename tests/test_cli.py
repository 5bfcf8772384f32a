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
            "--hyperparams",
            "batch_size=64",
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


TRAINING_COMMANDS = [
    ["train", "--env", "CartPole-v1"],
    ["demo"],
    ["ad", "train", "--dataset", "d.npz", "--out", "run"],
    ["train-multiscale", "--output-dir", "run"],
    ["pretrain", "--env", "CartPole-v1", "--out", "trunk.pt"],
    ["events", "train", "--events", "e.csv", "--out", "run"],
]


@pytest.mark.parametrize("argv", TRAINING_COMMANDS, ids=lambda argv: " ".join(argv[:2]))
def test_every_training_command_takes_threads_with_the_measured_default(argv, capsys):
    from sb3_masked_attention.cli import build_parser
    from sb3_masked_attention.cli_args import DEFAULT_THREADS

    parser = build_parser()
    assert parser.parse_known_args(argv)[0].threads == DEFAULT_THREADS == 1
    assert parser.parse_known_args([*argv, "--threads", "3"])[0].threads == 3
    assert main([*argv, "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err


def test_set_threads_sets_torchs_threads():
    import argparse

    import torch

    from sb3_masked_attention.cli_args import set_threads

    before = torch.get_num_threads()
    try:
        set_threads(argparse.Namespace(threads=2))
        assert torch.get_num_threads() == 2
        set_threads(argparse.Namespace(threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_zoo_train_defaults_rl_zoos_threads_to_one_unless_given(monkeypatch):
    """`sb3ma zoo train` hands rl-zoo --num-threads 1 (its own default is one thread per core); a user's value wins."""
    import rl_zoo3.train

    seen = []
    monkeypatch.setattr(rl_zoo3.train, "train", lambda: seen.append(list(sys.argv)))
    assert main(["zoo", "train", "--algo", "ppo", "--env", "CartPole-v1"]) == 0
    assert main(["zoo", "train", "--algo", "ppo", "--env", "CartPole-v1", "--num-threads", "2"]) == 0
    assert seen[0][-2:] == ["--num-threads", "1"]
    assert seen[1].count("--num-threads") == 1 and seen[1][-1] == "2"
