"""The attention core: one masked multi-head attention and the pre-norm transformer block.

Every model in the package (history extractor, multi-scale fusion, Algorithm Distillation,
pretraining, the event decoder) is built from these two classes.

Masks are boolean, ``True`` = may attend, broadcastable to ``(B, H, T_q, T_k)``; a per-head
mask is one tensor, so no Python loop over heads. A mask reused by many calls may instead be additive
float (0 = may attend, ``-inf`` = not), as :func:`stream_layout` builds it. Two paths compute the same function:

* fast: :func:`torch.nn.functional.scaled_dot_product_attention` (fused kernel, no weights);
* explicit: ``softmax(q k^T / sqrt(d) + mask) v``, which also returns the weights.

A masked key gets ``-inf`` before the softmax, hence exactly zero weight on both paths.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sb3_masked_attention.masks import additive_mask


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (RoFormer) applied to queries and keys of shape ``(B, H, T, D)``.

    :param head_dim: per-head feature size (even).
    :param base: wavelength base of the rotation frequencies.
    """

    inv_freq: torch.Tensor

    def __init__(self, head_dim: int, base: float = 10_000.0) -> None:
        super().__init__()
        if head_dim % 2 != 0:
            raise ValueError(f"rotary embedding needs an even head dimension, got head_dim={head_dim}")
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def angles(self, positions: torch.Tensor, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """The rotation at integer ``positions`` (any shape ``P``), computed once for every head and layer that rotates
        there: ``cos`` and signed ``sin`` of shape ``(*P, D)`` (each pair's angle twice, ``sin`` as ``-s, s``)."""
        # float64 angles: cos/sin exact to float32 at any position, so rotating by p then reading at q depends on q - p only
        angles = positions.to(torch.float64)[..., None] * self.inv_freq.to(torch.float64)  # (*P, D/2)
        cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)
        return cos.repeat_interleave(2, dim=-1), torch.stack((-sin, sin), dim=-1).flatten(-2)

    def rotate(self, x: torch.Tensor, angles: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """``x`` ``(..., D)`` rotated pair by pair, ``(x1 cos - x2 sin, x1 sin + x2 cos)``, with ``angles`` from
        :meth:`angles` broadcastable to ``x``: bit for bit the same as rotating each pair on its own."""
        cos, sin = angles
        swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)  # (x2, x1) in each pair
        return x * cos + swapped * sin

    def forward(self, x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """:param x: ``(B, H, T, D)``; :param positions: integer positions ``(T,)``, or ``(B, 1, T)`` per batch row."""
        return self.rotate(x, self.angles(positions, x.dtype))


class KVCache:
    """Keys and values of the tokens seen so far by one attention layer, for causal decoding.

    Feeding a sequence through a cached layer in chunks (one token at a time, say) gives exactly the
    outputs of one causal pass over the whole sequence, at the cost of the new tokens only. Keys are
    stored after the rotary rotation, at their absolute positions, so :meth:`trim` can drop the oldest
    ones (a sliding window over an endless stream) without changing the relative positions of the rest.
    """

    def __init__(self) -> None:
        self.keys: torch.Tensor | None = None  # (B, H, T, D)
        self.values: torch.Tensor | None = None
        self.seen = 0  # tokens ever added: the absolute position of the next one

    def __len__(self) -> int:
        return 0 if self.keys is None else self.keys.shape[2]

    def extend(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append ``(B, H, T_new, D)`` keys and values; return all of them."""
        if self.keys is None:
            self.keys, self.values = keys, values
        else:
            assert self.values is not None
            self.keys, self.values = torch.cat([self.keys, keys], dim=2), torch.cat([self.values, values], dim=2)
        self.seen += keys.shape[2]
        return self.keys, self.values

    def trim(self, max_len: int) -> None:
        """Keep only the newest ``max_len`` keys and values (positions keep counting from :attr:`seen`).

        In a stack of layers this is a sliding window in which the kept deeper-layer keys still carry
        what their tokens saw before the window (as in Transformer-XL), so after trimming, outputs are no
        longer those of a fresh pass over the window.
        """
        if max_len < 1:
            raise ValueError(f"max_len={max_len} is invalid: expected an integer >= 1")
        if self.keys is not None and self.values is not None and self.keys.shape[2] > max_len:
            self.keys, self.values = self.keys[:, :, -max_len:], self.values[:, :, -max_len:]


class MaskedMultiHeadAttention(nn.Module):
    """Multi-head attention with an optional boolean mask per head.

    :param d_model: model width (input and output features).
    :param n_heads: number of heads; must divide ``d_model``.
    :param rotary: rotate queries and keys by their positions. Keys sit at positions ``0..T_k-1`` and the
        queries are the newest ``T_q`` of them, so a context of ``(B, T_k)`` with fewer queries is
        self-attention of the last positions (as with a key/value cache), not cross-attention.
    :param dropout: dropout on the attention weights, active only in train mode (0 = none).
    :param bias: use biases in the projections.
    :param rotary_base: wavelength base of the rotary frequencies (smaller: more of the head's channels tell near
        positions apart).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        rotary: bool = False,
        dropout: float = 0.0,
        bias: bool = True,
        rotary_base: float = 10_000.0,
    ) -> None:
        super().__init__()
        if d_model < 1 or n_heads < 1 or d_model % n_heads != 0:
            raise ValueError(f"n_heads={n_heads} must be >= 1 and divide d_model={d_model}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout={dropout} is invalid: expected a value in [0, 1)")
        if not (isinstance(rotary_base, (int, float)) and math.isfinite(rotary_base) and rotary_base > 1):
            raise ValueError(f"rotary_base={rotary_base!r} is invalid: expected a finite number > 1")
        self.d_model = d_model
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.kv_proj = nn.Linear(d_model, 2 * d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.rotary = RotaryEmbedding(self.head_dim, float(rotary_base)) if rotary else None

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, D)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        need_weights: bool = False,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        :param x: queries ``(B, T_q, d_model)``.
        :param context: keys/values ``(B, T_k, d_model)``; ``None`` for self-attention.
        :param mask: BoolTensor broadcastable to ``(B, H, T_q, T_k)``, True = may attend.
        :param need_weights: take the explicit path and return the weights.
        :param cache: causal self-attention with a key/value cache: ``x`` holds the new tokens, which
            attend to every cached token and causally among themselves (``mask`` None), or as ``mask``
            says (over all ``len(cache) + T_q`` keys).
        :return: output ``(B, T_q, d_model)`` and weights ``(B, H, T_q, T_k)`` (or None).
        """
        if cache is not None and context is not None:
            raise ValueError("a key/value cache is for causal self-attention: pass context=None with cache")
        source = x if context is None else context
        q = self._split_heads(self.q_proj(x))
        k, v = (self._split_heads(t) for t in self.kv_proj(source).chunk(2, dim=-1))
        past = 0 if cache is None else len(cache)
        if self.rotary is not None:
            start = 0 if cache is None else cache.seen  # absolute position of the first new key
            n_keys, n_queries = start + k.shape[2], q.shape[2]
            if n_queries > n_keys:
                raise ValueError(f"rotary attention needs queries among the keys, got {n_queries} queries for {n_keys} keys")
            positions = torch.arange(n_keys, device=x.device)
            q, k = self.rotary(q, positions[n_keys - n_queries :]), self.rotary(k, positions[start:])
        if cache is not None:
            k, v = cache.extend(k, v)
            if mask is None and q.shape[2] > 1:  # new token i sees the past and new tokens 0..i
                rows = torch.arange(past, past + q.shape[2], device=x.device)
                mask = torch.arange(k.shape[2], device=x.device)[None, :] <= rows[:, None]
        return self._attend(q, k, v, mask, need_weights)

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, need_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The attention itself, on split heads ``(B, H, T, D)``; output projected to ``(B, T_q, d_model)``."""
        dropout_p = self.dropout if self.training else 0.0
        if need_weights:  # explicit path
            scores = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)
            if mask is not None and mask.is_floating_point():  # additive (0 / -inf), as stream_layout builds it
                scores = scores + mask
            elif mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = scores.softmax(dim=-1)
            out = F.dropout(weights, dropout_p, training=self.training) @ v
        else:  # fast path
            weights = None
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        out = out.transpose(1, 2).reshape(q.shape[0], q.shape[2], self.d_model)
        return self.out_proj(out), weights

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values ``(B, H, M, D)`` of ``memory`` ``(B, M, d_model)``, before any rotary rotation (which
        depends on the query they are read from): what :meth:`forward_ring` reads, cached or recomputed."""
        keys, values = self.kv_proj(memory).chunk(2, dim=-1)
        return self._split_heads(keys), self._split_heads(values)

    def ring_angles(self, positions: torch.Tensor) -> torch.Tensor | None:
        """What :meth:`forward_ring` rotates a token's query, key and value by at ``positions`` ``(N,)``: complex
        ``(N, 3, 1, D/2)``, each pair's rotation ``cos + i sin`` for the query and the key and ``1`` for the value (so
        one complex product rotates the joint projection); the angles of :meth:`RotaryEmbedding.angles` (float64, then
        float32). Computed once per step, shared by every layer of this shape; None without rotary positions."""
        if self.rotary is None:
            return None
        angles = positions.to(torch.float64)[:, None] * self.rotary.inv_freq.to(torch.float64)  # (N, D/2)
        rotation = torch.polar(torch.ones_like(angles), angles).to(torch.complex64)
        return torch.stack([rotation, rotation, torch.ones_like(rotation)], dim=1)[:, :, None]

    def forward_ring(
        self,
        x: torch.Tensor,
        ring: torch.Tensor,
        write_at: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor,
        angles: torch.Tensor | None,
    ) -> torch.Tensor:
        """One new token per row reading its memory in place, Transformer-XL style (a rollout step): the token's own
        key and value are written into its row's free slot of ``ring``, then it attends to the slots ``mask`` allows.

        The memory keys in ``ring`` are rotated at their positions in the token's stream (:meth:`rotate_keys`) and
        the token at its own (``angles``), so scores depend on distances only. Slots may lie in any order.

        :param x: the new tokens ``(N, d_model)``.
        :param ring: ``(N, 2, H, S, D)`` keys and values of ``S`` slots per row, written in place.
        :param write_at: rows ``(N,)`` and each row's free slot ``(N,)``.
        :param mask: broadcastable to ``(N, H, 1, S)``, boolean or additive float (0 / -inf), over the slots (its own too).
        :param angles: :meth:`ring_angles` at the tokens' positions.
        :return: ``(N, d_model)``.
        """
        n, heads = x.shape[0], self.n_heads
        # functional calls on the modules' parameters: a rollout step is a few dozen tiny ops, each module call adds ~2 us
        q, kv = F.linear(x, self.q_proj.weight, self.q_proj.bias), F.linear(x, self.kv_proj.weight, self.kv_proj.bias)
        qkv = torch.cat([q, kv], dim=-1).view(n, 3, heads, self.head_dim // 2, 2)
        if angles is not None:  # query and key rotated pair by pair, value as it was: one complex product
            qkv = torch.view_as_real(torch.view_as_complex(qkv) * angles)
        qkv = qkv.view(n, 3, heads, self.head_dim)
        rows, slots = write_at
        ring[rows, :, :, slots] = qkv[:, 1:]
        out, _ = self._attend(qkv[:, 0, :, None], ring[:, 0], ring[:, 1], mask, need_weights=False)
        return out.view(n, self.d_model)

    def rotate_keys(self, keys: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        """``keys`` ``(B, H, S, D)`` rotated at ``positions`` (``(B, 1, S)``; default ``0..S-1``), as
        :meth:`forward_ring` and :meth:`forward_streams` take memory keys (identity without rotary)."""
        if self.rotary is None:
            return keys
        return self.rotary(keys, torch.arange(keys.shape[2], device=keys.device) if positions is None else positions)

    def forward_streams(
        self,
        x: torch.Tensor,
        streams: tuple[torch.Tensor, torch.Tensor],
        stream_of: torch.Tensor,
        mask: torch.Tensor | None,
        positions: torch.Tensor,
        need_weights: bool = False,
        layout: tuple[torch.Tensor, torch.Tensor] | None = None,
        angles: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """New tokens reading their memories inside whole streams: :meth:`forward_ring` for many tokens of a few
        streams at once, without copying each token's memory out of its stream (the training path).

        Each token attends to the keys of its own stream that ``mask`` allows, and to itself. The tokens are laid
        out stream by stream, ``(E, H, n, D)`` with ``n`` the most tokens of one stream, and each stream's queries
        read its ``S`` keys plus the ``n`` tokens' own keys (each only its own) in one :meth:`_attend` call: cost
        tokens x stream length, never a (tokens x memory) copy of keys or values.

        :param x: the new tokens ``(B, 1, d_model)``.
        :param streams: keys (rotated by :meth:`rotate_keys`) and values ``(E, H, S, D)`` of ``E`` streams.
        :param stream_of: ``(B,)`` the stream of each token.
        :param mask: BoolTensor ``(B, H, 1, S + 1)``: which stream positions, then itself, each token reads (unused
            with ``layout``).
        :param positions: ``(B,)`` each token's position in its stream (for the rotary rotation).
        :param need_weights: take the explicit path (the weights themselves are not returned).
        :param layout: :func:`stream_layout` of ``stream_of`` and ``mask`` (or :func:`stream_window_layout`), when
            several layers share it.
        :param angles: :meth:`RotaryEmbedding.angles` at ``positions[:, None, None]`` (``(B, 1, 1, D)``), when several
            layers share them.
        :return: output ``(B, 1, d_model)``.
        """
        keys, values = streams
        n_streams, n_heads, _, head_dim = keys.shape
        qkv = torch.cat([self.q_proj(x), self.kv_proj(x)], dim=-1).view(x.shape[0], 3, n_heads, head_dim)
        if self.rotary is not None:
            rotation = self.rotary.angles(positions[:, None, None], x.dtype) if angles is None else angles
            qkv = torch.cat([self.rotary.rotate(qkv[:, :2], rotation), qkv[:, 2:]], dim=1)  # query and key rotated
        if layout is None:
            assert mask is not None, "forward_streams needs a mask or a layout"
            layout = stream_layout(stream_of, mask, n_streams, x.dtype)
        rank, read = layout
        slots = read.shape[2]
        # each token's query, key and value into its stream's slot (E, 3, H, slots, D): zeros in empty slots
        by_stream = qkv.new_zeros(n_streams, slots, 3, n_heads, head_dim).index_put((stream_of, rank), qkv)
        q, own_k, own_v = by_stream.permute(2, 0, 3, 1, 4)
        k = torch.cat([keys, own_k], dim=2)  # (E, H, S + slots, D)
        v = torch.cat([values, own_v], dim=2)
        out, _ = self._attend(q, k, v, read, need_weights)  # (E, slots, d_model)
        return out[stream_of, rank][:, None]


def stream_layout(
    stream_of: torch.Tensor, mask: torch.Tensor, n_streams: int, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Where :meth:`MaskedMultiHeadAttention.forward_streams` puts each token: its slot among its stream's tokens
    ``(B,)`` and the mask in that layout ``(E, H, slots, S + slots)`` (stream keys, then each slot's own key), as an
    additive float mask (0 = may attend, -inf = not): SDPA would otherwise turn a boolean mask into one on every
    call, forward and backward, in every layer (15% of an update at memory 1024).

    :param stream_of: ``(B,)`` the stream of each token.
    :param mask: BoolTensor ``(B, H, 1, S + 1)``: which stream positions, then itself, each token reads.
    :param dtype: the attention's dtype.
    """
    rank, slots = _stream_slots(stream_of, n_streams)
    n_heads, length = mask.shape[1], mask.shape[-1] - 1
    read = torch.zeros(n_streams, slots, n_heads, length + slots, dtype=torch.bool, device=mask.device)
    own = torch.arange(slots, device=mask.device)
    read[:, own, :, length + own] = True  # empty slots read themselves (no all-masked row)
    read[stream_of, rank, :, :length] = mask[:, :, 0, :-1]
    read[stream_of, rank, :, length + rank] = mask[:, :, 0, -1]
    additive = additive_mask(read, dtype)
    return rank, additive.transpose(1, 2)


def _layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)`` without the module call."""
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _stream_slots(stream_of: torch.Tensor, n_streams: int) -> tuple[torch.Tensor, int]:
    """Each token's slot among its stream's tokens ``(B,)`` (in the order given) and the most tokens of one stream."""
    counts = torch.bincount(stream_of, minlength=n_streams)
    order = torch.argsort(stream_of, stable=True)
    first = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(stream_of)
    rank[order] = torch.arange(len(order), device=order.device) - first[stream_of[order]]
    return rank, int(counts.max())


def stream_window_layout(
    stream_of: torch.Tensor,
    end: torch.Tensor,
    window: torch.Tensor,
    n_streams: int,
    length: int,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`stream_layout` for the mask a memory read has: token ``b``'s head ``h`` reads the newest ``window[b, h] - 1``
    stream positions before ``end[b]`` and itself. Built by comparing positions with each slot's window bounds,
    without the ``(B, H, 1, S + 1)`` mask and its scatter (the same layout, several full passes fewer per update).

    :param stream_of: ``(B,)`` the stream of each token.
    :param end: ``(B,)`` the first stream position after each token's memory (its own position in the stream).
    :param window: ``(B, H)`` keys each head reads, the token itself included (>= 1).
    :param n_streams: ``E``.
    :param length: ``S``, stream positions.
    :param dtype: the attention's dtype.
    :return: each token's slot ``(B,)`` and the additive mask ``(E, H, slots, S + slots)``.
    """
    rank, slots = _stream_slots(stream_of, n_streams)
    n_heads = window.shape[1]
    start = end.new_full((n_streams, slots, n_heads), length).index_put((stream_of, rank), end[:, None] - window + 1)
    stop = end.new_zeros(n_streams, slots).index_put((stream_of, rank), end)  # empty slots: nothing in the stream
    position = torch.arange(length, device=end.device)
    in_window = (position >= start[..., None]) & (position < stop[:, :, None, None])  # (E, slots, H, S)
    own = torch.eye(slots, dtype=torch.bool, device=end.device)[None, :, None, :].expand(n_streams, slots, n_heads, slots)
    read = torch.cat([in_window, own], dim=-1)  # every slot reads its own key: no all-masked row
    additive = additive_mask(read, dtype)
    return rank, additive.transpose(1, 2)


class GatedResidual(nn.Module):
    """GTrXL's GRU-type gate in place of a residual sum (Parisotto et al. 2019, "Stabilizing Transformers for RL"):
    ``x + z * (h - x)`` with ``r = sigmoid(W_r y + U_r x)``, ``z = sigmoid(W_z y + U_z x - b)``,
    ``h = tanh(W_h y + U_h (r * x))``, where ``x`` is the residual stream and ``y = relu(sublayer output)``.

    :param d_model: width of ``x`` and ``y``.
    :param gate_bias: initial ``b`` (learned): 2 starts the gate mostly shut (``z ~ 0.12``), so an untrained block
        passes its input on, which is how GTrXL makes early RL updates stable.
    """

    def __init__(self, d_model: int, gate_bias: float = 2.0) -> None:
        super().__init__()
        self.from_output = nn.Linear(d_model, 3 * d_model, bias=False)  # W_r, W_z, W_h
        self.from_stream = nn.Linear(d_model, 2 * d_model, bias=False)  # U_r, U_z
        self.candidate = nn.Linear(d_model, d_model, bias=False)  # U_h
        self.bias = nn.Parameter(torch.full((d_model,), float(gate_bias)))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        w_r, w_z, w_h = self.from_output(F.relu(y)).chunk(3, dim=-1)
        u_r, u_z = self.from_stream(x).chunk(2, dim=-1)
        reset, update = torch.sigmoid(w_r + u_r), torch.sigmoid(w_z + u_z - self.bias)
        return x + update * (torch.tanh(w_h + self.candidate(reset * x)) - x)


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(ln(x))`` then ``x + mlp(ln(x))``.

    :param d_model: model width.
    :param n_heads: attention heads.
    :param ff_dim: hidden width of the feed-forward MLP.
    :param rotary: rotary positions in the attention.
    :param dropout: dropout in attention and MLP, train mode only (default 0: PPO-safe).
    :param rotary_base: wavelength base of the rotary frequencies.
    :param gated: GTrXL's gates (:class:`GatedResidual`) in place of both residual sums.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        ff_dim: int,
        rotary: bool = False,
        dropout: float = 0.0,
        rotary_base: float = 10_000.0,
        gated: bool = False,
    ) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(d_model)
        self.attn = MaskedMultiHeadAttention(d_model, n_heads, rotary=rotary, dropout=dropout, rotary_base=rotary_base)
        self.ln_mlp = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, ff_dim), nn.GELU(), nn.Linear(ff_dim, d_model), nn.Dropout(dropout))
        self.gates = nn.ModuleList([GatedResidual(d_model), GatedResidual(d_model)]) if gated else None

    def _residual(self, x: torch.Tensor, y: torch.Tensor, sublayer: int) -> torch.Tensor:
        """``x + y``, or gate ``sublayer`` (0 attention, 1 MLP) of a gated block."""
        return x + y if self.gates is None else self.gates[sublayer](x, y)

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        need_weights: bool = False,
        last_only: bool = False,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """
        :param x: ``(B, T, d_model)``.
        :param mask: BoolTensor broadcastable to ``(B, H, T, T)``.
        :param need_weights: also return the attention weights.
        :param last_only: compute only the newest position (all keys still used): ``(B, 1, d_model)``,
            for a final layer whose other outputs nobody reads.
        :param cache: this block's :class:`KVCache`: ``x`` holds only the new tokens (causal decoding).
        :return: ``(B, T, d_model)`` (or ``(B, 1, d_model)``) and weights ``(B, H, T_q, T)`` or None.
        """
        normed = self.ln_attn(x)
        if cache is not None:
            attended, weights = self.attn(normed, mask=mask, need_weights=need_weights, cache=cache)
        else:
            if last_only:
                x, mask = x[:, -1:], None if mask is None else mask[..., -1:, :]
            attended, weights = self.attn(normed[:, -x.shape[1] :], context=normed, mask=mask, need_weights=need_weights)
        x = self._residual(x, attended, 0)
        return self._residual(x, self.mlp(self.ln_mlp(x)), 1), weights

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys and values of this block's attention for the block inputs ``memory`` ``(B, M, d_model)``."""
        return self.attn.memory_kv(self.ln_attn(memory))

    def forward_ring(
        self,
        x: torch.Tensor,
        ring: torch.Tensor,
        write_at: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor,
        angles: torch.Tensor | None,
    ) -> torch.Tensor:
        """The block for one new token per row ``(N, d_model)`` reading a ring of its attention's keys and values in
        place (see :meth:`MaskedMultiHeadAttention.forward_ring`): ``(N, d_model)``. The same function as
        :meth:`forward`, in functional calls on the same parameters (a step is ~20 tiny ops a layer: dispatching the
        six modules cost ~4% of it)."""
        x = self._residual(x, self.attn.forward_ring(_layer_norm(self.ln_attn, x), ring, write_at, mask, angles), 0)
        fc, activation, projection, dropout = self.mlp
        assert isinstance(fc, nn.Linear) and isinstance(projection, nn.Linear)
        hidden = F.linear(
            activation(F.linear(_layer_norm(self.ln_mlp, x), fc.weight, fc.bias)), projection.weight, projection.bias
        )
        return self._residual(x, dropout(hidden) if self.training else hidden, 1)

    def forward_streams(
        self,
        x: torch.Tensor,
        streams: tuple[torch.Tensor, torch.Tensor],
        stream_of: torch.Tensor,
        mask: torch.Tensor | None,
        positions: torch.Tensor,
        layout: tuple[torch.Tensor, torch.Tensor] | None = None,
        angles: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The block for new tokens reading their streams (see :meth:`MaskedMultiHeadAttention.forward_streams`)."""
        attended = self.attn.forward_streams(
            self.ln_attn(x), streams, stream_of, mask, positions, layout=layout, angles=angles
        )
        x = self._residual(x, attended, 0)
        return self._residual(x, self.mlp(self.ln_mlp(x)), 1)
