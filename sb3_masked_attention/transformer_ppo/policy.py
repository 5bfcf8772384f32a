"""The transformer memory policy: one new token per env per step, a per-layer memory of the last ``memory_len``.

Memory is Transformer-XL style. Each layer keeps, per env, the block inputs of the last ``memory_len`` tokens
(:class:`MemoryState.hidden`) and, as a cache, their keys and values: a rollout step embeds one token and, per
layer, projects only that token and reads the cached memory (cost O(memory_len) for the read, nothing else grows).
Training does not re-encode windows: the rollout buffer keeps each step's block inputs once, and each layer's keys
and values are projected from them once per minibatch (with the current weights, so gradients reach the
projections) and gathered per sample. The memory's hidden states themselves are not re-computed (no gradient
flows back through earlier tokens' layers): the trade-off Transformer-XL and CleanRL's PPO-TrXL make, which
keeps training cost per sample linear in ``memory_len`` and makes the first epoch reproduce the rollout exactly.

Positions are rotary and relative to the reading token, and each head keeps the oldest-first window of
:func:`~sb3_masked_attention.masks.head_window_mask` over the valid memory
(:func:`~sb3_masked_attention.masks.memory_head_mask`).
Tokens are the observations of :class:`~sb3_masked_attention.wrappers.HistoryWrapper` with ``history_len=1``
(observation, previous action, previous reward, and the episode-start flag with ``across_episodes=True``).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_masked_attention.attention import TransformerBlock, stream_window_layout
from sb3_masked_attention.extractors.transformer import history_layout
from sb3_masked_attention.masks import additive_mask, memory_window_sizes
from sb3_masked_attention.policies import with_fast_adam
from sb3_masked_attention.strategies import HeadMaskStrategy, resolve_head_mask_strategy
from sb3_masked_attention.transformer_ppo.buffer import ACTION_MASK, MEMORY_ENV, MEMORY_STEP, MEMORY_VALID
from sb3_masked_attention.validation import check_int
from sb3_masked_attention.wrappers import ACTION_KEY, EPISODE_START_KEY, OBS_KEY, REWARD_KEY

TOKEN_KEYS = (OBS_KEY, ACTION_KEY, REWARD_KEY, EPISODE_START_KEY)
#: What a token may hold (``token_inputs``); the episode-start flag joins them when the memory runs across episodes.
TOKEN_INPUTS = (OBS_KEY, ACTION_KEY, REWARD_KEY)
MEMORY_KEYS = (MEMORY_ENV, MEMORY_STEP, MEMORY_VALID, ACTION_MASK)
#: Logit of an invalid action: finite (so entropies stay finite), far below any real logit (probability exactly 0).
MASKED_LOGIT = -1e8


#: The longest memory a policy is built with (tokens per layer and env): 16,384 steps, beyond any episode we run.
MAX_MEMORY_LEN = 16_384


@dataclass
class MemoryState:
    """Per-env memory of a :class:`TransformerMemory` (``N`` envs, ``L`` layers, ``M`` memory slots), a ring buffer
    of ``S = M + 1`` slots: the newest token is in slot ``head - 1``, the oldest in ``head + 1`` (mod ``S``), and slot
    ``head`` is free for the next token, whose own key and value go there before it reads: a step writes one slot and
    reads the ring in place (no copy of the memory), moves nothing.

    :param hidden: ``(N, S, L, d_model)`` block inputs of the last ``M`` tokens (and the free slot).
    :param kv: ``(L, N, 2, H, S, D)`` their attention keys, rotated at their positions in the env's stream, and values:
        a cache (keys and values of each env contiguous, as attention reads them; a step writes both with one copy).
    :param n_valid: ``(N,)`` how many of the newest slots hold tokens of this episode (or stream).
    :param head: ``(N,)`` the slot the next token goes to.
    :param position: ``(N,)`` the next token's position in the env's stream.
    """

    hidden: torch.Tensor
    kv: torch.Tensor
    n_valid: torch.Tensor
    head: torch.Tensor
    position: torch.Tensor

    def select(self, index: Any) -> MemoryState:
        """The memory of the envs ``index`` (a list or tensor of env indices): a copy."""
        return MemoryState(self.hidden[index], self.kv[:, index], self.n_valid[index], self.head[index], self.position[index])

    def layers(self, start: int, stop: int) -> MemoryState:
        """Layers ``start .. stop - 1`` of the memory, a view (writes to their slots land here): the actor's or the
        critic's part of a policy whose critic has its own memory. Its counters are this state's; :meth:`advance`
        the whole state, not a part."""
        return MemoryState(self.hidden[:, :, start:stop], self.kv[start:stop], self.n_valid, self.head, self.position)

    def advance(self, hidden: torch.Tensor, n_valid: torch.Tensor) -> None:
        """Write a step's block inputs ``hidden`` ``(N, L, d_model)`` into the free slot and move on: the token that
        read ``n_valid`` ``(N,)`` valid slots joins the memory (at most ``M`` slots stay valid)."""
        slots = self.hidden.shape[1]
        self.hidden[torch.arange(hidden.shape[0], device=hidden.device), self.head] = hidden
        self.n_valid = (n_valid + 1).clamp_(max=slots - 1)
        self.head = (self.head + 1).remainder_(slots)
        self.position = self.position + 1

    def oldest_first(self) -> torch.Tensor:
        """The memory's slot indices ``(N, M)`` in age order, oldest first (the free slot left out)."""
        ring = self.hidden.shape[1]
        return (self.head[:, None] + 1 + torch.arange(ring - 1, device=self.head.device)) % ring

    def memory_hidden(self) -> torch.Tensor:
        """The memory's block inputs ``(L, N, M, d_model)``, oldest first (what a rollout's streams start with)."""
        rows = torch.arange(self.hidden.shape[0], device=self.hidden.device)[:, None]
        return self.hidden[rows, self.oldest_first()].permute(2, 0, 1, 3)


class TransformerMemory(BaseFeaturesExtractor):
    """The transformer over a stream of one-step tokens with a memory of ``memory_len`` per layer.

    :param observation_space: the Dict space of ``HistoryWrapper(env, history_len=1)``.
    :param memory_len: memory slots per layer (tokens before the current one that it can read).
    :param d_model: width; also the number of features.
    :param n_heads: attention heads.
    :param n_layers: transformer blocks.
    :param ff_dim: MLP width (default ``4 * d_model``).
    :param head_mask_strategy: a strategy name or one fraction per head.
    :param rotary_base: wavelength base of the rotary positions (10,000 as RoFormer; with heads of 8 channels only two
        of their four frequencies then turn by more than 0.64 rad over 64 steps).
    :param gated: GTrXL's gated residuals (:class:`~sb3_masked_attention.attention.GatedResidual`) in every block.
    :param token_inputs: what each step's token holds, of :data:`TOKEN_INPUTS` (``obs`` always): leaving out the
        previous action, say, tests whether a policy leans on its own last action rather than on what it observed.
    :param episode_positions: add a learned embedding of each token's index in its memory (how many earlier tokens of
        its episode it reads: the episode's step, up to ``memory_len``) to the token, as GPT adds absolute positions.
        Rotary positions are relative, so without it the memory can tell how far into the episode it is only by
        attending to the first token; a policy may need that time (issue 35: CountRecallEasy).
    :param episode_time: append the token's step in its episode, as a fraction of ``memory_len`` (its count of valid
        memory slots over ``memory_len``: 0 at an episode's first token, 1 from step ``memory_len`` on), to the token
        before it is embedded, as gymnasium's ``TimeAwareObservation`` appends the time to an observation. Unlike
        ``episode_positions``' one vector per step, a feature linear in the step: what is learned at one step carries
        to its neighbours (an LSTM's state drifts with the steps in the same smooth way).
    """

    window_sizes: torch.Tensor
    ring_slots: torch.Tensor

    def __init__(
        self,
        observation_space: spaces.Dict,
        memory_len: int = 64,
        d_model: int = 64,
        n_heads: int = 8,
        n_layers: int = 2,
        ff_dim: int | None = None,
        head_mask_strategy: HeadMaskStrategy = "none",
        rotary_base: float = 10_000.0,
        gated: bool = False,
        token_inputs: Sequence[str] = TOKEN_INPUTS,
        episode_positions: bool = False,
        episode_time: bool = False,
    ) -> None:
        history_len, _ = history_layout(observation_space)
        if history_len != 1:
            raise ValueError(
                f"the transformer memory reads one token per step: wrap the env in HistoryWrapper(env, history_len=1), "
                f"not history_len={history_len}"
            )
        self.memory_len = check_int("memory_len", memory_len)
        if memory_len > MAX_MEMORY_LEN:
            raise ValueError(
                f"memory_len={memory_len} is larger than {MAX_MEMORY_LEN}: each env keeps that many tokens per layer, "
                "and training reads them for every sample; a longer memory than any episode buys nothing"
            )
        for name, value in (("d_model", d_model), ("n_heads", n_heads), ("n_layers", n_layers)):
            check_int(name, value)
        for name, flag in (("gated", gated), ("episode_positions", episode_positions), ("episode_time", episode_time)):
            if not isinstance(flag, bool):
                raise ValueError(f"{name}={flag!r} is invalid: expected True or False")
        inputs: tuple[str, ...] = tuple(token_inputs) if isinstance(token_inputs, (list, tuple)) else ()
        if OBS_KEY not in inputs or len(set(inputs)) != len(inputs) or not set(inputs) <= set(TOKEN_INPUTS):
            raise ValueError(
                f"token_inputs={token_inputs!r} is invalid: expected a list of distinct names of {list(TOKEN_INPUTS)} "
                f"holding {OBS_KEY!r}"
            )
        if d_model % n_heads != 0 or (d_model // n_heads) % 2 != 0:
            raise ValueError(f"d_model={d_model} must be n_heads={n_heads} times an even head size (rotary positions)")
        super().__init__(observation_space, features_dim=d_model)
        self.head_fractions = resolve_head_mask_strategy(head_mask_strategy, n_heads)
        self.across_episodes = EPISODE_START_KEY in observation_space.spaces
        self.token_inputs = inputs
        self.token_keys = [
            key for key in TOKEN_KEYS if key in observation_space.spaces and key in (*inputs, EPISODE_START_KEY)
        ]
        shapes: list[tuple[int, ...]] = [tuple(observation_space.spaces[key].shape or ()) for key in self.token_keys]
        #: the size of a token (:meth:`tokens`); the embedding reads one more input with ``episode_time``
        self.token_size = sum(math.prod(shape[1:]) for shape in shapes)  # history_layout checked: (1, ...) each
        self.n_layers, self.n_heads, self.d_model = n_layers, n_heads, d_model
        self.episode_time = episode_time
        self.embed = nn.Linear(self.token_size + int(episode_time), d_model)
        # one vector per count of valid memory slots, 0 (an episode's first token) to memory_len; GPT-2's scale
        self.position_embed = nn.Embedding(memory_len + 1, d_model) if episode_positions else None
        if self.position_embed is not None:
            nn.init.normal_(self.position_embed.weight, std=0.02)
        ff_dim = 4 * d_model if ff_dim is None else check_int("ff_dim", ff_dim)
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, n_heads, ff_dim, rotary=True, rotary_base=rotary_base, gated=gated)
            for _ in range(n_layers)
        )
        self.ln_final = nn.LayerNorm(d_model)
        # what a rollout step looks up instead of building: each head's window for each count of valid memory slots;
        # one column when every head has the same window ("none"), so masks are built once and broadcast over heads
        sizes = memory_window_sizes(self.memory_len, self.head_fractions)
        sizes = sizes[:, :1] if bool((sizes == sizes[:, :1]).all()) else sizes
        self.register_buffer("window_sizes", sizes, persistent=False)
        self.register_buffer("ring_slots", torch.arange(self.memory_len + 1), persistent=False)

    def layers(self) -> list[TransformerBlock]:
        return [cast(TransformerBlock, block) for block in self.blocks]

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        raise RuntimeError("TransformerMemory reads a memory: use TransformerPPO / TransformerMemoryPolicy, not a plain PPO")

    def tokens(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        """One token per env ``(N, token_size)`` from a preprocessed ``HistoryWrapper(history_len=1)`` observation."""
        batch = observations[OBS_KEY].shape[0]
        return torch.cat([observations[key].reshape(batch, -1).float() for key in self.token_keys], dim=-1)

    def embed_tokens(self, tokens: torch.Tensor, n_valid: torch.Tensor) -> torch.Tensor:
        """The first block's inputs ``(N, d_model)`` of tokens ``(N, token_size)`` that read ``n_valid`` ``(N,)`` valid
        memory slots each."""
        if self.episode_time:
            tokens = torch.cat([tokens, (n_valid.to(tokens.dtype) / self.memory_len)[:, None]], dim=-1)
        x = self.embed(tokens)
        return x if self.position_embed is None else x + self.position_embed(n_valid)

    def initial_state(self, n_envs: int, device: torch.device | str = "cpu", copies: int = 1) -> MemoryState:
        """An empty memory for ``n_envs`` envs; ``copies`` memories of this shape stacked layer-wise (2: the actor's
        and the critic's, when the critic has its own)."""
        L, S, H = copies * self.n_layers, self.memory_len + 1, self.n_heads  # M + 1 ring slots: the memory, a free one
        zeros = torch.zeros(n_envs, dtype=torch.long, device=device)
        return MemoryState(
            torch.zeros(n_envs, S, L, self.d_model, device=device),
            torch.zeros(L, n_envs, 2, H, S, self.d_model // H, device=device),
            zeros,
            zeros.clone(),
            zeros.clone(),
        )

    def start(self, state: MemoryState, episode_starts: torch.Tensor) -> torch.Tensor:
        """Valid memory slots of each env for its next token: 0 at an episode start unless ``across_episodes``."""
        if self.across_episodes:
            return state.n_valid
        return torch.where(episode_starts.bool(), 0, state.n_valid)

    def step(
        self, tokens: torch.Tensor, state: MemoryState, episode_starts: torch.Tensor, advance: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Read one token per env: features ``(N, d_model)``, the token's block inputs ``(N, L, d_model)`` (what the
        rollout buffer keeps) and the valid memory slots it read ``(N,)``. With ``advance`` the token is then
        written into ``state`` in place (one slot per layer; nothing moves), else the memory is left as it was (only the
        free slot, which is no part of it, holds the token's keys and values until the next step overwrites them).

        The per-step work is a few tensor ops shared by all layers (the mask, the rotation, where to write), then
        each layer's :meth:`~sb3_masked_attention.attention.TransformerBlock.forward_ring`; nothing leaves the device.
        """
        n, slots = tokens.shape[0], self.memory_len + 1
        n_valid = self.start(state, episode_starts)
        ages = (state.head[:, None] - self.ring_slots) % slots  # (N, S): 0 = the free slot, the token's own
        # head h reads the newest window_sizes[n_valid, h] keys (itself included), as memory_head_mask says
        visible = ages[:, None, None, :] < self.window_sizes[n_valid][:, :, None, None]  # (N, H or 1, 1, S)
        mask = additive_mask(visible)  # SDPA would convert a boolean one in every layer
        angles = self.layers()[0].attn.ring_angles(state.position)  # shared by every layer
        write_at = (torch.arange(n, device=tokens.device), state.head)
        x = self.embed_tokens(tokens, n_valid)
        inputs = []
        for layer, block in enumerate(self.layers()):
            inputs.append(x)
            x = block.forward_ring(x, state.kv[layer], write_at, mask, angles)
        hidden = torch.stack(inputs, dim=1)  # (N, L, d)
        if advance:
            state.advance(hidden, n_valid)
        return self.ln_final(x), hidden, n_valid

    def refresh(self, state: MemoryState) -> None:
        """Project ``state``'s keys and values again from its block inputs with the current weights (in place): after
        an update the cache is stale, while training reads the memory through the current projections."""
        slots = self.memory_len + 1
        ages = (state.head[:, None] - self.ring_slots) % slots  # a slot's token came `age` steps before the next one
        positions = (state.position[:, None] - ages)[:, None, :]  # (N, 1, S): each slot's stream position
        for layer, block in enumerate(self.layers()):
            keys, values = block.memory_kv(state.hidden[:, :, layer])  # (N, H, S, D)
            keys = block.attn.rotate_keys(keys, positions)
            state.kv[layer] = torch.stack([keys, values], dim=1)

    def memory_kv(self, hidden: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Each layer's keys and values ``(E, H, S, D)`` of stored block inputs ``hidden`` ``(L, E, S, d_model)``."""
        return [block.memory_kv(hidden[layer]) for layer, block in enumerate(self.layers())]

    def read_streams(
        self,
        tokens: torch.Tensor,
        streams: torch.Tensor,
        env: torch.Tensor,
        step: torch.Tensor,
        n_valid: torch.Tensor,
        reencode: bool = False,
    ) -> torch.Tensor:
        """Features ``(B, d_model)`` of rollout tokens reading their memories inside the stored streams: token ``b``
        is step ``step[b]`` of env ``env[b]``; its memory is stream positions ``step .. step + M - 1`` of which the
        newest ``n_valid`` are valid. Each layer's keys and values are projected once per stream position and
        rotated there; the scores cost tokens x stream length (linear in ``memory_len`` per token).

        :param streams: ``(L, E, M + n_steps, d_model)`` block inputs (``TransformerRolloutBuffer.streams``).
        :param reencode: the tokens are the whole rollout, env by env (``B = E * n_steps``, ``env``-major): each
            layer's stream then holds, after the memory the rollout began with, the rollout's block inputs as this
            call computes them (current weights, gradients through every earlier token of the rollout) instead of
            the stored ones. The exact memory of :class:`TransformerMemoryPolicy` (``exact_memory=True``).
        """
        n_streams, length = streams.shape[1], streams.shape[2]
        if reencode and tokens.shape[0] != n_streams * (length - self.memory_len):
            raise ValueError(f"reencode needs the whole rollout: {tokens.shape[0]} tokens for {n_streams} streams")
        positions = step + self.memory_len  # each token's own position in its stream
        # head h reads window_sizes[n_valid, h] keys, itself included (memory_head_mask); the same for every layer
        layout = stream_window_layout(env, positions, self.window_sizes[n_valid], n_streams, length, streams.dtype)
        rotary = self.layers()[0].attn.rotary
        assert rotary is not None
        key_angles = rotary.angles(torch.arange(length, device=streams.device), streams.dtype)  # stream positions
        token_angles = rotary.angles(positions[:, None, None], streams.dtype)
        x = self.embed_tokens(tokens, n_valid)[:, None]
        for layer, block in enumerate(self.layers()):
            hidden = streams[layer]
            if reencode:  # the rollout's part of the stream as this layer now sees it
                hidden = torch.cat([hidden[:, : self.memory_len], x.reshape(n_streams, -1, self.d_model)], dim=1)
            keys, values = block.memory_kv(hidden)
            keys = rotary.rotate(keys, key_angles)
            x = block.forward_streams(x, (keys, values), env, None, positions, layout=layout, angles=token_angles)
        return self.ln_final(x[:, 0])


class TransformerMemoryPolicy(ActorCriticPolicy):
    """Actor-critic whose features come from a :class:`TransformerMemory`, shared by actor and critic or, with
    ``share_features_extractor=False``, one each (as RecurrentPPO's default critic has an LSTM of its own).

    ``predict(obs, state, episode_start, deterministic)`` works as RecurrentPPO's: ``state`` is the
    :class:`MemoryState` it returned last (None at the start).

    :param memory_len: memory slots per layer.
    :param d_model: transformer width.
    :param n_heads: heads per layer.
    :param n_layers: transformer blocks.
    :param head_mask_strategy: a strategy name or one fraction per head.
    :param rotary_base: wavelength base of the rotary positions.
    :param gated: GTrXL's gated residuals in every block.
    :param token_inputs: what each step's token holds (default: the observation, the previous action and reward).
    :param episode_positions: a learned embedding of each token's step in its episode (up to ``memory_len``), added to
        the token (:class:`TransformerMemory`); off by default.
    :param episode_time: the token's step in its episode as a fraction of ``memory_len``, appended to the token: a
        feature linear in the step (:class:`TransformerMemory`); off by default.
    :param exact_memory: in training, re-encode each rollout with the current weights at every minibatch (the
        memory's hidden states then change with the weights and pass gradients, as in a window transformer) instead of
        reading the block inputs stored during the rollout (Transformer-XL's stale memory). Costs one pass over the
        whole rollout per minibatch; the rollout itself is unchanged.
    :param ortho_init: SB3's orthogonal initialisation (gain sqrt 2 for every linear layer of the memory and the heads'
        MLPs, 0.01 for the action layer), on by default as in SB3's ``ActorCriticPolicy``; off keeps PyTorch's. Which
        is better depends on the task (issue 35, results/memory_v2): with SB3's, TransformerPPO solved the Passive
        T-Maze at corridor 200 on 3 of 3 seeds, with PyTorch's on none (``tmaze_init``); with the ``default`` zoo
        entry's settings on POPGym's RepeatPreviousEasy, SB3's kept it near random (-0.136 against 0.923 over 5
        seeds), so that entry and the POPGym entries set ``ortho_init=False``.
    :param ortho_init_memory: whether the memory (the transformer) gets SB3's orthogonal initialisation too (default:
        as ``ortho_init``). ``ortho_init=True, ortho_init_memory=False`` initialises the heads as SB3 does and keeps
        the transformer's own initialisation (PyTorch's, GTrXL's gate biases included).
    :param share_features_extractor: one memory for actor and critic (default); False gives the critic a memory of
        its own, of the same settings, fed the same tokens: the value loss then no longer shapes what the actor
        remembers, at twice the memory's compute. The :class:`MemoryState` then holds both memories, the actor's layers
        first.
    :param kwargs: ``ActorCriticPolicy`` arguments (``net_arch`` for the heads after the transformer ...).
    """

    features_extractor: TransformerMemory
    pi_features_extractor: TransformerMemory
    vf_features_extractor: TransformerMemory

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Space,
        lr_schedule: Any,
        memory_len: int = 64,
        d_model: int = 64,
        n_heads: int = 8,
        n_layers: int = 2,
        head_mask_strategy: HeadMaskStrategy = "none",
        rotary_base: float = 10_000.0,
        gated: bool = False,
        token_inputs: Sequence[str] = TOKEN_INPUTS,
        episode_positions: bool = False,
        episode_time: bool = False,
        exact_memory: bool = False,
        ortho_init: bool = True,
        ortho_init_memory: bool | None = None,
        share_features_extractor: bool = True,
        **kwargs: Any,
    ) -> None:
        flags = (
            ("exact_memory", exact_memory),
            ("ortho_init", ortho_init),
            ("share_features_extractor", share_features_extractor),
        )
        for name, flag in flags:
            if not isinstance(flag, bool):
                raise ValueError(f"{name}={flag!r} is invalid: expected True or False")
        if ortho_init_memory is not None and not isinstance(ortho_init_memory, bool):
            raise ValueError(f"ortho_init_memory={ortho_init_memory!r} is invalid: expected True, False or None")
        self.ortho_init_memory = ortho_init if ortho_init_memory is None else ortho_init_memory
        self.exact_memory = exact_memory
        kwargs.setdefault("net_arch", dict(pi=[64], vf=[64]))
        with_fast_adam(kwargs)
        kwargs["features_extractor_class"] = TransformerMemory
        kwargs["features_extractor_kwargs"] = dict(
            memory_len=memory_len,
            d_model=d_model,
            n_heads=n_heads,
            n_layers=n_layers,
            head_mask_strategy=head_mask_strategy,
            rotary_base=rotary_base,
            gated=gated,
            token_inputs=tuple(token_inputs) if isinstance(token_inputs, (list, tuple)) else token_inputs,
            episode_positions=episode_positions,
            episode_time=episode_time,
        )
        self.memory_settings = dict(
            kwargs["features_extractor_kwargs"],
            exact_memory=exact_memory,
            ortho_init_memory=self.ortho_init_memory,
            share_features_extractor=share_features_extractor,  # SB3 does not save it: a loaded model needs it
        )
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            ortho_init=ortho_init,
            share_features_extractor=share_features_extractor,
            **kwargs,
        )

    def _build(self, lr_schedule: Any) -> None:
        # SB3 re-draws the features extractors with the heads when ortho_init is on: the memories may keep their own
        keep = self.ortho_init and not self.ortho_init_memory
        own = [copy.deepcopy(memory.state_dict()) for memory in self.memories()] if keep else None
        super()._build(lr_schedule)
        for index, memory in enumerate(self.memories()):
            if own is not None:
                memory.load_state_dict(own[index])
            elif self.ortho_init_memory and not self.ortho_init:
                memory.apply(partial(self.init_weights, gain=math.sqrt(2)))

    @property
    def memory(self) -> TransformerMemory:
        """The actor's memory (also the critic's unless it has its own)."""
        return self.pi_features_extractor

    def memories(self) -> list[TransformerMemory]:
        """The actor's memory, then the critic's where it has its own: their layers' order in a :class:`MemoryState`
        and in the rollout buffer's streams."""
        if self.share_features_extractor:
            return [self.pi_features_extractor]
        return [self.pi_features_extractor, self.vf_features_extractor]

    def memory_parts(self, layered: torch.Tensor) -> list[torch.Tensor]:
        """``layered`` (layers first, e.g. the buffer's streams) cut into each memory's layers, as :meth:`memories`."""
        return list(layered.split(self.memory.n_layers))

    def state_parts(self, state: MemoryState) -> list[MemoryState]:
        """Each memory's part of ``state`` (views), as :meth:`memories`."""
        n_layers = self.memory.n_layers
        return [state.layers(index * n_layers, (index + 1) * n_layers) for index in range(len(self.memories()))]

    def refresh(self, state: MemoryState) -> None:
        """Project each memory's cached keys and values again with the current weights (after an update)."""
        for memory, part in zip(self.memories(), self.state_parts(state), strict=True):
            memory.refresh(part)

    def step_memories(
        self, tokens: torch.Tensor, state: MemoryState, episode_starts: torch.Tensor, advance: bool = True
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor, torch.Tensor]:
        """:meth:`TransformerMemory.step` of each memory: the actor's and the critic's features (one tensor twice
        where they share the memory), every layer's block inputs ``(N, L_total, d_model)``, the valid slots read."""
        if self.share_features_extractor:
            features, hidden, n_valid = self.memory.step(tokens, state, episode_starts, advance)
            return (features, features), hidden, n_valid
        read = [
            memory.step(tokens, part, episode_starts, advance=False)
            for memory, part in zip(self.memories(), self.state_parts(state), strict=True)
        ]
        hidden, n_valid = torch.cat([block_inputs for _, block_inputs, _ in read], dim=1), read[0][2]
        if advance:
            state.advance(hidden, n_valid)
        return (read[0][0], read[1][0]), hidden, n_valid

    def check_state(self, state: Any, n_envs: int) -> None:
        """Raise ValueError unless ``state`` is None or a :class:`MemoryState` of this policy for ``n_envs`` envs."""
        if state is None:
            return
        memory = self.memory
        expected = (
            memory.n_layers * len(self.memories()),
            n_envs,
            2,
            memory.n_heads,
            memory.memory_len + 1,
            memory.d_model // memory.n_heads,
        )
        if not isinstance(state, MemoryState):
            raise ValueError(f"state is a {type(state).__name__}: expected the MemoryState predict returned, or None")
        if tuple(state.kv.shape) != expected or tuple(state.hidden.shape[:2]) != (n_envs, memory.memory_len + 1):
            raise ValueError(
                f"state holds keys and values of shape {tuple(state.kv.shape)}: expected {expected} (layers, envs, "
                f"key/value, heads, memory_len + 1, head size) for {n_envs} env(s) of this model; pass None to start "
                "an empty memory"
            )

    def check_action_masks(self, action_masks: Any, n_envs: int) -> np.ndarray:
        """``action_masks`` as a boolean ``(n_envs, n_logits)`` array; ValueError if its size is wrong or an env has
        no allowed action (the masked distribution would then draw a forbidden one)."""
        n_logits = int(cast(nn.Linear, self.action_net).out_features)
        masks = np.asarray(action_masks)
        if masks.size != n_envs * n_logits:
            raise ValueError(f"action_masks has shape {masks.shape}: expected {n_logits} flags per env for {n_envs} env(s)")
        masks = masks.reshape(n_envs, n_logits).astype(bool)
        sizes = list(self.action_space.nvec) if isinstance(self.action_space, spaces.MultiDiscrete) else [n_logits]
        for part, allowed in enumerate(np.split(masks, np.cumsum(sizes)[:-1], axis=1)):
            empty = np.flatnonzero(~allowed.any(axis=1))
            if empty.size:
                raise ValueError(
                    f"action_masks allows no action for env(s) {empty.tolist()}"
                    + (f" in action dimension {part}" if len(sizes) > 1 else "")
                    + ": every env needs at least one allowed action"
                )
        return masks

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(self.memory_settings)
        data.pop("features_extractor_class")
        data.pop("features_extractor_kwargs")
        return data

    def initial_state(self, n_envs: int) -> MemoryState:
        """An empty memory for ``n_envs`` envs (the critic's too where it has its own)."""
        return self.memory.initial_state(n_envs, self.device, copies=len(self.memories()))

    def _tokens(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.memory.tokens(preprocess_obs(obs, self.observation_space, self.normalize_images))  # type: ignore[arg-type]

    def _heads(
        self, features: tuple[torch.Tensor, torch.Tensor], action_masks: torch.Tensor | None = None
    ) -> tuple[Any, torch.Tensor]:
        """Action distribution and values from the actor's and the critic's features; invalid actions
        (``action_masks`` False) get probability 0."""
        latent_pi, latent_vf = self.mlp_extractor.forward_actor(features[0]), self.mlp_extractor.forward_critic(features[1])
        if action_masks is None:
            return self._get_action_dist_from_latent(latent_pi), self.value_net(latent_vf)
        if not isinstance(self.action_space, (spaces.Discrete, spaces.MultiDiscrete)):
            raise ValueError(f"action masks need Discrete or MultiDiscrete actions, not {self.action_space}")
        logits = self.action_net(latent_pi)
        masks = action_masks.reshape(logits.shape).bool()
        logits = torch.where(masks, logits, torch.full_like(logits, MASKED_LOGIT))
        return self.action_dist.proba_distribution(action_logits=logits), self.value_net(latent_vf)

    def forward_memory(
        self,
        obs: dict[str, torch.Tensor],
        state: MemoryState,
        episode_starts: torch.Tensor,
        deterministic: bool = False,
        action_masks: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, MemoryState, torch.Tensor, torch.Tensor]:
        """One rollout step: actions, values, log-probs, the memory (advanced in place), the token's block inputs and
        the valid slots it read. ``action_masks`` ``(N, n_logits)``: only actions marked True are drawn."""
        features, hidden, n_valid = self.step_memories(self._tokens(obs), state, episode_starts)
        distribution, values = self._heads(features, action_masks)
        actions = distribution.get_actions(deterministic=deterministic)
        return actions, values, distribution.log_prob(actions), state, hidden, n_valid

    def predict_values_memory(
        self, obs: dict[str, torch.Tensor], state: MemoryState, episode_starts: torch.Tensor
    ) -> torch.Tensor:
        """Values of ``obs`` read with ``state`` (the state is not advanced)."""
        features = self.step_memories(self._tokens(obs), state, episode_starts, advance=False)[0]
        return self._heads(features)[1]

    @contextlib.contextmanager
    def replay(self, streams: torch.Tensor, rollout: dict[str, torch.Tensor] | None = None) -> Iterator[None]:
        """Within the block, :meth:`evaluate_actions` reads each sample's memory from ``streams``
        ``(L, n_envs, M + n_steps, d_model)``: the rollout's block inputs (``TransformerRolloutBuffer.streams``).

        :param rollout: with ``exact_memory``, the whole rollout's observations, env by env (each ``(n_envs * n_steps,
            ...)``, as ``TransformerRolloutBuffer.rollout_observations`` gives them), re-encoded at each call.
        """
        if self.exact_memory and rollout is None:
            raise ValueError("exact_memory re-encodes the rollout: pass replay(streams, rollout=...)")
        self._streams: torch.Tensor | None = streams
        # the whole rollout's tokens and where each sits, built once per update (no weights in them)
        self._rollout: tuple[torch.Tensor, ...] | None = None
        if self.exact_memory and rollout is not None:
            tokens = self._tokens({key: value for key, value in rollout.items() if key not in MEMORY_KEYS})
            self._rollout = (tokens, *(rollout[key].long() for key in (MEMORY_ENV, MEMORY_STEP, MEMORY_VALID)))
        try:
            yield
        finally:
            self._streams, self._rollout = None, None

    def evaluate_actions(  # type: ignore[override]
        self, obs: dict[str, torch.Tensor], actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Values, log-probs and entropy of ``actions`` for buffer samples (their memory position in ``obs``).

        Each layer's keys and values are projected once per call from the whole rollout's streams (current
        weights, so gradients reach the projections) and read in place (``TransformerMemory.read_streams``).
        """
        streams = getattr(self, "_streams", None)
        if streams is None or MEMORY_ENV not in obs:
            raise RuntimeError("evaluate_actions needs TransformerPPO's rollout buffer samples, inside policy.replay(...)")
        env, step, n_valid = obs[MEMORY_ENV].long(), obs[MEMORY_STEP].long(), obs[MEMORY_VALID].long()
        rollout = getattr(self, "_rollout", None)
        if rollout is None:
            tokens = self._tokens({key: value for key, value in obs.items() if key not in MEMORY_KEYS})
        read = []  # the actor's features, then the critic's where it has its own memory
        for memory, memory_streams in zip(self.memories(), self.memory_parts(streams), strict=True):
            if rollout is not None:  # exact memory: every token of the rollout re-encoded, then this minibatch's read
                n_steps = streams.shape[2] - memory.memory_len
                all_tokens, all_env, all_step, all_valid = rollout
                features = memory.read_streams(all_tokens, memory_streams, all_env, all_step, all_valid, reencode=True)
                read.append(features[env * n_steps + step])
            else:
                read.append(memory.read_streams(tokens, memory_streams, env, step, n_valid))
        distribution, values = self._heads((read[0], read[-1]), obs.get(ACTION_MASK))
        return values, distribution.log_prob(actions), distribution.entropy()

    def predict(  # type: ignore[override]
        self,
        observation: dict[str, np.ndarray],
        state: MemoryState | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, MemoryState]:
        """Actions for ``observation`` (one or a batch of envs) and the memory to pass next time (``state`` itself,
        advanced in place; None starts an empty one); ``action_masks`` as MaskablePPO's (True = allowed)."""
        self.set_training_mode(False)
        obs_tensor, vectorized = self.obs_to_tensor(observation)
        n_envs = next(iter(obs_tensor.values())).shape[0] if isinstance(obs_tensor, dict) else obs_tensor.shape[0]
        self.check_state(state, n_envs)
        state = self.initial_state(n_envs) if state is None else state
        if episode_start is None:
            starts = torch.zeros(n_envs)
        else:
            flags = np.asarray(episode_start)
            if flags.size != n_envs:
                raise ValueError(
                    f"episode_start has {flags.size} entries (shape {flags.shape}): expected one per env ({n_envs})"
                )
            starts = torch.as_tensor(flags.astype(np.float32)).reshape(n_envs)
        masks = None if action_masks is None else torch.as_tensor(self.check_action_masks(action_masks, n_envs))
        with torch.no_grad():
            obs = cast(dict[str, torch.Tensor], obs_tensor)
            masks = None if masks is None else masks.to(self.device)
            actions, _, _, new_state, _, _ = self.forward_memory(obs, state, starts.to(self.device), deterministic, masks)
        result = actions.cpu().numpy().reshape((-1, *(self.action_space.shape or ())))
        if isinstance(self.action_space, spaces.Box):
            result = (
                self.unscale_action(result)
                if self.squash_output
                else np.clip(result, self.action_space.low, self.action_space.high)
            )
        if not vectorized:
            result = result.squeeze(axis=0)
        return result, new_state
