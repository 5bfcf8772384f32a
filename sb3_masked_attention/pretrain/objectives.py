"""Self-supervised objectives for a trajectory transformer, on token batches.

A token batch is ``(B, T, C)``: one token per step, the step's observation, previous action and previous
reward side by side (the :class:`HeadMaskedTransformerExtractor` layout; :class:`TokenLayout` says where
each part sits), with ``valid (B, T)`` marking real steps and ``episode_start (B, T)`` the first step of
an episode. Every objective takes an ``encode(tokens, valid) -> (B, T, d)`` function (a causal trunk),
hides part of the input, and scores a prediction of what it hid; it returns a scalar loss.

* :class:`InverseDynamics`: hide the previous action of random steps ``t+1`` (the token that holds
  ``a_t``, so ``o_{t+1}`` cannot see ``a_t``) and predict ``a_t`` from the trunk at ``t+1``, which sees
  ``o_t`` and ``o_{t+1}``.
* :class:`MaskedReconstruction`: hide the observation and previous action of random steps (replaced by
  ``mask_value``) and reconstruct them from the trunk at those steps.
* :class:`ForwardDynamics`: predict ``o_{t+1}`` from the trunk at ``t`` and the action ``a_t``.

Discrete actions (one-hot parts) are scored with cross-entropy, everything else with mean squared error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sb3_masked_attention.validation import check_int

Encoder = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

OBJECTIVES = ("inverse_dynamics", "masked_reconstruction", "forward_dynamics")


@dataclass(frozen=True)
class TokenLayout:
    """Where the parts of a step's token sit.

    :param obs: slice of the observation.
    :param action: slice of the previous action.
    :param discrete_action: the action part is a one-hot (cross-entropy) rather than a vector (MSE).
    """

    obs: slice
    action: slice
    discrete_action: bool

    @property
    def obs_size(self) -> int:
        return self.obs.stop - self.obs.start

    @property
    def action_size(self) -> int:
        return self.action.stop - self.action.start


def _check_ratio(ratio: float) -> float:
    if not 0.0 < float(ratio) <= 1.0:
        raise ValueError(f"ratio={ratio!r} is invalid: expected a share of steps in (0, 1]")
    return float(ratio)


def _pick(candidates: torch.Tensor, ratio: float, generator: torch.Generator | None) -> torch.Tensor:
    """A random ``ratio`` share of the True entries of ``candidates (B, T)`` (at least one per row that has any)."""
    scores = torch.rand(candidates.shape, generator=generator, device="cpu").to(candidates.device)
    scores = scores.masked_fill(~candidates, 2.0)
    counts = (candidates.sum(1).float() * ratio).ceil().clamp(min=1).long()
    ranks = scores.argsort(dim=1).argsort(dim=1)
    return candidates & (ranks < counts[:, None])


def _head(d_in: int, d_out: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d_in, d_in), nn.GELU(), nn.Linear(d_in, d_out))


class Objective(nn.Module):
    """A self-supervised loss on a batch of history windows, with its prediction head.

    :param d_model: trunk width.
    :param layout: where observation and previous action sit in a token.
    :param ratio: share of eligible steps used per sequence.
    :param mask_value: value written over what is hidden.
    """

    def __init__(self, d_model: int, layout: TokenLayout, ratio: float, mask_value: float) -> None:
        super().__init__()
        self.d_model, self.layout = check_int("d_model", d_model), layout
        self.ratio, self.mask_value = _check_ratio(ratio), float(mask_value)

    #: what a window must hold for the objective to have a step to learn from (for the error when none does).
    needs = "real steps"

    def eligible(self, valid: torch.Tensor, episode_start: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T)`` the positions this objective can be trained at (hidden, read or predicted)."""
        return valid.bool()

    def _action_loss(self, predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.layout.discrete_action:
            return F.cross_entropy(predicted, target.argmax(-1))
        return F.mse_loss(predicted, target)


class InverseDynamics(Objective):
    """Predict ``a_t`` at step ``t + horizon`` after hiding the previous-action part of token ``t + 1`` (which holds ``a_t``).

    ``horizon=1`` reads ``a_t`` from ``o_t -> o_{t+1}``; environments integrated with explicit Euler (CartPole:
    the action changes the velocity, which moves the cart one step later) show ``a_t`` only in ``o_{t+2}``: use 2.

    :param d_model: trunk width.
    :param layout: token layout.
    :param ratio: share of eligible steps hidden per sequence.
    :param mask_value: value written over the hidden action.
    :param horizon: steps after ``t`` at which ``a_t`` is predicted (>= 1).
    """

    def __init__(
        self, d_model: int, layout: TokenLayout, ratio: float = 0.3, mask_value: float = 0.0, horizon: int = 1
    ) -> None:
        super().__init__(d_model, layout, ratio, mask_value)
        self.horizon = check_int("horizon", horizon)
        self.head = _head(d_model, layout.action_size)
        self.needs = f"{horizon + 1} consecutive real steps of one episode (horizon={horizon})"

    def eligible(self, valid: torch.Tensor, episode_start: torch.Tensor | None = None) -> torch.Tensor:
        valid = valid.bool()
        starts = torch.zeros_like(valid) if episode_start is None else episode_start.bool()
        length, h = valid.shape[1], self.horizon
        # token p (holding a_{p-1}) is eligible when p-1 .. p+h-1 are real steps of one episode
        eligible = torch.zeros_like(valid)
        if length > h:
            ok = valid[:, : length - h].clone()  # p - 1
            for k in range(1, h + 1):
                ok &= valid[:, k : length - h + k] & ~starts[:, k : length - h + k]
            eligible[:, 1 : length - h + 1] = ok
        return eligible

    def forward(
        self,
        encode: Encoder,
        tokens: torch.Tensor,
        valid: torch.Tensor,
        episode_start: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        valid = valid.bool()
        length, h = valid.shape[1], self.horizon
        hidden = _pick(self.eligible(valid, episode_start), self.ratio, generator)
        target = tokens[..., self.layout.action][hidden]
        masked = tokens.clone()
        part = masked[..., self.layout.action]
        masked[..., self.layout.action] = torch.where(hidden[..., None], torch.full_like(part, self.mask_value), part)
        read = torch.zeros_like(hidden)
        read[:, h - 1 :] = hidden[:, : length - h + 1]  # predict at p + h - 1
        features = encode(masked, valid.float())
        return self._action_loss(self.head(features[read]), target)


class MaskedReconstruction(Objective):
    """Reconstruct the observation (and previous action) of randomly hidden steps.

    :param reconstruct_actions: also hide and reconstruct the previous action.
    """

    def __init__(
        self, d_model: int, layout: TokenLayout, ratio: float = 0.15, mask_value: float = 0.0, reconstruct_actions: bool = True
    ) -> None:
        super().__init__(d_model, layout, ratio, mask_value)
        self.reconstruct_actions = reconstruct_actions
        self.obs_head = _head(d_model, layout.obs_size)
        self.action_head = _head(d_model, layout.action_size) if reconstruct_actions else None

    def forward(
        self,
        encode: Encoder,
        tokens: torch.Tensor,
        valid: torch.Tensor,
        episode_start: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        hidden = _pick(valid.bool(), self.ratio, generator)
        parts = [self.layout.obs] + ([self.layout.action] if self.reconstruct_actions else [])
        masked = tokens.clone()
        for part in parts:
            masked[..., part] = torch.where(
                hidden[..., None], torch.full_like(masked[..., part], self.mask_value), masked[..., part]
            )
        features = encode(masked, valid)[hidden]
        loss = F.mse_loss(self.obs_head(features), tokens[..., self.layout.obs][hidden])
        if self.action_head is not None:
            with_action = hidden.clone()
            with_action[:, 0] = False  # no known previous action at the oldest position
            if episode_start is not None:
                with_action &= ~episode_start.bool()
            keep = with_action[hidden]
            if keep.any():
                loss = loss + self._action_loss(
                    self.action_head(features[keep]), tokens[..., self.layout.action][hidden][keep]
                )
        return loss


class ForwardDynamics(Objective):
    """Predict ``o_{t+1}`` from the trunk at ``t`` and the action ``a_t`` (read from token ``t+1``)."""

    def __init__(self, d_model: int, layout: TokenLayout, ratio: float = 1.0, mask_value: float = 0.0) -> None:
        super().__init__(d_model, layout, ratio, mask_value)
        self.head = _head(d_model + layout.action_size, layout.obs_size)
        self.needs = "2 consecutive real steps of one episode"

    def eligible(self, valid: torch.Tensor, episode_start: torch.Tensor | None = None) -> torch.Tensor:
        pairs = valid[:, :-1].bool() & valid[:, 1:].bool()  # (B, T-1): step t and t+1 both real
        if episode_start is not None:
            pairs &= ~episode_start[:, 1:].bool()
        return F.pad(pairs, (0, 1))  # position t: predicted from t

    def forward(
        self,
        encode: Encoder,
        tokens: torch.Tensor,
        valid: torch.Tensor,
        episode_start: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        chosen = _pick(self.eligible(valid, episode_start)[:, :-1], self.ratio, generator)
        features = encode(tokens, valid)[:, :-1][chosen]
        action = tokens[:, 1:, self.layout.action][chosen]
        return F.mse_loss(self.head(torch.cat([features, action], dim=-1)), tokens[:, 1:, self.layout.obs][chosen])


CLASSES = {
    "inverse_dynamics": InverseDynamics,
    "masked_reconstruction": MaskedReconstruction,
    "forward_dynamics": ForwardDynamics,
}


def make_objectives(
    names: list[str] | tuple[str, ...], d_model: int, layout: TokenLayout, options: dict[str, dict] | None = None
) -> nn.ModuleDict:
    """The named objectives with their prediction heads; ``options`` maps a name to its keyword arguments
    (e.g. ``{"inverse_dynamics": {"horizon": 2}}``)."""
    if not names:
        raise ValueError(f"objectives is empty: expected some of {list(OBJECTIVES)}")
    unknown = [name for name in names if name not in CLASSES]
    if unknown:
        raise ValueError(f"objective {unknown[0]!r} is unknown: expected some of {list(OBJECTIVES)}")
    options = options or {}
    return nn.ModuleDict({name: CLASSES[name](d_model, layout, **options.get(name, {})) for name in dict.fromkeys(names)})
