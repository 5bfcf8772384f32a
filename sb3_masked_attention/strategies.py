"""Head-mask strategies: how much of the oldest history each attention head is denied.

A strategy is one fraction per head. Fraction ``p`` hides the oldest ``p`` share of the
valid history from that head (see :func:`sb3_masked_attention.masks.head_window_mask`),
so ``0.0`` sees everything and ``0.95`` sees only the newest 5%.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sb3_masked_attention.validation import check_fraction, check_int

HeadMaskStrategy = str | Sequence[float]

HEAD_MASK_STRATEGIES: dict[str, tuple[float, ...]] = {
    # Groups of heads with short, medium and long windows, each range covered twice.
    "specialized": (0.0, 0.08, 0.15, 0.08, 0.25, 0.15, 0.35, 0.25),
    # Every head a different window, from the whole history down to the newest 5%.
    "diversified": (0.0, 0.10, 0.25, 0.40, 0.55, 0.70, 0.85, 0.95),
    # Plain multi-head attention: every head sees the whole history.
    "none": (0.0,) * 8,
    # Same range as "specialized" but evenly spread, to separate range from grouping.
    "monotonic": tuple(float(x) for x in np.linspace(0.0, 0.35, 8)),
}


def resolve_head_mask_strategy(strategy: HeadMaskStrategy, n_heads: int) -> tuple[float, ...]:
    """Turn a strategy name or a list of fractions into one validated fraction per head.

    :param strategy: a key of :data:`HEAD_MASK_STRATEGIES` or an ordered sequence (list, tuple, array) of
        ``n_heads`` fractions, head 0 first.
    :param n_heads: number of attention heads.
    :return: a tuple of ``n_heads`` floats, each finite and in ``[0, 1)``.
    :raises ValueError: unknown name, wrong length, or a fraction outside ``[0, 1)``.
    """
    check_int("n_heads", n_heads)
    if isinstance(strategy, str):
        if strategy not in HEAD_MASK_STRATEGIES:
            raise ValueError(
                f"head_mask_strategy={strategy!r} is unknown: expected one of "
                f"{sorted(HEAD_MASK_STRATEGIES)} or a list of {n_heads} fractions in [0, 1)"
            )
        fractions = HEAD_MASK_STRATEGIES[strategy]
        if strategy == "none":  # no head hides anything: defined for any number of heads
            return (0.0,) * n_heads
        if len(fractions) != n_heads:
            raise ValueError(
                f"head_mask_strategy={strategy!r} defines {len(fractions)} heads but n_heads={n_heads}: "
                f"use n_heads={len(fractions)} or pass a list of {n_heads} fractions in [0, 1)"
            )
        return tuple(fractions)
    if not isinstance(strategy, (Sequence, np.ndarray)):  # a set or dict would scramble the head order
        raise ValueError(
            f"head_mask_strategy={strategy!r} is invalid: expected a strategy name or an ordered list/tuple of "
            f"{n_heads} fractions (head 0 first), not a {type(strategy).__name__}"
        )
    try:
        fractions = tuple(float(p) for p in strategy)
    except (TypeError, ValueError):
        raise ValueError(
            f"head_mask_strategy={strategy!r} is invalid: expected one of {sorted(HEAD_MASK_STRATEGIES)} "
            f"or a list of {n_heads} fractions in [0, 1)"
        ) from None
    if len(fractions) != n_heads:
        raise ValueError(
            f"head_mask_strategy has {len(fractions)} fractions {list(fractions)} but n_heads={n_heads}: "
            f"expected exactly one fraction per head"
        )
    return tuple(check_fraction(f"head_mask_strategy fraction for head {head}:", p) for head, p in enumerate(fractions))
