import itertools

import pytest
import torch

from sb3_masked_attention import HEAD_MASK_STRATEGIES, resolve_head_mask_strategy
from sb3_masked_attention.masks import head_window_mask


def test_named_strategies():
    assert HEAD_MASK_STRATEGIES["specialized"] == (0.0, 0.08, 0.15, 0.08, 0.25, 0.15, 0.35, 0.25)
    assert HEAD_MASK_STRATEGIES["diversified"] == (0.0, 0.10, 0.25, 0.40, 0.55, 0.70, 0.85, 0.95)
    assert HEAD_MASK_STRATEGIES["none"] == (0.0,) * 8
    monotonic = HEAD_MASK_STRATEGIES["monotonic"]
    assert len(monotonic) == 8 and monotonic[0] == 0.0 and monotonic[-1] == pytest.approx(0.35)
    steps = [b - a for a, b in itertools.pairwise(monotonic)]
    assert all(step == pytest.approx(0.05) for step in steps)


def test_resolve_name_and_list():
    assert resolve_head_mask_strategy("diversified", 8) == HEAD_MASK_STRATEGIES["diversified"]
    assert resolve_head_mask_strategy([0.0, 0.5], 2) == (0.0, 0.5)


@pytest.mark.parametrize(
    "strategy, n_heads, match",
    [
        ("bogus", 8, "'bogus' is unknown"),
        ("specialized", 4, "defines 8 heads but n_heads=4"),
        ([0.0, 0.5], 3, "2 fractions"),
        ([0.0, 1.0], 2, "fraction for head 1: 1.0 is invalid"),
        ([0.0, -0.1], 2, "head 1: -0.1"),
        ([0.0, float("inf")], 2, "head 1: inf"),
        ([0.0, "x"], 2, "invalid"),
        ("none", 0, "n_heads=0"),
    ],
)
def test_resolve_errors_name_the_bad_value(strategy, n_heads, match):
    with pytest.raises(ValueError, match=match):
        resolve_head_mask_strategy(strategy, n_heads)


@pytest.mark.parametrize("unordered", [{0.0, 0.5}, {0: 0.0, 1: 0.5}, (p for p in (0.0, 0.5))])
def test_only_ordered_fractions_are_accepted(unordered):
    with pytest.raises(ValueError, match="ordered"):
        resolve_head_mask_strategy(unordered, 2)
    if hasattr(unordered, "__len__"):  # the mask builder takes fractions too (a generator is spent by now)
        with pytest.raises(ValueError, match="ordered"):
            head_window_mask(torch.ones(1, 4, dtype=torch.bool), unordered)
