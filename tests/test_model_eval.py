"""sb3ma evaluate: seeds, head ablation hooks, CLI."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import torch
from stable_baselines3 import PPO

import envs  # noqa: F401  (registers sb3ma/ ids)
from sb3_masked_attention.evaluation.model_eval import ablate_head, evaluate_model, make_eval_env, transformer_of


def test_ablation_zeroes_one_head_and_is_undone(saved_model):
    model = PPO.load(saved_model)
    extractor = transformer_of(model)
    env = make_eval_env(model, "sb3ma/TMaze-v0", seed=0, env_kwargs={"corridor_length": 3})
    obs = env.reset()
    for _ in range(3):
        obs, *_ = env.step([0])
    obs_tensor, _ = model.policy.obs_to_tensor(obs)
    with torch.no_grad():
        intact = extractor(obs_tensor)
        captured = []
        with ablate_head(extractor, head=2, layer=1):  # pre-hooks run in order: this one sees the ablated input
            hook = extractor.blocks[1].attn.out_proj.register_forward_pre_hook(lambda m, a: captured.append(a[0].clone()))
            ablated = extractor(obs_tensor)
            hook.remove()
        again = extractor(obs_tensor)
    head_dim = extractor.blocks[0].attn.head_dim
    assert torch.count_nonzero(captured[0][..., 2 * head_dim : 3 * head_dim]) == 0  # the head's slice is zero
    assert torch.count_nonzero(captured[0][..., :head_dim]) > 0  # the others are not
    assert not torch.allclose(intact, ablated)
    torch.testing.assert_close(again, intact)  # hooks removed


def test_evaluate_with_ablation_rows(saved_model, tmp_path):
    out = tmp_path / "eval.csv"
    table = evaluate_model(
        saved_model, "sb3ma/TMaze-v0", episodes=2, seeds=[0, 1], env_kwargs={"corridor_length": 3}, ablate_heads=True, out=out
    )
    assert len(table) == 2 * (1 + 4 + 2 * 4)
    intact = table[table["ablated_head"] == -1]
    assert (intact["drop"] == 0).all()
    merged = table.merge(intact[["seed", "mean_return"]], on="seed", suffixes=("", "_intact"))
    pd.testing.assert_series_equal(merged["drop"], merged["mean_return_intact"] - merged["mean_return"], check_names=False)
    pd.testing.assert_frame_equal(pd.read_csv(out, dtype={"layer": str}), table, check_dtype=False)


def test_evaluate_cli(saved_model, tmp_path):
    command = [
        sys.executable,
        "-m",
        "sb3_masked_attention.cli",
        "evaluate",
        str(saved_model),
        "--env",
        "sb3ma/TMaze-v0",
        "--env-kwargs",
        "corridor_length=3",
        "--episodes",
        "2",
        "--seeds",
        "0",
        "--ablate-heads",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "intact model" in result.stdout and "head 3 zeroed (layer 1)" in result.stdout
    bad = subprocess.run([*command[:4], str(tmp_path / "missing.zip"), *command[5:]], capture_output=True, text=True)
    assert bad.returncode == 2 and "does not exist" in bad.stderr
