"""Shorten a transformer's context at inference, on the embedded tokens the first layer reads.

Three strategies, each a :class:`ContextCompressor` that maps the context window ``(B, T, d_model)``
to a shorter one before every step (positions are re-indexed in the compressed context):

* :class:`RecentWindowSummary` ``window:W:M`` - keep the newest ``W`` tokens; the older part becomes ``M``
  summary tokens (the mean embedding of ``M`` equal chunks).
* :class:`TopKAttention` ``topk:K[:A]`` - keep the newest token, the first ``A`` tokens of the run (anchors,
  default 1) and the ``K`` others that received the most attention so far (mean attention from the newest
  query over the steps they were in context, fed back through :meth:`ContextCompressor.observe`).
* :class:`Hierarchical` ``hierarchy:R:M[:r1:r2]`` - keep the newest ``R``; pool the ``M`` before them
  ``r1``:1 (default 2) and everything older ``r2``:1 (default 4).

:func:`parse_compressor` turns the ``kind:numbers`` text used on the command line into one.
"""

from __future__ import annotations

import math

import torch

from sb3_masked_attention.validation import check_int


class ContextCompressor:
    """Base class: :meth:`compress` the context before a step, :meth:`observe` the step's attention after it."""

    name = "none"
    needs_weights = False  # whether observe() reads the attention (turns on the explicit attention path)

    def reset(self) -> None:
        """Forget what was observed (a new evaluation)."""

    def compress(self, tokens: torch.Tensor, first_position: int) -> torch.Tensor:
        """:param tokens: ``(B, T, d)`` context, oldest first; :param first_position: absolute index of ``tokens[:, 0]``."""
        raise NotImplementedError

    def observe(self, weights: list[torch.Tensor]) -> None:
        """Each layer's newest-query weights ``(B, H, 1, T')`` over the compressed context of the last step."""

    def __repr__(self) -> str:
        return self.name


def _pool(tokens: torch.Tensor, ratio: int) -> torch.Tensor:
    """Mean of each ``ratio`` consecutive tokens (the last group may be shorter)."""
    if tokens.shape[1] == 0 or ratio == 1:
        return tokens
    groups = [tokens[:, i : i + ratio].mean(dim=1, keepdim=True) for i in range(0, tokens.shape[1], ratio)]
    return torch.cat(groups, dim=1)


class RecentWindowSummary(ContextCompressor):
    """Newest ``window`` tokens kept, the older part summarised by ``summaries`` mean tokens.

    :param window: tokens kept verbatim (>= 1).
    :param summaries: summary tokens for the older part (0: drop it).
    """

    def __init__(self, window: int, summaries: int = 1) -> None:
        self.window, self.summaries = check_int("window", window), check_int("summaries", summaries, minimum=0)
        self.name = f"window:{window}:{summaries}"

    def compress(self, tokens: torch.Tensor, first_position: int) -> torch.Tensor:
        old, recent = tokens[:, : -self.window], tokens[:, -self.window :]
        if old.shape[1] == 0 or self.summaries == 0:
            return recent
        return torch.cat([_pool(old, math.ceil(old.shape[1] / self.summaries)), recent], dim=1)


class TopKAttention(ContextCompressor):
    """The ``k`` most attended tokens, the first ``anchors`` tokens of the run and the newest token.

    :param k: tokens chosen by attention (>= 1).
    :param anchors: first tokens of the run always kept while in the window.
    """

    def __init__(self, k: int, anchors: int = 1) -> None:
        self.k, self.anchors = check_int("k", k), check_int("anchors", anchors, minimum=0)
        self.name = f"topk:{k}:{anchors}"
        self.needs_weights = True
        self.reset()

    def reset(self) -> None:
        self._sum: dict[int, float] = {}
        self._count: dict[int, int] = {}
        self._kept: list[int] = []

    def compress(self, tokens: torch.Tensor, first_position: int) -> torch.Tensor:
        length = tokens.shape[1]
        positions = list(range(first_position, first_position + length))
        forced = {positions[-1]} | {p for p in positions if p < self.anchors}
        # every token is observed at least once (as the newest, which is always kept), so scores exist for all
        # but the very first steps; ties go to the newer token
        score = {p: self._sum[p] / self._count[p] if p in self._count else 0.0 for p in positions if p not in forced}
        chosen = sorted(score, key=lambda p: (score[p], p), reverse=True)[: self.k]
        self._kept = sorted(forced | set(chosen))
        return tokens[:, [p - first_position for p in self._kept]]

    def observe(self, weights: list[torch.Tensor]) -> None:
        received = torch.stack([w[:, :, -1, :] for w in weights]).mean(dim=(0, 1, 2))  # (T',): layers, batch, heads
        for position, value in zip(self._kept, received.tolist()):
            self._sum[position] = self._sum.get(position, 0.0) + value
            self._count[position] = self._count.get(position, 0) + 1


class Hierarchical(ContextCompressor):
    """Recent tokens kept, medium-distance ones pooled ``medium_ratio``:1, distant ones ``distant_ratio``:1.

    :param recent: newest tokens kept verbatim (>= 1).
    :param medium: tokens before them pooled at ``medium_ratio``.
    :param medium_ratio: pooling of the medium part (>= 1).
    :param distant_ratio: pooling of everything older (>= 1).
    """

    def __init__(self, recent: int, medium: int, medium_ratio: int = 2, distant_ratio: int = 4) -> None:
        self.recent, self.medium = check_int("recent", recent), check_int("medium", medium, minimum=0)
        self.medium_ratio, self.distant_ratio = (
            check_int("medium_ratio", medium_ratio),
            check_int("distant_ratio", distant_ratio),
        )
        self.name = f"hierarchy:{recent}:{medium}:{medium_ratio}:{distant_ratio}"

    def compress(self, tokens: torch.Tensor, first_position: int) -> torch.Tensor:
        length = tokens.shape[1]
        cut_recent = max(0, length - self.recent)
        cut_medium = max(0, cut_recent - self.medium)
        return torch.cat(
            [
                _pool(tokens[:, :cut_medium], self.distant_ratio),
                _pool(tokens[:, cut_medium:cut_recent], self.medium_ratio),
                tokens[:, cut_recent:],
            ],
            dim=1,
        )


KINDS = {"window": (RecentWindowSummary, 1, 2), "topk": (TopKAttention, 1, 2), "hierarchy": (Hierarchical, 2, 4)}


def parse_compressor(text: str) -> ContextCompressor:
    """``window:W[:M]``, ``topk:K[:A]`` or ``hierarchy:R:M[:r1[:r2]]`` -> a compressor."""
    kind, _, rest = text.partition(":")
    if kind not in KINDS:
        raise ValueError(f"compression {text!r} is unknown: expected window:W[:M], topk:K[:A] or hierarchy:R:M[:r1[:r2]]")
    cls, least, most = KINDS[kind]
    try:
        numbers = [int(part) for part in rest.split(":")] if rest else []
    except ValueError:
        numbers = None
    if numbers is None or not least <= len(numbers) <= most:
        raise ValueError(f"compression {text!r} is invalid: {kind} takes {least} to {most} integers separated by ':'")
    return cls(*numbers)
