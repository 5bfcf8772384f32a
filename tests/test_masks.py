import math

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import given, settings

from sb3_masked_attention.attention import MaskedMultiHeadAttention
from sb3_masked_attention.masks import (
    causal_mask,
    head_window_mask,
    inverse_dynamics_mask,
    key_padding_mask,
    mask_action_tokens,
    multi_token_observation_mask,
    random_trajectory_masking,
)


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


def test_key_padding_mask_hides_padded_keys_from_every_query():
    valid = torch.tensor([[False, True, True], [True, True, True]])
    mask = key_padding_mask(valid)
    assert mask.shape == (2, 1, 1, 3) and mask.expand(2, 4, 5, 3)[0, 3, 4].tolist() == [False, True, True]
    with pytest.raises(ValueError, match="without any valid key"):
        key_padding_mask(torch.tensor([[False, False]]))
    with pytest.raises(ValueError, match="expected .batch, keys."):
        key_padding_mask(torch.ones(3, dtype=torch.bool))


def test_causal_mask():
    assert causal_mask(3).int().tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    with pytest.raises(ValueError, match="seq_len"):
        causal_mask(0)


# ---------------------------------------------------------------- trajectory masks
def _rows(mask: torch.Tensor) -> list[str]:
    return ["".join(str(int(v)) for v in row) for row in mask]


def test_inverse_dynamics_mask_documented_example():
    assert _rows(inverse_dynamics_mask(8)) == [
        "10000000",
        "11000000",
        "10100000",
        "11110000",
        "11101000",
        "11111100",
        "11111010",
        "11111111",
    ]


def test_multi_token_observation_mask_documented_example():
    assert _rows(multi_token_observation_mask(6, tokens_per_step=3, num_obs_tokens=2)) == [
        "110000",
        "110000",
        "111000",
        "111110",
        "111110",
        "111111",
    ]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 24), st.data())
def test_inverse_dynamics_mask_matches_a_slow_reference(seq_len, data):
    start = data.draw(st.integers(1, max(seq_len - 1, 1))) if seq_len > 1 else None
    if start is None:
        return
    rm_idx = data.draw(st.integers(1, start))
    expected = [
        [j <= i and not (i >= start and (i - start) % 2 == 0 and i - rm_idx <= j < i) for j in range(seq_len)]
        for i in range(seq_len)
    ]
    assert inverse_dynamics_mask(seq_len, start, rm_idx).tolist() == expected


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 6), st.integers(1, 5), st.data())
def test_multi_token_mask_matches_a_slow_reference(tokens_per_step, steps, data):
    num_obs = data.draw(st.integers(1, tokens_per_step - 1))
    seq_len = tokens_per_step * steps

    def same_observation(i: int, j: int) -> bool:
        return i // tokens_per_step == j // tokens_per_step and i % tokens_per_step < num_obs and j % tokens_per_step < num_obs

    expected = [[j <= i or same_observation(i, j) for j in range(seq_len)] for i in range(seq_len)]
    assert multi_token_observation_mask(seq_len, tokens_per_step, num_obs).tolist() == expected


def test_mask_action_tokens_replaces_odd_positions_of_listed_steps():
    tokens = torch.arange(2 * 8 * 3, dtype=torch.float32).reshape(2, 8, 3)
    masked = mask_action_tokens(tokens, [0, 1])
    assert (masked[:, [1, 3]] == -1.0).all()
    torch.testing.assert_close(masked[:, [0, 2, 4, 5, 6, 7]], tokens[:, [0, 2, 4, 5, 6, 7]])
    assert tokens[0, 1, 0] == 3.0, "the input is not modified"


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 10), st.floats(0.0, 1.0), st.booleans(), st.booleans(), st.integers(0, 99))
def test_random_trajectory_masking_hides_exactly_the_chosen_steps(batch, steps, ratio, observations, actions, seed):
    if not (observations or actions):
        return
    tokens = torch.randn(batch, 2 * steps, 3)
    masked, hidden = random_trajectory_masking(tokens, ratio, torch.Generator().manual_seed(seed), observations, actions)
    per_kind = round(ratio * steps)
    assert hidden.shape == (batch, 2 * steps)
    assert (hidden[:, 0::2].sum(1) == (per_kind if observations else 0)).all()
    assert (hidden[:, 1::2].sum(1) == (per_kind if actions else 0)).all()
    assert (masked[hidden] == -1.0).all()
    torch.testing.assert_close(masked[~hidden], tokens[~hidden])
    again, hidden_again = random_trajectory_masking(tokens, ratio, torch.Generator().manual_seed(seed), observations, actions)
    assert torch.equal(hidden, hidden_again) and torch.equal(masked, again)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: inverse_dynamics_mask(0), "seq_len=0"),
        (lambda: inverse_dynamics_mask(8, start=8), "start=8"),
        (lambda: inverse_dynamics_mask(8, start=2, rm_idx=3), "rm_idx=3"),
        (lambda: inverse_dynamics_mask(8, start=2, rm_idx=0), "rm_idx=0"),
        (lambda: multi_token_observation_mask(7, 3, 2), "tokens_per_step=3 does not divide"),
        (lambda: multi_token_observation_mask(6, 3, 3), "num_obs_tokens=3"),
        (lambda: mask_action_tokens(torch.zeros(1, 4, 2), [2]), "mask_idx=2"),
        (lambda: mask_action_tokens(torch.zeros(1, 5, 2), [0]), r"shape \(1, 5, 2\)"),
        (lambda: random_trajectory_masking(torch.zeros(1, 4, 2), 1.5), "ratio=1.5"),
        (lambda: random_trajectory_masking(torch.zeros(1, 4, 2), -0.1), "ratio=-0.1"),
    ],
)
def test_trajectory_mask_errors_name_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_additive_mask_is_zero_where_allowed_and_minus_inf_elsewhere():
    import pytest
    import torch

    from sb3_masked_attention.masks import additive_mask

    mask = torch.tensor([[True, False], [False, True]])
    expected = torch.tensor([[0.0, float("-inf")], [float("-inf"), 0.0]])
    assert torch.equal(additive_mask(mask), expected) and additive_mask(mask).dtype == torch.float32
    assert additive_mask(mask, torch.float64).dtype == torch.float64
    with pytest.raises(ValueError, match="boolean"):
        additive_mask(expected)
