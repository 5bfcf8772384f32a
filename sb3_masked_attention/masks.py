"""Attention mask builders.

Every mask here is a ``torch.bool`` tensor where ``True`` means "this query may attend to
this key", the convention of :func:`torch.nn.functional.scaled_dot_product_attention`.
Masks compose by logical AND. These are pure functions: no modules, no state.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

from sb3_masked_attention.validation import check_fraction, check_int


def causal_mask(seq_len: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Lower-triangular mask: position ``i`` may attend to every ``j <= i``.

    :param seq_len: sequence length ``T`` (>= 1).
    :param device: device of the returned tensor.
    :return: BoolTensor ``(T, T)``.
    """
    check_int("seq_len", seq_len)
    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()


@functools.lru_cache(maxsize=64)
def _window_sizes(fractions: tuple[float, ...], max_len: int) -> torch.Tensor:
    """``sizes[h, L]`` = keys head ``h`` keeps out of ``L`` valid ones (float64 arithmetic, as in the spec)."""
    sizes = [
        [max(1, math.ceil((1.0 - p) * length - 1e-6)) for length in range(max_len + 1)] for p in fractions
    ]
    return torch.tensor(sizes, dtype=torch.long)


def head_window_mask(valid: torch.Tensor, fractions: Sequence[float]) -> torch.Tensor:
    """Per-head oldest-first hard mask over a (possibly padded) history.

    For a valid query position ``i`` let ``C_i`` be the valid positions ``j <= i`` and
    ``L_i = |C_i|``. Head ``h`` with fraction ``p_h`` may attend exactly the newest
    ``n = max(1, ceil((1 - p_h) * L_i - 1e-6))`` positions of ``C_i``: the oldest ``p_h``
    share of the history is hidden, the query itself is always visible, and no row is
    ever empty. A padding query (``valid`` False) attends only to itself.

    Example, one padding step then four valid ones, two heads with fractions ``[0.0, 0.5]``
    (rows are queries, columns keys, oldest first)::

        head 0 (p=0.0)   head 1 (p=0.5)
        1 0 0 0 0        1 0 0 0 0      <- padding query: itself only
        0 1 0 0 0        0 1 0 0 0      L=1: n=1 for both heads
        0 1 1 0 0        0 0 1 0 0      L=2: n=2 / n=1
        0 1 1 1 0        0 0 1 1 0      L=3: n=3 / n=2
        0 1 1 1 1        0 0 0 1 1      L=4: n=4 / n=2

    :param valid: BoolTensor ``(B, T)``, False marks padding.
    :param fractions: one fraction per head, each in ``[0, 1)``.
    :return: BoolTensor ``(B, H, T, T)``, True = may attend.
    """
    if valid.dim() != 2:
        raise ValueError(f"valid has shape {tuple(valid.shape)}: expected (batch, time)")
    fractions = tuple(check_fraction("fraction", p) for p in fractions)
    if len(fractions) == 0:
        raise ValueError("fractions is empty: expected one fraction per head")
    valid = valid.bool()
    seq_len = valid.shape[1]
    # Left-padded windows (what HistoryWrapper makes) differ only in their number of valid steps:
    # build one mask per distinct count and gather, instead of one per row.
    n_valid = valid.sum(dim=1)
    positions = torch.arange(seq_len, device=valid.device)
    if valid.shape[0] > 1 and torch.equal(valid, positions >= seq_len - n_valid[:, None]):
        counts, inverse = torch.unique(n_valid, return_inverse=True)
        return _head_window_mask(positions >= seq_len - counts[:, None], fractions)[inverse]
    return _head_window_mask(valid, fractions)


def _head_window_mask(valid: torch.Tensor, fractions: tuple[float, ...]) -> torch.Tensor:
    seq_len, device = valid.shape[1], valid.device
    # count[b, i] = |{valid j <= i}|; for j <= i, count[i] - count[j] is j's rank from the newest.
    count = valid.long().cumsum(dim=1)
    keep = _window_sizes(fractions, seq_len).to(device)[:, count].permute(1, 0, 2)  # (B, H, Tq): window of each query
    rank = count[:, :, None] - count[:, None, :]  # (B, Tq, Tk)
    # Head-independent part (B, Tq, Tk): valid keys up to the query; a padding query sees itself (rank 0).
    tril = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()
    eye = torch.eye(seq_len, dtype=torch.bool, device=device)
    is_valid_query = valid[:, :, None]
    visible = torch.where(is_valid_query, valid[:, None, :] & tril, eye)
    rank = torch.where(is_valid_query, rank, 0)
    return visible[:, None] & (rank[:, None] < keep[..., None])
