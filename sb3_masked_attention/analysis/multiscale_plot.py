"""Picture of what a multi-scale extractor attends to on one observation."""

from __future__ import annotations

import os

import numpy as np
import torch

from sb3_masked_attention.io import save_figure


def plot_multiscale_attention(
    observation: dict[str, np.ndarray], maps: dict[str, torch.Tensor], path: str | os.PathLike, title: str | None = None
) -> None:
    """One row per map: the map's first channels as an RGB picture, then each spatial attention map of
    its branch drawn over the map; a last panel with the scale weights and the cross-attention weights per scale.

    :param observation: one observation (channel-first maps, no batch axis), as the env returns it.
    :param maps: :meth:`MultiScaleExtractorWithAttention.forward_with_attention` maps for a batch
        holding it (index 0 is drawn).
    :param path: output PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [key for key, value in observation.items() if np.ndim(value) == 3]
    spatial = {key: sorted(name for name in maps if name.startswith(f"{key}/spatial_")) for key in keys}
    cols = 1 + max((len(names) for names in spatial.values()), default=0)
    fig, axes = plt.subplots(len(keys) + 1, cols, figsize=(3.2 * cols, 3.0 * (len(keys) + 1)), squeeze=False)
    for row, key in enumerate(keys):
        picture = np.asarray(observation[key], dtype=np.float32)[:3] / 255.0
        axes[row, 0].imshow(np.moveaxis(np.pad(picture, ((0, 3 - len(picture)), (0, 0), (0, 0))), 0, -1))
        axes[row, 0].set_title(f"{key}\nchannels 0-2 as RGB", fontsize=8)
        # The gates drawn over the map in grey (the same extent), so a gate can be read against the land under it.
        # Channels 0-2 in grey levels of their own (TerritoryControl: own bright, neutral mid, enemy dark).
        channels = np.asarray(observation[key], dtype=np.float32)[:3] / 255.0
        grey = np.tensordot(np.array([1.0, 0.3, 0.65])[: len(channels)], channels, axes=1)
        for col, name in enumerate(spatial[key], start=1):
            axes[row, col].imshow(grey, cmap="gray", vmin=0.0, vmax=1.0, extent=(0, 1, 1, 0))
            gate = maps[name][0].detach().cpu().numpy()
            image = axes[row, col].imshow(gate, cmap="magma", vmin=0.0, vmax=1.0, alpha=0.7, extent=(0, 1, 1, 0))
            axes[row, col].set_title(f"{name}\nsigmoid gate over the map", fontsize=8)
            fig.colorbar(image, ax=axes[row, col], fraction=0.046)
        for col in range(cols):
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
        for col in range(1 + len(spatial[key]), cols):
            axes[row, col].axis("off")
    bottom = axes[len(keys), 0]
    x = np.arange(len(keys))
    if "scale_weights" in maps:
        bottom.bar(x - 0.2, maps["scale_weights"].detach().cpu().numpy(), width=0.4, label="scale weight (softmax)")
    if "cross_attention" in maps:
        bottom.bar(
            x + 0.2,
            maps["cross_attention"][0].mean(0).detach().cpu().numpy(),
            width=0.4,
            label="cross-attention (mean of heads)",
        )
    bottom.set_xticks(x, keys, fontsize=8)
    bottom.set_ylabel("weight")
    bottom.set_ylim(0, 1)
    bottom.legend(fontsize=7)
    bottom.set_title("fusion: weight of each scale", fontsize=9)
    for col in range(1, cols):
        axes[len(keys), col].axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
