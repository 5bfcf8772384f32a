"""Statistics and plots of a captured attention run (:mod:`sb3_masked_attention.analysis.capture`).

:func:`attention_statistics` is a small functional API over the captured arrays; :func:`analyze_capture`
(``sb3ma attention analyze``) writes the plots and ``compression_recommendations.txt`` from it.
All statistics read the newest query (the one that chooses the action), averaged over layers and heads
unless said otherwise; distance 0 is the newest token.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from sb3_masked_attention.analysis.capture import load_capture
from sb3_masked_attention.io import make_dir, save_figure, write_text_atomic

LEVELS = (0.8, 0.9, 0.95)


def by_distance(last_query: np.ndarray) -> np.ndarray:
    """Attention by distance from the newest token: ``(..., C)`` with index 0 = newest (right-aligned slots reversed)."""
    return last_query[..., ::-1]


def positions_needed(weights: np.ndarray, level: float) -> np.ndarray:
    """Fewest positions holding ``level`` of the attention, per row of ``weights (..., C)`` (any positions: top-K)."""
    ordered = -np.sort(-weights, axis=-1)
    return (np.cumsum(ordered, axis=-1) < level - 1e-6).sum(axis=-1) + 1


def window_needed(weights: np.ndarray, level: float) -> np.ndarray:
    """Smallest newest-first window holding ``level`` of the attention, per row of ``weights (..., C)``."""
    return (np.cumsum(by_distance(weights), axis=-1) < level - 1e-6).sum(axis=-1) + 1


def entropy(weights: np.ndarray) -> np.ndarray:
    """Entropy in nats over the last axis."""
    return -(weights * np.log(np.clip(weights, 1e-12, None))).sum(axis=-1)


def attention_statistics(capture: dict[str, Any], recent: int | None = None) -> dict[str, Any]:
    """The numbers behind the plots and recommendations.

    :param capture: from :func:`load_capture`.
    :param recent: tokens counted as "recent" (default: the newest tenth of the context, at least 1).
    :return: dict of arrays (per step, per distance, per layer/head) and scalar summaries.
    """
    lq = capture["last_query"].astype(np.float64)  # (S, L, H, C)
    lq = lq / np.clip(lq.sum(-1, keepdims=True), 1e-12, None)  # undo float16 rounding
    mean = lq.mean(axis=(1, 2))  # (S, C)
    context = lq.shape[-1]
    recent = max(1, context // 10) if recent is None else int(recent)
    lengths = capture["valid"].sum(axis=1)
    present = by_distance(capture["valid"]).sum(0).astype(np.float64)  # steps with a token at each distance
    present[present == 0] = np.nan
    full_context = lengths >= 0.75 * lengths.max()  # steps whose context is (nearly) as long as it gets
    stats: dict[str, Any] = {
        "steps": lq.shape[0],
        "layers": lq.shape[1],
        "heads": lq.shape[2],
        "context": context,
        "recent": recent,
        "context_length": lengths,
        "recent_share": by_distance(mean)[:, :recent].sum(-1),
        # means over the steps at which a token sat at that distance (early steps have short contexts)
        "by_distance": by_distance(mean).sum(0) / present,
        "by_distance_per_layer": by_distance(lq.mean(axis=2)).sum(0) / present,  # (L, C)
        "entropy": entropy(lq).mean(0),  # (L, H)
        "max_weight": lq.max(-1).mean(0),  # (L, H)
        "lookback": (by_distance(lq) * np.arange(context)).sum(-1).mean(0),  # (L, H) mean distance
    }
    stats["full_context_steps"] = int(full_context.sum())
    # early steps whose whole context fits in the recent window count as "all recent": report both
    stats["recent_share_full_context"] = float(stats["recent_share"][full_context].mean())
    stats["cumulative_by_distance"] = np.cumsum(by_distance(mean[full_context]), axis=-1).mean(0)
    for level in LEVELS:
        needed = positions_needed(mean, level)  # of the attention averaged over layers and heads
        window = window_needed(mean, level)
        stats[f"top_k_{int(level * 100)}"] = needed
        stats[f"window_{int(level * 100)}"] = window
        stats[f"top_k_{int(level * 100)}_median"] = float(np.median(needed[full_context]))
        stats[f"window_{int(level * 100)}_median"] = float(np.median(window[full_context]))
    stats["anchor_first_share"] = _first_token_share(capture, lq)
    stats["reward_token_share"], stats["reward_token_fraction"] = _reward_token_share(capture, mean)
    return stats


def _first_token_share(capture: dict[str, Any], lq: np.ndarray) -> float:
    """Mean attention on the run's very first token while it is still in the context (anchor check)."""
    has_first = (capture["positions"] == 0) & capture["valid"]
    rows = np.flatnonzero(has_first.any(1))
    if len(rows) == 0:
        return float("nan")
    slots = has_first[rows].argmax(1)
    return float(lq.mean(axis=(1, 2))[rows, slots].mean())


def _reward_token_share(capture: dict[str, Any], mean: np.ndarray) -> tuple[float, float]:
    """Attention on tokens that carry a reward (AD tokens carry the previous step's reward), and their share of tokens."""
    if capture["meta"].get("kind") != "ad" or capture["meta"].get("stride", 1) != 1:
        return float("nan"), float("nan")
    rewards = capture["rewards"]
    carries = np.zeros(len(rewards) + 1, dtype=bool)
    carries[1:] = rewards > 0  # token p holds the reward of step p - 1, unless p starts an episode
    carries[: len(rewards)] &= ~capture["episode_starts"]
    positions = capture["positions"] - capture["positions"][0, -1]  # recorded step index of each slot's token
    inside = capture["valid"] & (positions >= 0) & (positions < len(carries))
    flagged = np.where(inside, carries[np.clip(positions, 0, len(carries) - 1)], False)
    return float((mean * flagged).sum(1).mean()), float(flagged.sum(1).mean() / np.maximum(capture["valid"].sum(1), 1).mean())


def recommendations(stats: dict[str, Any]) -> dict[str, int]:
    """Suggested compression sizes: a recent window keeping 90% of the attention, top-K keeping 95%, and a
    hierarchy whose recent part keeps 80% and medium part (2:1) reaches 95%, the rest at 4:1."""
    context = stats["context"]
    window = int(np.ceil(stats["window_90_median"]))
    recent = int(np.ceil(stats["window_80_median"]))
    medium = max(0, int(np.ceil(stats["window_95_median"])) - recent)
    return {
        "window": window,
        "summary_tokens": max(1, (context - window) // 50),
        "top_k": int(np.ceil(stats["top_k_95_median"])),
        "hierarchy_recent": recent,
        "hierarchy_medium": medium,
        "hierarchy_medium_ratio": 2,
        "hierarchy_distant_ratio": 4,
    }


def recommendations_text(stats: dict[str, Any], capture: dict[str, Any]) -> str:
    rec = recommendations(stats)
    meta, context = capture["meta"], stats["context"]
    lines = [
        f"Attention capture: {meta.get('kind')} model {meta.get('model')} on {meta.get('env_id')}",
        f"{stats['steps']} steps recorded, {stats['layers']} layers x {stats['heads']} heads, context up to {context} tokens "
        f"(the longest reached: {int(stats['context_length'].max())}; {stats['full_context_steps']} steps at >= 3/4 of it)",
        f"head fractions (hidden oldest share): {np.round(capture['head_fractions'], 3).tolist()}",
        "",
        "Statistics (newest query, attention averaged over layers and heads; medians over steps whose context "
        "is at least 3/4 of its longest):",
    ]
    for level in LEVELS:
        p = int(level * 100)
        lines.append(
            f"  {p}% of the attention lies in the newest {stats[f'window_{p}_median']:.0f} tokens, "
            f"or in the top {stats[f'top_k_{p}_median']:.0f} tokens at any distance"
        )
    lines += [
        f"  recent share (newest {stats['recent']} tokens): mean {stats['recent_share_full_context']:.3f} over the steps "
        f"with (nearly) full context; {stats['recent_share'].mean():.3f} over all steps (early ones fit in the window)",
        f"  mean entropy per head: {np.round(stats['entropy'].mean(0), 2).tolist()} nats (uniform over "
        f"{context}: {np.log(context):.2f})",
        f"  mean look-back distance per layer: {np.round(stats['lookback'].mean(1), 1).tolist()} tokens",
    ]
    if np.isfinite(stats["anchor_first_share"]):
        lines.append(
            f"  attention on the very first token while in context: {stats['anchor_first_share']:.4f} (uniform "
            f"would be ~{1 / context:.4f})"
        )
    if np.isfinite(stats["reward_token_share"]):
        lines.append(
            f"  attention on reward-carrying tokens: {stats['reward_token_share']:.3f} "
            f"(they are {stats['reward_token_fraction']:.3f} of the tokens)"
        )
    lines += [
        "",
        "Suggested compression settings:",
        f"  recent window: {rec['window']} tokens (+ {rec['summary_tokens']} summary token(s) for the older part)",
        f"  top-K: K = {rec['top_k']} (plus the first token as an anchor and the newest token)",
        f"  hierarchy: newest {rec['hierarchy_recent']} kept, the {rec['hierarchy_medium']} before them pooled "
        "2:1, older pooled 4:1",
        f"  try: sb3ma attention compress --model MODEL --out DIR --compress window:{rec['window']}:{rec['summary_tokens']} "
        f"topk:{rec['top_k']} hierarchy:{rec['hierarchy_recent']}:{rec['hierarchy_medium']}",
    ]
    return "\n".join(lines) + "\n"


def analyze_capture(path: str | os.PathLike, out: str | os.PathLike) -> dict[str, Any]:
    """``sb3ma attention analyze``: heatmaps, the comprehensive figure, per-layer/head figure and recommendations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    capture = load_capture(path)
    stats = attention_statistics(capture)
    out = make_dir(out)
    fractions = capture["head_fractions"]
    n_layers, n_heads, context = stats["layers"], stats["heads"], stats["context"]

    from matplotlib.colors import PowerNorm

    for index, step in enumerate(capture["full_steps"]):
        n = int(capture["full_valid"][index].sum())
        matrices = capture["full_attention"][index][..., -n:, -n:].astype(np.float32)
        # weights spread over many keys are small: a square-root scale up to the 99.5th percentile keeps them visible
        norm = PowerNorm(
            0.5, vmin=0.0, vmax=max(float(np.quantile(matrices[matrices > 0], 0.995)), 1e-6) if (matrices > 0).any() else 1.0
        )
        fig, axes = plt.subplots(
            n_layers,
            n_heads,
            figsize=(1.7 * n_heads + 1.2, 1.7 * n_layers + 0.8),
            squeeze=False,
            sharex=True,
            sharey=True,
            layout="constrained",
        )
        for layer in range(n_layers):
            for head in range(n_heads):
                ax = axes[layer, head]
                image = ax.imshow(matrices[layer, head], cmap="viridis", norm=norm, aspect="auto", interpolation="nearest")
                ax.set_title(f"L{layer} H{head} hides {100 * fractions[head]:.0f}%", fontsize=7)
                ax.tick_params(labelsize=6)
            axes[layer, 0].set_ylabel("query", fontsize=7)
        for head in range(n_heads):
            axes[-1, head].set_xlabel("key", fontsize=7)
        fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight (square-root scale)")
        fig.suptitle(f"Attention at step {int(step)}: {n} tokens in context, oldest top/left (L = layer, H = head)")
        save_figure(fig, out / f"attention_heatmap_step{int(step)}.png")

    mean = capture["last_query"].astype(np.float32).mean(axis=(1, 2))
    steps = np.arange(stats["steps"])
    fig, axes = plt.subplots(2, 3, figsize=(16, 9))
    ax = axes[0, 0]
    positions = capture["positions"]
    top = int(positions.max()) + 1
    bins = min(top, 400)
    grid = np.zeros((bins, len(steps)))
    valid = capture["valid"]
    rows, cols = np.nonzero(valid)
    np.add.at(grid, (positions[rows, cols] * bins // top, rows), mean[rows, cols])
    image = ax.imshow(
        grid,
        aspect="auto",
        origin="lower",
        cmap="magma",
        extent=(0, len(steps), 0, top),
        vmax=np.quantile(grid[grid > 0], 0.99) if (grid > 0).any() else None,
    )
    fig.colorbar(image, ax=ax, label="attention (newest query)")
    ax.set(xlabel="step", ylabel="token position (absolute)", title="Attention to each position over time")
    ax = axes[0, 1]
    ax.plot(steps, stats["recent_share"], label=f"recent (newest {stats['recent']})")
    ax.plot(steps, 1 - stats["recent_share"], label="distant (older)")
    ax.set(xlabel="step", ylabel="share of attention", title="Recent vs distant attention", ylim=(0, 1))
    ax.legend()
    ax = axes[0, 2]
    ax.plot(steps, stats["context_length"])
    ax.set(xlabel="step", ylabel="tokens in context", title="Context length growth")
    ax = axes[1, 0]
    distances = np.arange(context)
    for layer in range(n_layers):
        ax.plot(distances, stats["by_distance_per_layer"][layer], label=f"layer {layer}", lw=1)
    ax.plot(distances, stats["by_distance"], color="k", lw=2, label="mean")
    ax.set_yscale("log")
    ax.set(xlabel="distance from the newest token (tokens)", ylabel="mean attention", title="Attention by relative position")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    for level in LEVELS:
        ax.plot(steps, stats[f"top_k_{int(level * 100)}"], label=f"top-K for {int(level * 100)}%")
    ax.plot(steps, stats["context_length"], color="grey", ls=":", label="context length")
    ax.set(xlabel="step", ylabel="positions needed", title="Cumulative attention: positions keeping 80/90/95%")
    ax.legend(fontsize=8)
    ax = axes[1, 2]
    ax.plot(distances + 1, stats["cumulative_by_distance"])
    for level in LEVELS:
        ax.axhline(level, color="grey", ls=":", lw=1)
        ax.axvline(stats[f"window_{int(level * 100)}_median"], color="C1", ls="--", lw=1)
    ax.set(
        xlabel="newest-first window (tokens)",
        ylabel="cumulative attention",
        title="Attention kept by a recent window",
        xscale="log",
        ylim=(0, 1.02),
    )
    fig.suptitle(f"{capture['meta'].get('kind')} model on {capture['meta'].get('env_id')}: {stats['steps']} steps")
    fig.tight_layout()
    save_figure(fig, out / "attention_analysis_comprehensive.png")

    fig, axes = plt.subplots(1, 3, figsize=(16, 0.6 * n_layers + 3))
    for ax, key, title, unit in (
        (axes[0], "entropy", "Entropy of the newest query", "nats"),
        (axes[1], "max_weight", "Largest attention weight", "weight"),
        (axes[2], "lookback", "Mean look-back distance", "tokens"),
    ):
        values = stats[key]
        image = ax.imshow(values, cmap="viridis", aspect="auto")
        fig.colorbar(image, ax=ax, label=unit)
        for (layer, head), value in np.ndenumerate(values):
            ax.text(
                head, layer, f"{value:.2f}" if value < 10 else f"{value:.0f}", ha="center", va="center", fontsize=7, color="w"
            )
        ax.set(xlabel="head", ylabel="layer", title=title, xticks=range(n_heads), yticks=range(n_layers))
        ax.set_xticklabels([f"{h}\n{100 * fractions[h]:.0f}%" for h in range(n_heads)], fontsize=7)
    fig.suptitle("Per layer and head (head labels: hidden share of the oldest history)")
    fig.tight_layout()
    save_figure(fig, out / "layer_head_analysis.png")

    write_text_atomic(out / "compression_recommendations.txt", recommendations_text(stats, capture))
    return stats
