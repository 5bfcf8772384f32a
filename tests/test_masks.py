import math

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings

from sb3_masked_attention.attention import MaskedMultiHeadAttention
from sb3_masked_attention.masks import causal_mask, head_window_mask


def reference_head_window_mask(valid: list[list[bool]], fractions: list[float]) -> np.ndarray:
    """The spec, one position at a time."""
    batch, length = len(valid), len(valid[0])
    mask = np.zeros((batch, len(fractions), length, length), dtype=bool)
    for b in range(batch):
        for h, p in enumerate(fractions):
            for i in range(length):
                if not valid[b][i]:
                    mask[b, h, i, i] = True
                    continue
                candidates = [j for j in range(i + 1) if valid[b][j]]
                n = max(1, math.ceil((1 - p) * len(candidates) - 1e-6))
                for j in candidates[len(candidates) - n :]:
                    mask[b, h, i, j] = True
    return mask


fraction = st.floats(min_value=0.0, max_value=0.999, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    batch=st.integers(1, 3),
    length=st.integers(1, 24),
    fractions=st.lists(fraction, min_size=1, max_size=8),
)
def test_head_window_mask_matches_reference(data, batch, length, fractions):
    valid = data.draw(st.lists(st.lists(st.booleans(), min_size=length, max_size=length), min_size=batch, max_size=batch))
    mask = head_window_mask(torch.tensor(valid), fractions)
    assert mask.dtype == torch.bool
    assert mask.shape == (batch, len(fractions), length, length)
    np.testing.assert_array_equal(mask.numpy(), reference_head_window_mask(valid, fractions))
    assert mask.any(dim=-1).all(), "no row may be empty"


@settings(max_examples=100, deadline=None)
@given(data=st.data(), length=st.integers(1, 20), fractions=st.lists(fraction, min_size=1, max_size=8))
def test_left_padded_windows_match_reference(data, length, fractions):
    # HistoryWrapper windows: padding first, then valid steps (the fast path that builds one mask per count).
    n_valid = data.draw(st.lists(st.integers(0, length), min_size=2, max_size=6))
    valid = [[j >= length - n for j in range(length)] for n in n_valid]
    mask = head_window_mask(torch.tensor(valid), fractions)
    np.testing.assert_array_equal(mask.numpy(), reference_head_window_mask(valid, fractions))


def test_named_fractions_exact_boundaries():
    # (1 - 0.7) * 10 is 3.0000000000000004 in float64: the 1e-6 tolerance keeps it 3, not 4.
    valid = torch.ones(1, 10, dtype=torch.bool)
    mask = head_window_mask(valid, [0.7])
    assert mask[0, 0, -1].sum().item() == 3
    assert mask[0, 0, -1, -3:].all()


def test_docstring_example():
    mask = head_window_mask(torch.tensor([[False, True, True, True, True]]), [0.0, 0.5])
    expected_head1 = [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 1, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 1, 1]]
    expected_head0 = [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 1, 1, 1, 1]]
    assert mask[0, 0].int().tolist() == expected_head0
    assert mask[0, 1].int().tolist() == expected_head1


def test_masked_keys_get_exactly_zero_weight():
    attention = MaskedMultiHeadAttention(d_model=16, n_heads=4)
    valid = torch.tensor([[False, False, True, True, True, True, True, True]])
    mask = head_window_mask(valid, [0.0, 0.3, 0.6, 0.9])
    _, weights = attention(torch.randn(1, 8, 16) * 10, mask=mask, need_weights=True)
    assert torch.all(weights[~mask] == 0.0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(1, 4, 8))


@pytest.mark.parametrize("bad", [[-0.1], [1.0], [float("nan")], []])
def test_head_window_mask_rejects_bad_fractions(bad):
    with pytest.raises(ValueError, match="fraction"):
        head_window_mask(torch.ones(1, 4, dtype=torch.bool), bad)


def test_head_window_mask_rejects_bad_valid_shape():
    with pytest.raises(ValueError, match="valid"):
        head_window_mask(torch.ones(4, dtype=torch.bool), [0.0])


def test_causal_mask():
    assert causal_mask(3).int().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    with pytest.raises(ValueError, match="seq_len"):
        causal_mask(0)
