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


def _fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    """One checked fraction per head, in head order: a set (no order) is refused."""
    if isinstance(fractions, (set, frozenset, dict)) or not hasattr(fractions, "__len__"):
        raise ValueError(f"fractions={fractions!r} is invalid: expected an ordered list/tuple, one fraction per head")
    checked = tuple(check_fraction(f"fraction of head {head}", p) for head, p in enumerate(fractions))
    if len(checked) == 0:
        raise ValueError("fractions is empty: expected one fraction per head")
    return checked


def as_valid(valid: torch.Tensor, name: str = "valid") -> torch.Tensor:
    """Validity flags as a BoolTensor, read the same way everywhere: a bool as is, a number as ``> 0``.

    ``> 0`` is exact for 0/1 flags and survives ``VecNormalize`` (padding maps to <= 0, valid steps to > 0).
    A NaN or infinite flag is neither: it is refused rather than read as valid by one reader and padding by another.

    :raises ValueError: non-finite flags.
    """
    if valid.dtype == torch.bool:
        return valid
    if not bool(torch.isfinite(valid).all()):
        raise ValueError(f"{name} has NaN or infinite entries: expected 0/1 flags (1 = a real step, 0 = padding)")
    return valid > 0


@functools.lru_cache(maxsize=64)
def _window_sizes(fractions: tuple[float, ...], max_len: int) -> torch.Tensor:
    """``sizes[h, L]`` = keys head ``h`` keeps out of ``L`` valid ones (float64 arithmetic, as in the spec)."""
    sizes = [[max(1, math.ceil((1.0 - p) * length - 1e-6)) for length in range(max_len + 1)] for p in fractions]
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

    :param valid: ``(B, T)`` flags (see :func:`as_valid`), False / <= 0 marks padding.
    :param fractions: one fraction per head, each in ``[0, 1)``.
    :return: BoolTensor ``(B, H, T, T)``, True = may attend.
    """
    if valid.dim() != 2:
        raise ValueError(f"valid has shape {tuple(valid.shape)}: expected (batch, time)")
    fractions = _fractions(fractions)
    valid = as_valid(valid)
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


def head_window_row(n_keys: int, fractions: Sequence[float], device: torch.device | str | None = None) -> torch.Tensor:
    """The newest query's row of :func:`head_window_mask` over ``n_keys`` valid keys, for cached decoding.

    Equals ``head_window_mask(torch.ones(1, n_keys, dtype=bool), fractions)[0, :, -1]``: head ``h`` sees
    the newest ``max(1, ceil((1 - p_h) * n_keys - 1e-6))`` keys.

    :param n_keys: keys in the context, the query included (>= 1).
    :param fractions: one fraction per head, each in ``[0, 1)``.
    :return: BoolTensor ``(H, n_keys)``.
    """
    check_int("n_keys", n_keys)
    fractions = _fractions(fractions)
    keep = torch.tensor([max(1, math.ceil((1.0 - p) * n_keys - 1e-6)) for p in fractions], device=device)
    rank = torch.arange(n_keys - 1, -1, -1, device=device)  # 0 = the newest key
    return rank[None, :] < keep[:, None]


def memory_window_sizes(memory_len: int, fractions: Sequence[float]) -> torch.Tensor:
    """``sizes[n, h]``: how many of the newest keys head ``h`` of a token reads when ``n`` of its ``memory_len`` memory
    slots are valid, the token itself counted (``1 <= sizes[n, h] <= n + 1``); :func:`memory_head_mask` as a table, so
    that a rollout step's mask is one lookup and one comparison of each slot's age with it.

    :param memory_len: memory slots ``M`` (>= 1).
    :param fractions: one fraction per head, each in ``[0, 1)``.
    :return: LongTensor ``(memory_len + 1, H)``.
    """
    check_int("memory_len", memory_len)
    return _window_sizes(_fractions(fractions), memory_len + 1)[:, 1:].T.contiguous()


def memory_head_mask(n_valid: torch.Tensor, memory_len: int, fractions: Sequence[float]) -> torch.Tensor:
    """Head masks of a new token reading a memory of ``memory_len`` slots (oldest first) and itself, whose newest
    ``n_valid`` slots are valid (the rest: before the episode or the stream began).

    Row ``i`` equals the newest query's row of :func:`head_window_mask` for a left-padded window of
    ``memory_len + 1`` steps of which the newest ``n_valid[i] + 1`` are valid: head ``h`` sees the newest
    ``max(1, ceil((1 - p_h) * L - 1e-6))`` of the ``L = n_valid + 1`` valid keys, the token itself always.

    :param n_valid: LongTensor ``(B,)`` in ``[0, memory_len]``.
    :param memory_len: memory slots ``M`` (>= 1).
    :param fractions: one fraction per head, each in ``[0, 1)``.
    :return: BoolTensor ``(B, H, 1, memory_len + 1)``.
    """
    sizes = memory_window_sizes(memory_len, fractions)
    if n_valid.dim() != 1 or bool((n_valid < 0).any()) or bool((n_valid > memory_len).any()):
        raise ValueError(f"n_valid must be a (batch,) tensor of counts in [0, {memory_len}], got {n_valid}")
    keep = sizes.to(n_valid.device)[n_valid]  # (B, H): never more than the n_valid + 1 valid keys
    rank = torch.arange(memory_len, -1, -1, device=n_valid.device)  # 0 = the token itself
    return (rank[None, None, :] < keep[..., None])[:, :, None, :]


def additive_mask(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A boolean mask (True = may attend) as the additive float mask attention adds to its scores: 0 where True,
    ``-inf`` where False. Build it once where many attention calls share a mask: SDPA converts a boolean one on every
    call, forward and backward.

    :param mask: BoolTensor of any shape.
    :param dtype: the attention's float dtype.
    """
    if mask.dtype != torch.bool:
        raise ValueError(f"mask has dtype {mask.dtype}: expected a boolean mask (True = may attend)")
    return torch.where(mask, 0.0, float("-inf")).to(dtype)  # one op; the cast is free for the default float32


def key_padding_mask(valid: torch.Tensor) -> torch.Tensor:
    """Every query may attend to the valid keys only (cross-attention to a padded sequence).

    :param valid: ``(B, T_k)`` flags (see :func:`as_valid`), False marks padding; each row needs a valid key.
    :return: BoolTensor ``(B, 1, 1, T_k)``, broadcastable to ``(B, H, T_q, T_k)``.
    """
    if valid.dim() != 2:
        raise ValueError(f"valid has shape {tuple(valid.shape)}: expected (batch, keys)")
    valid = as_valid(valid)
    if not bool(valid.any(dim=1).all()):
        raise ValueError("valid has a row without any valid key: every query would attend to nothing")
    return valid[:, None, None, :]


# ---------------------------------------------------------------- trajectory masks (o1 a1 o2 a2 ... tokens)
def _check_range(name: str, value: object, low: int, high: int, expected: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name}={value!r} is out of range: expected {expected}")
    return value


def inverse_dynamics_mask(
    seq_len: int, start: int = 2, rm_idx: int = 1, device: torch.device | str | None = None
) -> torch.Tensor:
    """Causal mask over interleaved ``o1 a1 o2 a2 ...`` tokens in which observation ``o(t+1)`` cannot see ``a(t)``.

    From row ``start`` on, every second row (the observation rows) loses the ``rm_idx`` tokens just before it.
    For ``seq_len=8`` (defaults) the rows are ``10000000 / 11000000 / 10100000 / 11110000 / 11101000 /
    11111100 / 11111010 / 11111111``.

    :param seq_len: number of tokens ``T`` (>= 1).
    :param start: first observation row to restrict, ``0 <= start < T``.
    :param rm_idx: tokens hidden before each such row, ``1 <= rm_idx <= start``.
    :return: BoolTensor ``(T, T)``, True = may attend.
    """
    check_int("seq_len", seq_len)
    _check_range("start", start, 0, seq_len - 1, f"0 <= start < seq_len={seq_len}")
    _check_range("rm_idx", rm_idx, 1, start, f"1 <= rm_idx <= start={start}")
    mask = causal_mask(seq_len, device)
    rows = torch.arange(start, seq_len, 2, device=mask.device)
    for offset in range(1, rm_idx + 1):
        mask[rows, rows - offset] = False
    return mask


def multi_token_observation_mask(
    seq_len: int, tokens_per_step: int, num_obs_tokens: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """Causal mask for steps of ``tokens_per_step`` tokens whose first ``num_obs_tokens`` are one observation:
    the tokens of one observation also see each other (an observation is one event, split in tokens).

    For ``seq_len=6, tokens_per_step=3, num_obs_tokens=2`` the rows are
    ``110000 / 110000 / 111000 / 111110 / 111110 / 111111``.

    :return: BoolTensor ``(T, T)``, True = may attend.
    """
    check_int("seq_len", seq_len)
    check_int("tokens_per_step", tokens_per_step)
    if seq_len % tokens_per_step:
        raise ValueError(f"tokens_per_step={tokens_per_step} does not divide seq_len={seq_len}")
    _check_range(
        "num_obs_tokens", num_obs_tokens, 1, tokens_per_step - 1, f"1 <= num_obs_tokens < tokens_per_step={tokens_per_step}"
    )
    mask = causal_mask(seq_len, device)
    for step_start in range(0, seq_len, tokens_per_step):
        mask[step_start : step_start + num_obs_tokens, step_start : step_start + num_obs_tokens] = True
    return mask


def _check_tokens(tokens: torch.Tensor) -> int:
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 3 or tokens.shape[1] % 2:
        shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(f"tokens of shape {shape} are invalid: expected (B, T, C) with T even (o1 a1 o2 a2 ...)")
    return tokens.shape[1] // 2


def mask_action_tokens(tokens: torch.Tensor, mask_idx: Sequence[int], mask_value: float = -1.0) -> torch.Tensor:
    """A copy of ``tokens`` (B, T, C) whose action tokens (odd positions) of the steps ``mask_idx`` hold
    ``mask_value``; ``mask_idx=[0, 1]`` replaces positions 1 and 3."""
    n_steps = _check_tokens(tokens)
    steps = list(mask_idx)
    for step in steps:
        _check_range("mask_idx", step, 0, n_steps - 1, f"step indices in [0, {n_steps})")
    masked = tokens.clone()
    masked[:, [2 * step + 1 for step in steps], :] = mask_value
    return masked


def random_trajectory_masking(
    tokens: torch.Tensor,
    ratio: float,
    generator: torch.Generator | None = None,
    mask_observations: bool = True,
    mask_actions: bool = True,
    mask_value: float = -1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Hide the tokens of ``round(ratio * steps)`` random steps per sequence (observations and/or actions).

    :param tokens: ``(B, T, C)``, interleaved ``o1 a1 o2 a2 ...`` (T even).
    :param ratio: share of steps to hide, in ``[0, 1]``.
    :param generator: torch generator for reproducible draws.
    :return: the masked copy and ``hidden`` ``(B, T)`` bool (True = hidden: where a reconstruction loss applies).
    """
    n_steps = _check_tokens(tokens)
    ratio_value = float(ratio) if isinstance(ratio, (int, float)) and not isinstance(ratio, bool) else math.nan
    if not 0.0 <= ratio_value <= 1.0:
        raise ValueError(f"ratio={ratio!r} is out of range: expected a value in [0, 1]")
    if not (mask_observations or mask_actions):
        raise ValueError("mask_observations and mask_actions are both False: nothing to hide")
    batch = tokens.shape[0]
    k = round(ratio_value * n_steps)
    order = torch.rand(batch, n_steps, generator=generator).argsort(dim=1)
    chosen = torch.zeros(batch, n_steps, dtype=torch.bool)
    chosen.scatter_(1, order[:, :k], True)
    hidden = torch.zeros(batch, 2 * n_steps, dtype=torch.bool)
    if mask_observations:
        hidden[:, 0::2] = chosen
    if mask_actions:
        hidden[:, 1::2] = chosen
    hidden = hidden.to(tokens.device)
    return tokens.masked_fill(hidden[..., None], mask_value), hidden
