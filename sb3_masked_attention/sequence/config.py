"""Defaults of the event-sequence decoders: the one place they are written (``sb3ma events train`` derives its
flags here). These are the settings behind ``results/sequence`` (with ``--epochs 12``)."""

from __future__ import annotations

from dataclasses import dataclass

from sb3_masked_attention.strategies import HeadMaskStrategy

ARCHITECTURE_NAMES = ("attention", "gru")


@dataclass(frozen=True)
class SequenceTrainConfig:
    """``sb3ma events train``: architecture and optimisation (the windowing is a ``WindowConfig``).

    :param arch: ``"attention"`` (``AdvancedAttentionDecoder``) or ``"gru"`` (the no-attention baseline).
    :param input_dim: model width.
    :param n_heads: attention heads of the attention decoder.
    :param n_layers: transformer blocks (attention) or GRU layers.
    :param head_mask_strategy: head-mask strategy of the history attention.
    :param epochs: passes over the training windows (a larger value on resume trains on).
    :param batch_size: windows per update.
    :param learning_rate: peak AdamW learning rate (one epoch of warm-up, then cosine decay).
    :param val_fraction: share of sessions held out for validation (model selection).
    :param seed: seeds the split, the initialisation and the shuffling.
    """

    arch: str = "attention"
    input_dim: int = 64
    n_heads: int = 8
    n_layers: int = 2
    head_mask_strategy: HeadMaskStrategy = "diversified"
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    val_fraction: float = 0.1
    seed: int = 0

    def model_kwargs(self) -> dict:
        """Keyword arguments of the chosen architecture (the GRU has no heads)."""
        kwargs: dict = {"input_dim": self.input_dim, "n_layers": self.n_layers}
        if self.arch == "attention":
            kwargs.update(n_heads=self.n_heads, head_mask_strategy=self.head_mask_strategy)
        return kwargs
