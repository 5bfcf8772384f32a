"""Picture of each head's mask: which keys every query may see."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from sb3_masked_attention.io import save_figure
from sb3_masked_attention.masks import head_window_mask


def plot_head_masks(fractions: Sequence[float], history_len: int, path: str | os.PathLike, title: str | None = None) -> None:
    """Draw the head masks of a full window (no padding) as one panel per head and save a PNG.

    :param fractions: one fraction per head.
    :param history_len: window length ``T``.
    :param path: output PNG.
    :param title: figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mask = head_window_mask(torch.ones(1, history_len, dtype=torch.bool), fractions)[0]
    n_heads = len(fractions)
    cols = min(n_heads, 4)
    rows = (n_heads + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.7 * rows + 0.6), squeeze=False)
    for h, ax in enumerate(axes.flat):
        if h >= n_heads:
            ax.axis("off")
            continue
        ax.imshow(mask[h].numpy(), cmap="Blues", vmin=0, vmax=1.3, interpolation="nearest")
        ax.set_title(f"head {h}: p={fractions[h]:.2f}", fontsize=9)
        ax.set_xlabel("key (oldest → newest)", fontsize=7)
        ax.set_ylabel("query", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(title or f"Head masks over a {history_len}-step history (blue = may attend)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
