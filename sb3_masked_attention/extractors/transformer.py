"""Head-masked transformer over a :class:`~sb3_masked_attention.wrappers.HistoryWrapper` window."""

from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_masked_attention.attention import MaskedMultiHeadAttention, TransformerBlock
from sb3_masked_attention.masks import additive_mask, as_valid, head_window_mask
from sb3_masked_attention.strategies import HeadMaskStrategy, resolve_head_mask_strategy
from sb3_masked_attention.validation import check_int
from sb3_masked_attention.wrappers import (
    ACTION_KEY,
    EPISODE_START_KEY,
    OBS_KEY,
    REWARD_KEY,
    VALID_KEY,
)

POSITIONAL_ENCODINGS = ("learned", "rotary")
#: The window extractor's head-mask strategy when none is given (0.2.0 on; heads_v2 found no mask faster to learn).
DEFAULT_HEAD_MASK_STRATEGY = "none"
#: 0.1.0's default, which a model saved by 0.1.0 without its fractions was built with.
LEGACY_DEFAULT_HEAD_MASK_STRATEGY = "specialized"


def history_layout(observation_space: spaces.Space) -> tuple[int, int]:
    """Check that ``observation_space`` is a HistoryWrapper window; return ``(history_len, token_size)``."""
    required = (OBS_KEY, ACTION_KEY, REWARD_KEY, VALID_KEY)
    if not isinstance(observation_space, spaces.Dict) or any(key not in observation_space.spaces for key in required):
        raise ValueError(
            f"observation space {observation_space} is not a HistoryWrapper window: expected a Dict with keys "
            f"{list(required)} (wrap the env in sb3_masked_attention.HistoryWrapper)"
        )
    valid = observation_space[VALID_KEY]
    if not isinstance(valid, spaces.Box) or len(valid.shape) != 1:
        raise ValueError(f"observation key {VALID_KEY!r} has space {valid}: expected a Box of shape (history_len,)")
    history_len = valid.shape[0]
    token_size = 0
    for key, space in observation_space.spaces.items():
        if not isinstance(space, spaces.Box) or len(space.shape) == 0 or space.shape[0] != history_len:
            raise ValueError(
                f"observation key {key!r} has space {space}: expected a Box whose first dimension is history_len={history_len}"
            )
        if key != VALID_KEY:
            token_size += int(np.prod(space.shape[1:]))
    return history_len, token_size


class HeadMaskedTransformerExtractor(BaseFeaturesExtractor):
    """Transformer over the history window in which each head sees its own share of the past.

    Each step of the window becomes one token (observation, previous action, previous reward
    and, if present, the episode-start flag, flattened and projected to ``d_model``). Head
    ``h`` of every layer attends only to the newest ``1 - p_h`` share of the valid history
    (:func:`~sb3_masked_attention.masks.head_window_mask`). The features are those of the
    newest position after a final LayerNorm.

    Padding is read from the ``valid`` key as ``valid > 0`` (:func:`~sb3_masked_attention.masks.as_valid`):
    exact for the raw 0/1 flags and
    unchanged by ``VecNormalize`` (a per-position increasing affine map whose running mean
    lies strictly between 0 and 1 for positions that have been both, and is 0 for positions
    never valid), so ``normalize: true`` in rl-zoo cannot corrupt the mask.

    :param observation_space: the Dict space of a :class:`~sb3_masked_attention.wrappers.HistoryWrapper`.
    :param d_model: transformer width; also the number of output features.
    :param n_heads: attention heads per layer.
    :param n_layers: number of transformer blocks.
    :param ff_dim: hidden width of the block MLPs (default ``4 * d_model``).
    :param head_mask_strategy: a name in ``HEAD_MASK_STRATEGIES`` or one fraction per head; None (the default):
        ``"none"``. The resolved fractions are saved with the weights (``head_fractions_saved``) and a loaded model
        takes the saved ones, so a model keeps its masks whatever the default; a model saved by 0.1.0 without them
        and built with the default gets 0.1.0's default, ``"specialized"``.
    :param positional: ``"learned"`` (absolute, added to the tokens) or ``"rotary"``.
    :param dropout: dropout inside the blocks; keep 0 for PPO (log-probs must match in train and eval mode).
    """

    head_fractions_saved: torch.Tensor

    def __init__(
        self,
        observation_space: spaces.Dict,
        d_model: int = 64,
        n_heads: int = 8,
        n_layers: int = 2,
        ff_dim: int | None = None,
        head_mask_strategy: HeadMaskStrategy | None = None,
        positional: str = "learned",
        dropout: float = 0.0,
    ) -> None:
        history_len, token_size = history_layout(observation_space)
        for name, value in (("d_model", d_model), ("n_heads", n_heads), ("n_layers", n_layers)):
            check_int(name, value)
        if d_model % n_heads != 0:
            raise ValueError(f"n_heads={n_heads} does not divide d_model={d_model}: expected d_model % n_heads == 0")
        if positional not in POSITIONAL_ENCODINGS:
            raise ValueError(f"positional={positional!r} is unknown: expected one of {list(POSITIONAL_ENCODINGS)}")
        if positional == "rotary" and (d_model // n_heads) % 2 != 0:
            raise ValueError(f"positional='rotary' needs an even head size, got d_model/n_heads={d_model // n_heads}")
        ff_dim = 4 * d_model if ff_dim is None else check_int("ff_dim", ff_dim)
        super().__init__(observation_space, features_dim=d_model)

        self.history_len = history_len
        self.head_fractions = resolve_head_mask_strategy(
            DEFAULT_HEAD_MASK_STRATEGY if head_mask_strategy is None else head_mask_strategy, n_heads
        )
        self._strategy_defaulted = head_mask_strategy is None
        # float64: the window sizes are computed from these, and float32 rounding could move a boundary
        self.register_buffer("head_fractions_saved", torch.tensor(self.head_fractions, dtype=torch.float64))
        #: Everything that fixes the shapes of the weights (checked when pretrained weights are loaded).
        self.config = {
            "history_len": history_len,
            "token_size": token_size,
            "d_model": d_model,
            "n_heads": n_heads,
            "n_layers": n_layers,
            "ff_dim": ff_dim,
            "positional": positional,
        }
        self.token_keys = [
            key for key in (OBS_KEY, ACTION_KEY, REWARD_KEY, EPISODE_START_KEY) if key in observation_space.spaces
        ]
        self.embed = nn.Linear(token_size, d_model)
        self.pos_embedding = nn.Parameter(torch.zeros(1, history_len, d_model)) if positional == "learned" else None
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, n_heads, ff_dim, rotary=positional == "rotary", dropout=dropout) for _ in range(n_layers)
        )
        self.ln_final = nn.LayerNorm(d_model)
        if self.pos_embedding is not None:
            nn.init.normal_(self.pos_embedding, std=0.02)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        key = prefix + "head_fractions_saved"
        if key in state_dict:  # the saved model's masks, whatever this one was built with
            saved = state_dict[key]
            if saved.shape != self.head_fractions_saved.shape:
                raise ValueError(
                    f"the saved model has {saved.shape[0]} head fractions, this extractor {len(self.head_fractions)} heads"
                )
            self.head_fractions = tuple(float(f) for f in saved.tolist())
        else:  # saved by 0.1.0: its default strategy was "specialized"
            if self._strategy_defaulted:
                self.head_fractions = resolve_head_mask_strategy(LEGACY_DEFAULT_HEAD_MASK_STRATEGY, len(self.head_fractions))
            state_dict = {**state_dict, key: torch.tensor(self.head_fractions, dtype=torch.float64)}
        super()._load_from_state_dict(state_dict, prefix, *args)

    def attention_mask(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        """The head masks the layers use for this batch: BoolTensor ``(B, H, T, T)``."""
        return head_window_mask(observations[VALID_KEY], self.head_fractions)

    def attentions(self) -> list[MaskedMultiHeadAttention]:
        """Each layer's attention module (head ablation and capture hook into them)."""
        return [cast(TransformerBlock, block).attn for block in self.blocks]

    def forward_with_attention(self, observations: dict[str, torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Features ``(B, d_model)`` and the attention weights of every layer, each ``(B, H, T, T)``."""
        return self._forward(observations, need_weights=True)

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        return self._forward(observations, need_weights=False)[0]

    def tokens(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        """One token per window step ``(B, T, token_size)``: the flattened observation, previous action, previous
        reward and (if present) episode-start flag, concatenated in :attr:`token_keys` order (see :meth:`token_slices`).

        Padding steps become zero tokens (whatever they held: masked keys get zero weight, but 0 x NaN is NaN).

        :raises ValueError: a NaN or infinite entry in a real step, naming the key.
        """
        valid = as_valid(observations[VALID_KEY], VALID_KEY)
        batch = valid.shape[0]
        tokens = torch.cat([observations[key].reshape(batch, self.history_len, -1).float() for key in self.token_keys], dim=-1)
        tokens = torch.where(valid[..., None], tokens, 0.0)
        if not bool(torch.isfinite(tokens).all()):  # one check per batch; the key is looked up only on failure
            bad = next(key for key, part in self.token_slices().items() if not bool(torch.isfinite(tokens[..., part]).all()))
            raise ValueError(
                f"observation key {bad!r} has NaN or infinite entries in real (valid) steps: the features would be "
                "NaN; check the env (HistoryWrapper refuses them at the step) or the normalisation"
            )
        return tokens

    def token_slices(self) -> dict[str, slice]:
        """Where each observation key sits inside a token, e.g. ``{"obs": slice(0, 4), "prev_action": slice(4, 6), ...}``."""
        slices, start = {}, 0
        for key in self.token_keys:
            size = int(np.prod((cast(spaces.Dict, self._observation_space)[key].shape or ())[1:]))
            slices[key], start = slice(start, start + size), start + size
        return slices

    def encode(
        self, tokens: torch.Tensor, valid: torch.Tensor, need_weights: bool = False, last_only: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The trunk: features of every position ``(B, T, d_model)`` (or the newest, ``(B, 1, d_model)``, with
        ``last_only``) from tokens ``(B, T, token_size)`` and validity ``(B, T)``; pretraining objectives call it."""
        valid = as_valid(valid)
        x = self.embed(torch.where(valid[..., None], tokens, 0.0))  # padding: zero tokens, never NaN
        if self.pos_embedding is not None:
            x = x + self.pos_embedding
        # built once, shared by every layer, additive: SDPA would turn a boolean mask into this in every call
        mask = additive_mask(head_window_mask(valid, self.head_fractions), x.dtype)
        weights = []
        for i, block in enumerate(self.blocks):
            x, layer_weights = block(
                x, mask=mask, need_weights=need_weights, last_only=last_only and i == len(self.blocks) - 1
            )
            if layer_weights is not None:
                weights.append(layer_weights)
        return self.ln_final(x), weights

    def _forward(self, observations: dict[str, torch.Tensor], need_weights: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        # Only the newest position is read: the last layer skips the others unless weights are wanted.
        valid = as_valid(observations[VALID_KEY], VALID_KEY)  # checked once; encode() takes the bool flags as they are
        features, weights = self.encode(
            self.tokens({**observations, VALID_KEY: valid}), valid, need_weights, last_only=not need_weights
        )
        return features[:, -1], weights
