import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sb3_masked_attention.attention import MaskedMultiHeadAttention, RotaryEmbedding, TransformerBlock
from sb3_masked_attention.masks import causal_mask, head_window_mask


def per_head_loop_reference(attention: MaskedMultiHeadAttention, x, mask):
    """Slow, obviously correct attention: one head at a time."""
    _batch, _length, _ = x.shape
    q_all = attention.q_proj(x)
    k_all, v_all = attention.kv_proj(x).chunk(2, dim=-1)
    d = attention.head_dim
    outputs = []
    for h in range(attention.n_heads):
        q, k, v = (t[..., h * d : (h + 1) * d] for t in (q_all, k_all, v_all))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d)
        scores = scores.masked_fill(~mask[:, h], float("-inf"))
        outputs.append(scores.softmax(-1) @ v)
    return attention.out_proj(torch.cat(outputs, dim=-1))


@pytest.mark.parametrize("rotary", [False, True])
def test_fast_and_explicit_paths_agree(rotary):
    attention = MaskedMultiHeadAttention(d_model=64, n_heads=8, rotary=rotary)
    x = torch.randn(5, 16, 64)
    valid = torch.ones(5, 16, dtype=torch.bool)
    valid[0, :7] = False
    valid[1, :15] = False
    mask = head_window_mask(valid, [0.0, 0.1, 0.25, 0.4, 0.55, 0.7, 0.85, 0.95])
    fast, no_weights = attention(x, mask=mask)
    explicit, weights = attention(x, mask=mask, need_weights=True)
    assert no_weights is None
    assert weights.shape == (5, 8, 16, 16)
    torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=1e-5)


def test_matches_per_head_loop_reference():
    attention = MaskedMultiHeadAttention(d_model=32, n_heads=4)
    x = torch.randn(3, 10, 32)
    mask = head_window_mask(torch.ones(3, 10, dtype=torch.bool), [0.0, 0.3, 0.6, 0.9])
    torch.testing.assert_close(attention(x, mask=mask)[0], per_head_loop_reference(attention, x, mask), atol=1e-5, rtol=1e-5)


def test_cross_attention_shapes_and_paths():
    attention = MaskedMultiHeadAttention(d_model=16, n_heads=2)
    queries, context = torch.randn(2, 3, 16), torch.randn(2, 7, 16)
    mask = torch.ones(2, 1, 3, 7, dtype=torch.bool)
    mask[..., :2] = False
    fast, _ = attention(queries, context=context, mask=mask)
    explicit, weights = attention(queries, context=context, mask=mask, need_weights=True)
    assert fast.shape == (2, 3, 16) and weights.shape == (2, 2, 3, 7)
    assert torch.all(weights[..., :2] == 0)
    torch.testing.assert_close(fast, explicit, atol=1e-5, rtol=1e-5)


def test_rotary_scores_depend_only_on_relative_position():
    rotary = RotaryEmbedding(head_dim=8)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i, j):
        return (rotary(q, torch.tensor([i])) * rotary(k, torch.tensor([j]))).sum().item()

    assert score(3, 1) == pytest.approx(score(10, 8), abs=1e-5)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)
    x = torch.randn(2, 3, 5, 8)
    torch.testing.assert_close(rotary(x, torch.arange(5)).norm(dim=-1), x.norm(dim=-1))


def test_block_output_and_weights():
    block = TransformerBlock(d_model=32, n_heads=4, ff_dim=64)
    x = torch.randn(2, 6, 32)
    out, weights = block(x, need_weights=True)
    assert out.shape == x.shape and weights.shape == (2, 4, 6, 6)
    torch.testing.assert_close(block(x)[0], out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(d_model=30, n_heads=4), "divide"),
        (dict(d_model=8, n_heads=2, dropout=1.0), "dropout"),
        (dict(d_model=8, n_heads=2, rotary=True, rotary_base=1.0), "rotary_base=1.0"),
        (dict(d_model=8, n_heads=2, rotary=True, rotary_base=float("nan")), "rotary_base=nan"),
    ],
)
def test_attention_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MaskedMultiHeadAttention(**kwargs)


@pytest.mark.parametrize(("rotary", "gated"), [(False, False), (True, False), (True, True)])
def test_last_only_block_equals_last_row_of_full_block(rotary, gated):
    block = TransformerBlock(d_model=32, n_heads=4, ff_dim=64, rotary=rotary, gated=gated)
    x = torch.randn(3, 9, 32)
    mask = head_window_mask(torch.ones(3, 9, dtype=torch.bool), [0.0, 0.2, 0.5, 0.8])
    full, _ = block(x, mask=mask)
    last, weights = block(x, mask=mask, need_weights=True, last_only=True)
    assert last.shape == (3, 1, 32) and weights.shape == (3, 4, 1, 9)
    torch.testing.assert_close(last, full[:, -1:], atol=1e-5, rtol=1e-5)


def test_rotary_rejects_more_queries_than_keys():
    attention = MaskedMultiHeadAttention(d_model=16, n_heads=2, rotary=True)
    with pytest.raises(ValueError, match="rotary"):
        attention(torch.randn(1, 4, 16), context=torch.randn(1, 3, 16))


def test_gated_residual_is_gtrxls_gru_gate():
    """Against the formula written out with separate weight matrices (Parisotto et al. 2019, eq. 8)."""
    from sb3_masked_attention.attention import GatedResidual

    torch.manual_seed(0)
    gate = GatedResidual(6)
    x, y = torch.randn(4, 6), torch.randn(4, 6)
    w_r, w_z, w_h = gate.from_output.weight.chunk(3, dim=0)
    u_r, u_z = gate.from_stream.weight.chunk(2, dim=0)
    u_h, y_plus = gate.candidate.weight, y.clamp(min=0)
    r = torch.sigmoid(y_plus @ w_r.T + x @ u_r.T)
    z = torch.sigmoid(y_plus @ w_z.T + x @ u_z.T - 2.0)
    h = torch.tanh(y_plus @ w_h.T + (r * x) @ u_h.T)
    torch.testing.assert_close(gate(x, y), (1 - z) * x + z * h)
    assert gate.bias.requires_grad and torch.equal(gate.bias, torch.full((6,), 2.0))
    shut = GatedResidual(6, gate_bias=60.0)  # a shut gate passes the stream on unchanged
    torch.testing.assert_close(shut(x, y), x)


def test_a_gated_block_has_gates_and_a_plain_block_none():
    assert TransformerBlock(8, 2, 16).gates is None
    gated = TransformerBlock(8, 2, 16, gated=True)
    assert gated.gates is not None and len(gated.gates) == 2
    assert sum(p.numel() for p in gated.parameters()) - sum(
        p.numel() for p in TransformerBlock(8, 2, 16).parameters()
    ) == 2 * (6 * 64 + 8)


def test_rotary_base_sets_the_frequencies():
    attention = MaskedMultiHeadAttention(16, 2, rotary=True, rotary_base=64.0)
    assert attention.rotary is not None
    torch.testing.assert_close(attention.rotary.inv_freq, 64.0 ** (-torch.arange(0, 8, 2) / 8))


# ---------------------------------------------------------------- key/value cache
@pytest.mark.parametrize(("rotary", "gated"), [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("chunk", [1, 3])
@pytest.mark.parametrize("need_weights", [False, True])
def test_kv_cache_equals_one_causal_pass(rotary, gated, chunk, need_weights):
    from sb3_masked_attention.attention import KVCache, TransformerBlock
    from sb3_masked_attention.masks import causal_mask

    torch.manual_seed(0)
    blocks = torch.nn.ModuleList(TransformerBlock(16, 4, 32, rotary=rotary, gated=gated) for _ in range(2)).eval()
    x = torch.randn(2, 10, 16)
    full, mask = x, causal_mask(10)
    for block in blocks:
        full, _ = block(full, mask=mask)
    caches = [KVCache() for _ in blocks]
    outputs = []
    for start in range(0, 10, chunk):
        h = x[:, start : start + chunk]
        for block, cache in zip(blocks, caches):
            h, weights = block(h, need_weights=need_weights, cache=cache)
            if need_weights:
                assert weights.shape == (2, 4, h.shape[1], len(cache))
                torch.testing.assert_close(weights.sum(-1), torch.ones_like(weights.sum(-1)))
        outputs.append(h)
    torch.testing.assert_close(torch.cat(outputs, dim=1), full, atol=1e-5, rtol=1e-5)
    assert len(caches[0]) == 10


def test_kv_cache_refuses_cross_attention():
    from sb3_masked_attention.attention import KVCache

    attention = MaskedMultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match="causal self-attention"):
        attention(torch.randn(1, 1, 8), context=torch.randn(1, 3, 8), cache=KVCache())


def test_kv_cache_trim_keeps_relative_positions():
    """One rotary layer whose cache is trimmed to ``w`` keys gives, for the next token, the output of a
    fresh causal pass over the last ``w + 1`` tokens: keys keep their absolute rotations."""
    from sb3_masked_attention.attention import KVCache

    torch.manual_seed(1)
    attention = MaskedMultiHeadAttention(16, 4, rotary=True).eval()
    x = torch.randn(1, 12, 16)
    cache = KVCache()
    with torch.no_grad():
        attention(x[:, :11], cache=cache)
        cache.trim(5)
        assert len(cache) == 5 and cache.seen == 11
        stepped, _ = attention(x[:, 11:], cache=cache)
        fresh, _ = attention(x[:, 6:], mask=causal_mask(6))
    torch.testing.assert_close(stepped[:, 0], fresh[:, -1], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="max_len=0"):
        cache.trim(0)


@settings(max_examples=40, deadline=None)
@given(n_keys=st.integers(1, 40), fractions=st.lists(st.floats(0.0, 0.99), min_size=1, max_size=8))
def test_head_window_row_is_the_last_row_of_the_full_mask(n_keys, fractions):
    from sb3_masked_attention.masks import head_window_mask, head_window_row

    full = head_window_mask(torch.ones(1, n_keys, dtype=torch.bool), fractions)[0, :, -1]
    assert torch.equal(head_window_row(n_keys, fractions), full)


def read_memory_reference(attention: MaskedMultiHeadAttention, x, keys, values, mask, position):
    """Slow, obviously correct memory read: one token ``x`` ``(d_model,)`` at ``position`` attends, head by head, to the
    memory's (rotated) ``keys`` and ``values`` ``(H, M, D)`` and to itself, as ``mask`` ``(H, M + 1)`` allows."""
    heads, d = attention.n_heads, attention.head_dim
    q = attention.q_proj(x).view(heads, d)
    own_k, own_v = attention.kv_proj(x).view(2, heads, d)
    if attention.rotary is not None:
        at = torch.tensor([position])
        q, own_k = (attention.rotary(t[None, :, None, :], at)[0, :, 0] for t in (q, own_k))
    outputs = []
    for h in range(heads):
        k, v = torch.cat([keys[h], own_k[h][None]]), torch.cat([values[h], own_v[h][None]])
        scores = (k @ q[h] / math.sqrt(d)).masked_fill(~mask[h], float("-inf"))
        outputs.append(scores.softmax(-1) @ v)
    return attention.out_proj(torch.cat(outputs)), own_k, own_v


@settings(max_examples=25, deadline=None)
@given(
    n_streams=st.integers(1, 4),
    length=st.integers(1, 12),
    n_tokens=st.integers(1, 10),
    rotary=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_forward_streams_equals_reading_each_tokens_memory(n_streams, length, n_tokens, rotary, seed):
    """The training path (tokens grouped by stream, padded, one attention call) equals the slow reference token by token
    over its own stream's keys, on the fast and the explicit path, for any grouping and any mask."""
    generator = torch.Generator().manual_seed(seed)
    attn = MaskedMultiHeadAttention(16, 4, rotary=rotary)
    hidden = torch.randn(n_streams, length, 16, generator=generator)
    x = torch.randn(n_tokens, 1, 16, generator=generator)
    stream_of = torch.randint(0, n_streams, (n_tokens,), generator=generator)
    positions = torch.randint(0, length + 5, (n_tokens,), generator=generator)
    mask = torch.rand(n_tokens, 4, 1, length + 1, generator=generator) < 0.5
    mask[..., -1] = True  # every token reads itself
    keys, values = attn.memory_kv(hidden)
    streams = (attn.rotate_keys(keys), values)
    with torch.no_grad():
        reference = torch.stack(
            [
                read_memory_reference(attn, x[b, 0], streams[0][s], streams[1][s], mask[b, :, 0], int(positions[b]))[0]
                for b, s in enumerate(stream_of.tolist())
            ]
        )[:, None]
        for need_weights in (False, True):
            out = attn.forward_streams(x, streams, stream_of, mask, positions, need_weights=need_weights)
            torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)


@settings(max_examples=25, deadline=None)
@given(memory_len=st.integers(1, 9), rotary=st.booleans(), boolean_mask=st.booleans(), seed=st.integers(0, 2**16))
def test_forward_ring_writes_the_token_into_its_free_slot_and_reads_the_memory(memory_len, rotary, boolean_mask, seed):
    """A rollout step: the token's own key and value land in its row's free slot of the ring, and its output is the slow
    reference's over the memory (in any slot order) and itself, with a boolean or an additive mask."""
    generator = torch.Generator().manual_seed(seed)
    attn = MaskedMultiHeadAttention(16, 4, rotary=rotary)
    batch, slots = 3, memory_len + 1
    x = torch.randn(batch, 16, generator=generator)
    positions = torch.randint(0, 10**6, (batch,), generator=generator)
    keys, values = attn.memory_kv(torch.randn(batch, memory_len, 16, generator=generator))
    keys = attn.rotate_keys(keys, (positions[:, None] - torch.arange(memory_len, 0, -1))[:, None])
    mask = torch.rand(batch, 4, memory_len + 1, generator=generator) < 0.6
    mask[..., -1] = True
    slot = torch.randint(0, slots, (batch,), generator=generator)  # the token's; the memory fills the others in order
    ring = torch.full((batch, 2, 4, slots, 4), float("nan"))
    ring_mask = torch.zeros(batch, 4, 1, slots, dtype=torch.bool)
    for b in range(batch):
        others = [i for i in range(slots) if i != slot[b]]
        ring[b, 0][:, others], ring[b, 1][:, others] = keys[b], values[b]
        ring_mask[b, :, 0, others], ring_mask[b, :, 0, slot[b]] = mask[b, :, :-1], mask[b, :, -1]
    if not boolean_mask:
        ring_mask = torch.zeros(ring_mask.shape).masked_fill(~ring_mask, float("-inf"))
    with torch.no_grad():
        out = attn.forward_ring(x, ring, (torch.arange(batch), slot), ring_mask, attn.ring_angles(positions))
        for b in range(batch):
            expected, own_k, own_v = read_memory_reference(attn, x[b], keys[b], values[b], mask[b], int(positions[b]))
            torch.testing.assert_close(out[b], expected, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(ring[b, 0, :, slot[b]], own_k, atol=1e-6, rtol=1e-6)
            torch.testing.assert_close(ring[b, 1, :, slot[b]], own_v)


def test_ring_angles_are_the_rotation_for_query_and_key_and_the_identity_for_the_value():
    attn = MaskedMultiHeadAttention(64, 8, rotary=True)
    positions = torch.tensor([0, 5, 123_456_789])
    rotation = attn.ring_angles(positions)
    cos, sin = attn.rotary.angles(positions[:, None])  # (3, 1, 8): each pair's cos twice, sin as (-s, s)
    assert rotation.shape == (3, 3, 1, 4) and rotation.dtype == torch.complex64
    for part in (0, 1):
        assert torch.equal(rotation[:, part].real, cos[..., 0::2]) and torch.equal(rotation[:, part].imag, sin[..., 1::2])
    assert torch.equal(rotation[:, 2], torch.ones(3, 1, 4, dtype=torch.complex64))
    assert MaskedMultiHeadAttention(64, 8).ring_angles(positions) is None


@pytest.mark.parametrize("shape", [(2, 3, 5, 8), (40, 8, 30, 8)])
def test_rotation_is_bit_for_bit_the_pairwise_formula(shape):
    rotary = RotaryEmbedding(head_dim=8)
    x, positions = torch.randn(shape), torch.randint(0, 10**7, (shape[0], 1, shape[2]))
    angles = positions.to(torch.float64)[..., None] * rotary.inv_freq.to(torch.float64)
    cos, sin = angles.cos().float(), angles.sin().float()
    x1, x2 = x[..., 0::2], x[..., 1::2]
    assert torch.equal(rotary(x, positions), torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2))


@settings(max_examples=40, deadline=None)
@given(
    n_streams=st.integers(1, 4),
    memory_len=st.integers(1, 8),
    n_steps=st.integers(1, 6),
    n_heads=st.integers(1, 3),
    data=st.data(),
)
def test_stream_window_layout_is_stream_layout_of_the_memory_mask(n_streams, memory_len, n_steps, n_heads, data):
    """The memory read's layout built from window bounds equals stream_layout of the mask written out position by
    position (each token: the newest window - 1 of its memory's stream positions, then itself)."""
    from sb3_masked_attention.attention import stream_layout, stream_window_layout

    n_tokens = data.draw(st.integers(1, n_streams * n_steps))
    pairs = data.draw(st.permutations([(e, t) for e in range(n_streams) for t in range(n_steps)]))[:n_tokens]
    stream_of, step = torch.tensor([e for e, _ in pairs]), torch.tensor([t for _, t in pairs])
    window = torch.tensor(data.draw(st.lists(st.lists(st.integers(1, memory_len + 1), min_size=n_heads, max_size=n_heads),
                                             min_size=n_tokens, max_size=n_tokens)))  # fmt: skip
    length, end = memory_len + n_steps, step + memory_len
    mask = torch.zeros(n_tokens, n_heads, 1, length + 1, dtype=torch.bool)
    for b in range(n_tokens):
        for h in range(n_heads):
            mask[b, h, 0, end[b] - window[b, h] + 1 : end[b]] = True
    mask[..., -1] = True
    expected_rank, expected = stream_layout(stream_of, mask, n_streams)
    rank, layout = stream_window_layout(stream_of, end, window, n_streams, length)
    assert torch.equal(rank, expected_rank) and torch.equal(layout, expected)
