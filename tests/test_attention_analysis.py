"""Attention capture, analysis and context compression."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import envs  # noqa: F401  (registers sb3ma/ ids)
from sb3_masked_attention.ad.compression import Hierarchical, RecentWindowSummary, TopKAttention, parse_compressor
from sb3_masked_attention.ad.data import collect_histories, save_histories
from sb3_masked_attention.ad.train import train_ad
from sb3_masked_attention.analysis.analyze import analyze_capture, attention_statistics, positions_needed, window_needed
from sb3_masked_attention.analysis.capture import AttentionRecorder, capture_ad, capture_sb3, load_capture


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "sb3_masked_attention.cli", *args], capture_output=True, text=True)


@pytest.fixture(scope="module")
def ad_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("ad")
    save_histories(collect_histories(goals=[(0, 0), (8, 8)], episodes=4, runs_per_goal=1, progress=False), root / "h.npz")
    train_ad(
        root / "h.npz",
        root / "run",
        updates=2,
        batch_size=2,
        context_len=30,
        d_model=16,
        n_layers=2,
        progress=False,
        head_mask_strategy="diversified",
    )
    return root / "run"


# ---------------------------------------------------------------- capture
def test_ad_capture_records_bounded_consistent_attention(ad_model, tmp_path):
    recorder = capture_ad(ad_model, tmp_path / "cap.npz", steps=45, full_samples=3)
    capture = load_capture(tmp_path / "cap.npz")
    assert capture["last_query"].shape == (45, 2, 8, 30) and capture["valid"].shape == (45, 30)
    assert capture["head_fractions"].tolist() == pytest.approx([0.0, 0.10, 0.25, 0.40, 0.55, 0.70, 0.85, 0.95])
    assert recorder.nbytes < 1_000_000
    # the context grows by one token a step up to the model's 30, right-aligned; positions count tokens
    assert capture["valid"].sum(1).tolist() == [min(t + 1, 30) for t in range(45)]
    assert capture["positions"][44, -1] == 44 and capture["positions"][44, 0] == 15
    sums = capture["last_query"].astype(np.float32).sum(-1)
    np.testing.assert_allclose(sums, 1.0, atol=5e-3)
    assert (capture["last_query"][~np.broadcast_to(capture["valid"][:, None, None], capture["last_query"].shape)] == 0).all()
    # the most-hidden head (95%) of a 21-token context sees only its newest 2 tokens
    assert (capture["last_query"][20, :, 7, :-2] == 0).all()
    assert capture["episode_starts"][[0, 20, 40]].all() and capture["episode_starts"].sum() == 3
    # full matrices are recomputed over the window: their last row is what the cache path recorded, in every
    # layer until the cache slides (step 44 > 30 tokens), then in the first layer only (deeper cached keys
    # still carry what their tokens saw before the window)
    assert capture["full_steps"].tolist() == [0, 22, 44]
    for index, step in enumerate(capture["full_steps"]):
        layers = slice(None) if step < 30 else slice(0, 1)
        np.testing.assert_allclose(
            capture["full_attention"][index][layers, :, -1, :].astype(np.float32),
            capture["last_query"][step][layers].astype(np.float32),
            atol=2e-3,
        )


def test_sb3_capture_reads_the_history_window(saved_model, tmp_path):
    capture_sb3(
        saved_model, "sb3ma/TMaze-v0", tmp_path / "cap.npz", steps=12, env_kwargs={"corridor_length": 3}, full_samples=2
    )
    capture = load_capture(tmp_path / "cap.npz")
    assert capture["last_query"].shape == (12, 2, 4, 6) and capture["meta"]["kind"] == "sb3"
    np.testing.assert_allclose(capture["last_query"].astype(np.float32).sum(-1), 1.0, atol=5e-3)
    assert capture["valid"][0].sum() == 1 and capture["episode_starts"][0]
    assert capture["full_attention"].shape == (2, 2, 4, 6, 6)


def test_recorder_refuses_more_steps_than_allocated():
    recorder = AttentionRecorder(1, 1, 1, 3, full_samples=0)
    recorder.record([torch.ones(1, 1)], 0)
    with pytest.raises(ValueError, match="full"):
        recorder.record([torch.ones(1, 1)], 1)


# ---------------------------------------------------------------- analysis
@settings(max_examples=40, deadline=None)
@given(weights=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30), level=st.sampled_from([0.8, 0.9, 0.95]))
def test_top_k_never_needs_more_positions_than_a_window(weights, level):
    w = np.asarray(weights) + 1e-3
    w = w / w.sum()
    k, window = positions_needed(w, level), window_needed(w, level)
    assert 1 <= k <= window <= len(w)
    assert np.sort(w)[::-1][:k].sum() >= level - 1e-6
    assert w[::-1][:window].sum() >= level - 1e-6


def synthetic_capture(weights: np.ndarray) -> dict:
    steps, context = weights.shape
    return {
        "last_query": weights[:, None, None, :].astype(np.float16),
        "valid": np.ones((steps, context), bool),
        "positions": np.arange(steps)[:, None] + np.arange(context),
        "rewards": np.zeros(steps, np.float32),
        "episode_starts": np.zeros(steps, bool),
        "full_steps": np.zeros(0, int),
        "full_attention": np.zeros((0, 1, 1, context, context)),
        "full_valid": np.zeros((0, context), bool),
        "head_fractions": np.zeros(1, np.float32),
        "meta": {"kind": "sb3"},
    }


def test_statistics_of_known_attention():
    newest = np.zeros((5, 40))
    newest[:, -1] = 1.0
    stats = attention_statistics(synthetic_capture(newest))
    assert stats["window_95_median"] == 1 and stats["top_k_95_median"] == 1
    assert stats["recent_share"].tolist() == [1.0] * 5 and stats["entropy"][0, 0] == pytest.approx(0.0)
    uniform = attention_statistics(synthetic_capture(np.full((5, 40), 1 / 40)))
    assert uniform["window_90_median"] == 36 and uniform["top_k_90_median"] == 36
    assert uniform["entropy"][0, 0] == pytest.approx(np.log(40), rel=1e-3)
    assert uniform["lookback"][0, 0] == pytest.approx(19.5, rel=1e-3)
    oldest = np.zeros((5, 40))
    oldest[:, 0] = 1.0  # everything on the oldest token: any window needs all 40, top-K needs 1
    stats = attention_statistics(synthetic_capture(oldest))
    assert stats["window_80_median"] == 40 and stats["top_k_80_median"] == 1


def test_analyze_writes_every_plot_and_the_recommendations(ad_model, tmp_path):
    capture_ad(ad_model, tmp_path / "cap.npz", steps=40, full_samples=2)
    analyze_capture(tmp_path / "cap.npz", tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == [
        "attention_analysis_comprehensive.png",
        "attention_heatmap_step0.png",
        "attention_heatmap_step39.png",
        "compression_recommendations.txt",
        "layer_head_analysis.png",
    ]
    text = (tmp_path / "out" / "compression_recommendations.txt").read_text()
    assert "recent window:" in text and "top-K: K =" in text and "hierarchy:" in text


# ---------------------------------------------------------------- compression
def tokens(n: int) -> torch.Tensor:
    return torch.arange(n, dtype=torch.float32).view(1, n, 1)


def test_recent_window_with_summaries():
    out = RecentWindowSummary(3, summaries=2).compress(tokens(9), 0)
    assert out.flatten().tolist() == [1.0, 4.0, 6.0, 7.0, 8.0]  # means of 0-2 and 3-5, then the newest 3
    assert RecentWindowSummary(3, summaries=0).compress(tokens(9), 0).flatten().tolist() == [6.0, 7.0, 8.0]
    assert RecentWindowSummary(20).compress(tokens(9), 0).shape == (1, 9, 1)


def test_hierarchical_pooling():
    out = Hierarchical(recent=2, medium=4, medium_ratio=2, distant_ratio=4).compress(tokens(14), 0)
    # distant 0-7 pooled 4:1, medium 8-11 pooled 2:1, newest 12-13 kept
    assert out.flatten().tolist() == [1.5, 5.5, 8.5, 10.5, 12.0, 13.0]


def test_top_k_keeps_anchor_newest_and_most_attended():
    compressor = TopKAttention(k=2, anchors=1)
    first = compressor.compress(tokens(6), 0)  # nothing observed yet: ties go to the newer tokens
    assert first.flatten().tolist() == [0.0, 3.0, 4.0, 5.0]
    weights = torch.tensor([0.1, 0.6, 0.05, 0.25]).view(1, 1, 1, 4)  # kept tokens 0, 3, 4, 5
    compressor.observe([weights])
    out = compressor.compress(tokens(7), 0)  # anchor 0 and newest 6 forced; 3 (0.6) and 5 (0.25) are the top 2
    assert out.flatten().tolist() == [0.0, 3.0, 5.0, 6.0]
    slid = compressor.compress(tokens(7)[:, 2:], 2)  # the anchor has left the window
    assert 0.0 not in slid.flatten().tolist() and slid.flatten()[-1] == 6.0


@pytest.mark.parametrize(
    "text, message",
    [
        ("zip:3", "unknown"),
        ("window", "takes 1 to 2"),
        ("topk:a", "takes 1 to 2"),
        ("hierarchy:4", "takes 2 to 4"),
        ("window:0", "window=0"),
    ],
)
def test_parse_compressor_rejects_bad_settings(text, message):
    with pytest.raises(ValueError, match=message):
        parse_compressor(text)


def test_parse_compressor_builds_each_kind():
    assert parse_compressor("window:64:4").name == "window:64:4"
    assert parse_compressor("topk:32").name == "topk:32:1"
    assert parse_compressor("hierarchy:40:40").name == "hierarchy:40:40:2:4"


def test_compress_command_writes_the_table(ad_model, tmp_path):
    result = run_cli(
        "attention",
        "compress",
        "--model",
        str(ad_model),
        "--out",
        str(tmp_path),
        "--episodes",
        "1",
        "--compress",
        "window:10:1",
        "topk:8",
        "hierarchy:6:8",
    )
    assert result.returncode == 0, result.stderr
    import pandas as pd

    table = pd.read_csv(tmp_path / "compression.csv")
    assert table["setting"].tolist() == ["-", "-", "window:10:1", "topk:8:1", "hierarchy:6:8:2:4"]
    assert table.loc[1, "speedup_vs_recomputed"] == pytest.approx(1.0) and (table["ms_per_step"] > 0).all()
    assert (tmp_path / "compression.png").exists() and "| strategy |" in (tmp_path / "compression.md").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["attention", "analyze", "missing.npz", "--out", "x"], "does not exist"),
        (["attention", "capture", "--model", "m.zip", "--out", "x.npz"], "--env is required"),
        (["attention", "compress", "--model", "nowhere", "--out", "x", "--compress", "bogus:1"], "unknown"),
    ],
)
def test_attention_commands_report_user_errors(args, message):
    result = run_cli(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert message in result.stderr.strip().splitlines()[-1]


def test_recent_share_is_also_reported_over_full_context_steps_only():
    # a growing context of 1..40 tokens, attention uniform over what is there: early steps are all "recent"
    weights, valid = np.zeros((40, 40)), np.zeros((40, 40), bool)
    for step in range(40):
        weights[step, 39 - step :] = 1.0 / (step + 1)
        valid[step, 39 - step :] = True
    capture = {**synthetic_capture(weights), "valid": valid}
    stats = attention_statistics(capture, recent=4)
    full = np.arange(40) + 1 >= 30  # contexts at >= 3/4 of the longest (40)
    expected = np.minimum(4, np.arange(40) + 1) / (np.arange(40) + 1)
    assert stats["full_context_steps"] == int(full.sum())
    assert stats["recent_share_full_context"] == pytest.approx(expected[full].mean(), rel=1e-3)
    assert stats["recent_share"].mean() == pytest.approx(expected.mean(), rel=1e-3)
    assert stats["recent_share_full_context"] < stats["recent_share"].mean()
