"""The Algorithm Distillation transformer: a causal transformer over a learning history, across episodes,
that predicts the source algorithm's next action.

**One token per transition.** Token ``t`` embeds what the agent knows when it picks action ``a_t``:
the observation ``o_t``, the previous action ``a_{t-1}`` and reward ``r_{t-1}`` (the reward of arriving
at ``o_t``; a "none" action and reward 0 at an episode's first step) and the step index inside the
episode. The output at token ``t`` is the logits of ``a_t``. Contexts span several episodes, so the
model can learn from rewards it received earlier (in-context reinforcement learning).

Positions are rotary (relative), so a window cut anywhere in a history, and a key/value cache that
slides past the training context length, both look like what the model was trained on. Head-mask
strategies apply as in the history extractor: head ``h`` sees only the newest ``1 - p_h`` share of
the context before each token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from sb3_masked_attention.ad.config import ADModelConfig
from sb3_masked_attention.attention import KVCache, TransformerBlock
from sb3_masked_attention.masks import head_window_mask, head_window_row
from sb3_masked_attention.strategies import HeadMaskStrategy, resolve_head_mask_strategy
from sb3_masked_attention.validation import check_int

MAX_VALUES_PER_DIM = 256  # beyond this an observation dimension is not treated as a grid coordinate


class ADTransformer(nn.Module):
    """Causal transformer policy over ``(o_t, a_{t-1}, r_{t-1}, step)`` tokens.

    :param n_actions: discrete actions.
    :param obs_low: lower bound of each observation dimension (integers: grid coordinates).
    :param obs_high: upper bound of each observation dimension.
    :param episode_length: steps per episode (size of the step-index embedding).
    :param d_model: model width.
    :param n_heads: attention heads (8 for the named head-mask strategies).
    :param n_layers: transformer blocks.
    :param ff_dim: feed-forward width.
    :param context_len: tokens per training window, and the cache length kept while evaluating.
    :param head_mask_strategy: a named strategy or one fraction per head.
    :param dropout: dropout on the token embeddings, train mode only (this model is trained offline, not by PPO;
        attention-weight dropout is left out: with a mask it takes SDPA off its fused path, 6x slower on CPU).
    """

    obs_low: torch.Tensor
    obs_offsets: torch.Tensor
    obs_max: torch.Tensor

    def __init__(
        self,
        n_actions: int,
        obs_low: Sequence[float],
        obs_high: Sequence[float],
        episode_length: int,
        d_model: int = ADModelConfig.d_model,
        n_heads: int = ADModelConfig.n_heads,
        n_layers: int = ADModelConfig.n_layers,
        ff_dim: int = ADModelConfig.ff_dim,
        context_len: int = ADModelConfig.context_len,
        head_mask_strategy: HeadMaskStrategy = ADModelConfig.head_mask_strategy,
        dropout: float = ADModelConfig.dropout,
    ) -> None:
        super().__init__()
        low, high = np.asarray(obs_low, dtype=np.float64), np.asarray(obs_high, dtype=np.float64)
        if low.shape != high.shape or low.ndim != 1 or not np.all(high >= low):
            raise ValueError(f"obs_low={list(low)} and obs_high={list(high)} must be equal-length lists with high >= low")
        sizes = high - low + 1
        if not (np.all(np.isfinite(sizes)) and np.all(low == np.round(low)) and np.all(sizes <= MAX_VALUES_PER_DIM)):
            raise ValueError(
                f"observation bounds {list(low)}..{list(high)} are not a small integer grid: "
                f"expected integer bounds with at most {MAX_VALUES_PER_DIM} values per dimension"
            )
        self.head_fractions = resolve_head_mask_strategy(head_mask_strategy, n_heads)
        self.config: dict[str, Any] = {
            "n_actions": check_int("n_actions", n_actions),
            "obs_low": low.tolist(),
            "obs_high": high.tolist(),
            "episode_length": check_int("episode_length", episode_length),
            "d_model": check_int("d_model", d_model),
            "n_heads": n_heads,
            "n_layers": check_int("n_layers", n_layers),
            "ff_dim": check_int("ff_dim", ff_dim),
            "context_len": check_int("context_len", context_len),
            "head_mask_strategy": head_mask_strategy if isinstance(head_mask_strategy, str) else list(self.head_fractions),
            "dropout": float(dropout),
        }
        self.n_actions, self.context_len = n_actions, context_len
        self._masks: dict[tuple[int, str], torch.Tensor] = {}
        self.register_buffer("obs_low", torch.as_tensor(low, dtype=torch.float32), persistent=False)
        self.register_buffer(
            "obs_offsets", torch.as_tensor(np.r_[0, np.cumsum(sizes)[:-1]], dtype=torch.long), persistent=False
        )
        self.register_buffer("obs_max", torch.as_tensor(sizes - 1, dtype=torch.long), persistent=False)
        self.obs_embedding = nn.Embedding(int(sizes.sum()), d_model)  # one table, each dimension at its offset
        self.action_embedding = nn.Embedding(n_actions + 1, d_model)  # index n_actions = "no previous action"
        self.reward_embedding = nn.Linear(1, d_model)
        self.step_embedding = nn.Embedding(episode_length, d_model)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TransformerBlock(d_model, n_heads, ff_dim, rotary=True) for _ in range(n_layers))
        self.ln_out = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, n_actions)

    def embed(
        self, obs: torch.Tensor, prev_action: torch.Tensor, prev_reward: torch.Tensor, step: torch.Tensor
    ) -> torch.Tensor:
        """Tokens ``(B, T, d_model)`` from ``obs (B, T, obs_dim)``, ``prev_action``, ``prev_reward``, ``step`` ``(B, T)``."""
        cells = torch.round(obs - self.obs_low).long().clamp(min=0)
        cells = torch.minimum(cells, self.obs_max) + self.obs_offsets
        return self.dropout(
            self.obs_embedding(cells).sum(dim=-2)
            + self.action_embedding(prev_action)
            + self.reward_embedding(prev_reward.unsqueeze(-1).float())
            + self.step_embedding(step.clamp(0, self.config["episode_length"] - 1))
        )

    def _mask(self, length: int, device: torch.device) -> torch.Tensor:
        key = (length, str(device))
        if key not in self._masks:  # a handful of lengths per model: build each once
            self._masks[key] = head_window_mask(torch.ones(1, length, dtype=torch.bool, device=device), self.head_fractions)
        return self._masks[key]

    def _row(self, n_keys: int, device: torch.device) -> torch.Tensor:
        """The newest query's head masks over ``n_keys`` keys, ``(1, H, 1, n_keys)`` (constant once the cache is full)."""
        key = (-n_keys, str(device))
        if key not in self._masks:
            self._masks[key] = head_window_row(n_keys, self.head_fractions, device=device)[None, :, None, :]
        return self._masks[key]

    def forward(
        self,
        obs: torch.Tensor,
        prev_action: torch.Tensor,
        prev_reward: torch.Tensor,
        step: torch.Tensor,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Action logits ``(B, T, n_actions)`` at every token, recomputing the whole context (training).

        :return: logits and, with ``need_weights``, each layer's weights ``(B, H, T, T)``.
        """
        return self.forward_tokens(self.embed(obs, prev_action, prev_reward, step), need_weights)

    def forward_tokens(
        self, tokens: torch.Tensor, need_weights: bool = False, last_only: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits from already-embedded tokens ``(B, T, d_model)`` (e.g. a compressed context).

        :param last_only: the last layer computes only the newest position: logits ``(B, 1, n_actions)``,
            and that layer's weights ``(B, H, 1, T)``.
        """
        h, weights = tokens, []
        mask = self._mask(tokens.shape[1], tokens.device)
        for i, block in enumerate(self.blocks):
            h, w = block(h, mask=mask, need_weights=need_weights, last_only=last_only and i == len(self.blocks) - 1)
            if need_weights:
                weights.append(w)
        return self.head(self.ln_out(h)), weights

    def new_cache(self) -> list[KVCache]:
        """One empty key/value cache per layer, for :meth:`step`."""
        return [KVCache() for _ in self.blocks]

    def step(
        self,
        cache: list[KVCache],
        obs: torch.Tensor,
        prev_action: torch.Tensor,
        prev_reward: torch.Tensor,
        step: torch.Tensor,
        need_weights: bool = False,
        max_context: int | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits ``(B, n_actions)`` of the newest token: one token of work per call.

        Inputs are one step: ``obs (B, obs_dim)``, the others ``(B,)``. Until the cache holds ``max_context``
        tokens (default ``context_len``) the output equals :meth:`forward` on the whole sequence; after
        that the cache slides (:meth:`KVCache.trim`).

        :return: logits and, with ``need_weights``, each layer's weights ``(B, H, 1, n_keys)``.
        """
        max_context = self.context_len if max_context is None else max_context
        h = self.embed(obs[:, None], prev_action[:, None], prev_reward[:, None], step[:, None])
        n_keys = min(len(cache[0]) + 1, max_context)
        for layer in cache:
            layer.trim(max_context - 1)
        mask = self._row(n_keys, h.device)
        weights = []
        for block, layer in zip(self.blocks, cache):
            h, w = block(h, mask=mask, need_weights=need_weights, cache=layer)
            if need_weights:
                weights.append(w)
        return self.head(self.ln_out(h[:, 0])), weights


def transition_inputs(
    observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray, timesteps: np.ndarray, n_actions: int
) -> dict[str, torch.Tensor]:
    """Model inputs for recorded transitions ``(..., T)``: previous action and reward shifted in, reset at episode starts."""
    prev_action = np.concatenate([np.full_like(actions[..., :1], n_actions), actions[..., :-1]], axis=-1)
    prev_reward = np.concatenate([np.zeros_like(rewards[..., :1]), rewards[..., :-1]], axis=-1)
    first = timesteps == 0
    prev_action, prev_reward = np.where(first, n_actions, prev_action), np.where(first, 0.0, prev_reward)
    return {
        "obs": torch.as_tensor(observations, dtype=torch.float32),
        "prev_action": torch.as_tensor(prev_action, dtype=torch.long),
        "prev_reward": torch.as_tensor(prev_reward, dtype=torch.float32),
        "step": torch.as_tensor(timesteps, dtype=torch.long),
    }
