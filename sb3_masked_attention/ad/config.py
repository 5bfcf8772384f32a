"""Defaults of Algorithm Distillation: the one place they are written (``sb3ma ad train`` derives its flags here).

These are the settings that trained ``results/ad/model`` (with ``--updates 4000``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sb3_masked_attention.strategies import HeadMaskStrategy


@dataclass(frozen=True)
class ADModelConfig:
    """:class:`~sb3_masked_attention.ad.model.ADTransformer` architecture.

    :param d_model: model width.
    :param n_heads: attention heads (8 for the named head-mask strategies).
    :param n_layers: transformer blocks.
    :param ff_dim: feed-forward width.
    :param context_len: tokens (transitions) per training window (400 = 20 Dark Room episodes), and the cache length
        kept while evaluating.
    :param head_mask_strategy: a named strategy or one fraction per head.
    :param dropout: dropout on the token embeddings, train mode only.
    """

    d_model: int = 64
    n_heads: int = 8
    n_layers: int = 4
    ff_dim: int = 256
    context_len: int = 400
    head_mask_strategy: HeadMaskStrategy = "none"
    dropout: float = 0.1


@dataclass(frozen=True)
class ADTrainConfig(ADModelConfig):
    """``sb3ma ad train``: the architecture plus the optimisation.

    :param updates: gradient updates (a larger value on resume trains on).
    :param batch_size: windows per update.
    :param learning_rate: peak AdamW learning rate (warm-up over 5% of the updates, then cosine decay).
    :param checkpoint_every: updates between checkpoints (and validation).
    :param seed: seeds the initialisation, the validation split and the window sampling.
    """

    updates: int = 3000
    batch_size: int = 16
    learning_rate: float = 1e-3
    checkpoint_every: int = 250
    seed: int = 0

    def model_kwargs(self) -> dict:
        """The :class:`ADModelConfig` fields, as ``ADTransformer`` keyword arguments."""
        from dataclasses import fields

        return {f.name: getattr(self, f.name) for f in fields(ADModelConfig)}
