"""Actor-critic policies built on the package's extractors, and their SB3 aliases.

Importing :mod:`sb3_masked_attention` registers ``"HeadMaskedTransformerPolicy"`` with PPO,
A2C and sb3-contrib's MaskablePPO, and ``"MultiScaleAttentionPolicy"`` with PPO and MaskablePPO,
so ``PPO("HeadMaskedTransformerPolicy", env)`` works like ``PPO("MultiInputPolicy", env)``.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import torch as th
from sb3_contrib import MaskablePPO, RecurrentPPO
from sb3_contrib.common.maskable.policies import MaskableMultiInputActorCriticPolicy
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy, RecurrentMultiInputActorCriticPolicy
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.policies import BasePolicy, MultiInputActorCriticPolicy
from torch import nn

from sb3_masked_attention.extractors.multiscale import multiscale_extractor_class
from sb3_masked_attention.extractors.transformer import HeadMaskedTransformerExtractor
from sb3_masked_attention.strategies import HeadMaskStrategy


def features_extractors(policy: BasePolicy, expected: type[nn.Module] | None = None) -> list[Any]:
    """The policy's features extractor(s): the shared one, or the actor's and then the critic's.

    :param expected: raise ValueError unless every extractor is of this class.
    """
    found: list[Any] = [policy.features_extractor]
    if not getattr(policy, "share_features_extractor", True):
        found = [policy.pi_features_extractor, policy.vf_features_extractor]
    if expected is not None:
        for extractor in found:
            if not isinstance(extractor, expected):
                raise ValueError(
                    f"the model's features extractor is a {type(extractor).__name__}: expected a {expected.__name__}"
                )
    return found


def with_fast_adam(kwargs: dict[str, Any]) -> dict[str, Any]:
    """SB3's default optimizer settings (Adam, eps 1e-5) plus ``fused=True``: one kernel updates every parameter
    instead of a Python loop over them (PyTorch's default on CPU); a transformer has many small tensors, and on CPU
    the fused step took 0.22 ms where ``foreach=True`` took 0.66 ms and the loop 0.95 ms (TransformerPPO at memory 16,
    40 tensors: results/benchmarks/memory_profile.md). Only when the caller set no ``optimizer_kwargs`` and the
    optimizer is Adam or AdamW; saved models keep the settings they were trained with."""
    optimizer_class = kwargs.get("optimizer_class", th.optim.Adam)
    if kwargs.get("optimizer_kwargs") is None and optimizer_class in (th.optim.Adam, th.optim.AdamW):
        one_kernel = dict(fused=True) if _cpu_fused_adam() else dict(foreach=True)  # torch < 2.4: no CPU fused kernel
        kwargs["optimizer_kwargs"] = dict(one_kernel, **({"eps": 1e-5} if optimizer_class is th.optim.Adam else {}))
    return kwargs


@functools.cache
def _cpu_fused_adam() -> bool:
    """Whether this torch has Adam's fused kernel on the CPU (2.4 and later)."""
    try:
        parameter = nn.Parameter(th.zeros(1))
        parameter.grad = th.zeros(1)
        th.optim.Adam([parameter], fused=True).step()
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


def _with_transformer_defaults(kwargs: dict[str, Any], head_mask_strategy: HeadMaskStrategy | None) -> dict[str, Any]:
    """Default the extractor to the head-masked transformer; a top-level strategy overrides its kwargs."""
    with_fast_adam(kwargs)
    kwargs.setdefault("features_extractor_class", HeadMaskedTransformerExtractor)
    extractor_kwargs = dict(kwargs.get("features_extractor_kwargs") or {})
    if head_mask_strategy is not None:
        extractor_kwargs["head_mask_strategy"] = head_mask_strategy
    kwargs["features_extractor_kwargs"] = extractor_kwargs
    return kwargs


def _load_pretrained(policy: BasePolicy, path: str | None, freeze: bool) -> None:
    """Put a pretrained trunk into the policy's extractor(s) (``pretrained_extractor`` policy keyword).

    ``PPO.load`` rebuilds the policy with the same keywords and then overwrites every weight with the saved
    ones, so a missing file only warns: the model must stay loadable where the pretraining file is not.
    """
    if path is None:
        return
    from pathlib import Path

    from sb3_masked_attention.extractors.trunk import load_into_extractor

    if not Path(path).is_file():
        warnings.warn(
            f"pretrained_extractor file {path!r} not found: the extractor keeps its initial weights "
            "(expected only when loading a saved model without the pretraining file)",
            stacklevel=3,
        )
        return
    for extractor in features_extractors(policy, HeadMaskedTransformerExtractor):
        load_into_extractor(extractor, path, freeze=freeze)


class HeadMaskedTransformerPolicy(MultiInputActorCriticPolicy):
    """``MultiInputActorCriticPolicy`` whose default features extractor is :class:`HeadMaskedTransformerExtractor`.

    :param head_mask_strategy: shortcut for ``features_extractor_kwargs["head_mask_strategy"]``
        (a strategy name or one fraction per head), handy in rl-zoo ``policy_kwargs``.
    :param pretrained_extractor: a trunk saved by ``sb3ma pretrain`` / ``save_extractor`` to start from
        (rl-zoo: ``policy_kwargs: "dict(pretrained_extractor='trunk.pt')"``).
    :param freeze_extractor: keep the pretrained trunk fixed (only the actor and critic heads learn).
    :param kwargs: everything ``MultiInputActorCriticPolicy`` takes.
    """

    def __init__(
        self,
        *args: Any,
        head_mask_strategy: HeadMaskStrategy | None = None,
        pretrained_extractor: str | None = None,
        freeze_extractor: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **_with_transformer_defaults(kwargs, head_mask_strategy))
        _load_pretrained(self, pretrained_extractor, freeze_extractor)


def _register(algorithm: Any, name: str, policy: type[BasePolicy]) -> None:
    # A fresh dict per class: never mutate an alias table another algorithm may share.
    algorithm.policy_aliases = {**algorithm.policy_aliases, name: policy}


_register(PPO, "HeadMaskedTransformerPolicy", HeadMaskedTransformerPolicy)
_register(A2C, "HeadMaskedTransformerPolicy", HeadMaskedTransformerPolicy)


class MaskableHeadMaskedTransformerPolicy(MaskableMultiInputActorCriticPolicy):
    """The MaskablePPO counterpart of :class:`HeadMaskedTransformerPolicy` (same arguments)."""

    def __init__(
        self,
        *args: Any,
        head_mask_strategy: HeadMaskStrategy | None = None,
        pretrained_extractor: str | None = None,
        freeze_extractor: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **_with_transformer_defaults(kwargs, head_mask_strategy))
        _load_pretrained(self, pretrained_extractor, freeze_extractor)


_register(MaskablePPO, "HeadMaskedTransformerPolicy", MaskableHeadMaskedTransformerPolicy)


def _with_multiscale_defaults(kwargs: dict[str, Any], multiscale_extractor: str) -> dict[str, Any]:
    with_fast_adam(kwargs)
    kwargs.setdefault("features_extractor_class", multiscale_extractor_class(multiscale_extractor))
    kwargs.setdefault("net_arch", dict(pi=[256], vf=[256]))
    return kwargs


class MultiScaleAttentionPolicy(MultiInputActorCriticPolicy):
    """``MultiInputActorCriticPolicy`` over map observations with :class:`MultiScaleExtractorWithAttention`.

    :param multiscale_extractor: ``"attention"`` (default) or ``"plain"`` (:class:`MultiScaleExtractor`),
        the one-word switch for rl-zoo ``policy_kwargs``; an explicit ``features_extractor_class`` wins.
    :param kwargs: everything ``MultiInputActorCriticPolicy`` takes; ``net_arch`` defaults to one
        hidden layer of 256 for the actor and the critic.
    """

    def __init__(self, *args: Any, multiscale_extractor: str = "attention", **kwargs: Any) -> None:
        super().__init__(*args, **_with_multiscale_defaults(kwargs, multiscale_extractor))


class MaskableMultiScaleAttentionPolicy(MaskableMultiInputActorCriticPolicy):
    """The MaskablePPO counterpart of :class:`MultiScaleAttentionPolicy` (same arguments)."""

    def __init__(self, *args: Any, multiscale_extractor: str = "attention", **kwargs: Any) -> None:
        super().__init__(*args, **_with_multiscale_defaults(kwargs, multiscale_extractor))


_register(PPO, "MultiScaleAttentionPolicy", MultiScaleAttentionPolicy)
_register(MaskablePPO, "MultiScaleAttentionPolicy", MaskableMultiScaleAttentionPolicy)


# ---------------------------------------------------------------- RecurrentPPO with its forget gates open
#: Initial forget-gate bias of :class:`ForgetGateLstmPolicy`. PyTorch starts it near 0: a gate then keeps about half of
#: the cell state a step, and a cue's gradient fades as 0.5^steps. On the Passive T-Maze (one seed each, issue 35's
#: pilot in results/benchmarks/memory.md) RecurrentPPO at bias 2 solved corridors 20 and 50; at ~0, and at 1 on
#: corridor 50, it stayed at a coin flip.
LSTM_FORGET_BIAS = 2.0


def set_lstm_forget_bias(lstm: nn.LSTM, value: float) -> None:
    """Set the forget-gate bias of every layer of ``lstm`` to ``value``, split equally over PyTorch's ``bias_ih`` and
    ``bias_hh`` (gates ordered input, forget, cell, output); the other gates keep their initialisation."""
    size = lstm.hidden_size
    with th.no_grad():
        for name, parameter in lstm.named_parameters():
            if name.startswith("bias"):
                parameter[size : 2 * size] = value / 2


class _OpenForgetGates(RecurrentActorCriticPolicy):
    """What both forget-gate policies add to sb3-contrib's: ``lstm_forget_bias``, applied after the LSTMs are built
    and saved with the model (its weights replace the initialisation on load)."""

    def __init__(self, *args: Any, lstm_forget_bias: float = LSTM_FORGET_BIAS, **kwargs: Any) -> None:
        value = lstm_forget_bias
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"lstm_forget_bias={value!r} is invalid: expected a finite number (e.g. {LSTM_FORGET_BIAS})")
        super().__init__(*args, **kwargs)
        self.lstm_forget_bias = float(value)
        for lstm in (self.lstm_actor, self.lstm_critic):
            if lstm is not None:
                set_lstm_forget_bias(lstm, self.lstm_forget_bias)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), "lstm_forget_bias": self.lstm_forget_bias}


class ForgetGateLstmPolicy(_OpenForgetGates):
    """sb3-contrib's ``MlpLstmPolicy`` whose LSTMs (actor's and critic's) start with forget-gate bias
    ``lstm_forget_bias`` instead of PyTorch's ~0 (Jozefowicz et al. 2015), so that what the LSTM saw many steps ago
    still gets a gradient. Alias ``"ForgetGateMlpLstmPolicy"`` for RecurrentPPO (rl-zoo: ``policy:
    'ForgetGateMlpLstmPolicy'``).

    :param lstm_forget_bias: initial forget-gate bias of every LSTM layer (:data:`LSTM_FORGET_BIAS`).
    :param kwargs: everything ``MlpLstmPolicy`` takes.
    """


class ForgetGateMultiInputLstmPolicy(_OpenForgetGates, RecurrentMultiInputActorCriticPolicy):
    """:class:`ForgetGateLstmPolicy` for Dict observations (``MultiInputLstmPolicy``); alias
    ``"ForgetGateMultiInputLstmPolicy"``.

    :param lstm_forget_bias: initial forget-gate bias of every LSTM layer (:data:`LSTM_FORGET_BIAS`).
    :param kwargs: everything ``MultiInputLstmPolicy`` takes.
    """


_register(RecurrentPPO, "ForgetGateMlpLstmPolicy", ForgetGateLstmPolicy)
_register(RecurrentPPO, "ForgetGateMultiInputLstmPolicy", ForgetGateMultiInputLstmPolicy)


# ---------------------------------------------------------------- RecurrentPPO with a GRU
class LstmShapedGRU(nn.Module):
    """A GRU that sb3-contrib's RecurrentPPO can call where it calls its ``nn.LSTM``: ``forward(input, (h, c))``
    returns ``(output, (h, c))`` and ``input_size``, ``hidden_size``, ``num_layers`` are the LSTM's. RecurrentPPO's
    buffers, ``predict`` and episode resets handle an LSTM's two states, so the GRU's one state travels as ``h`` and
    ``c`` stays zero (memory for an unused state, no other cost).

    :param input_size: features per step.
    :param hidden_size: the GRU's state size.
    :param num_layers: stacked GRU layers.
    :param kwargs: everything ``nn.GRU`` takes (sb3-contrib's ``lstm_kwargs``).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, **kwargs: Any) -> None:
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size, num_layers=num_layers, **kwargs)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers

    def forward(
        self, sequence: th.Tensor, states: tuple[th.Tensor, th.Tensor]
    ) -> tuple[th.Tensor, tuple[th.Tensor, th.Tensor]]:
        output, hidden = self.gru(sequence, states[0].contiguous())
        return output, (hidden, th.zeros_like(hidden))


class _GruInstead(RecurrentActorCriticPolicy):
    """What both GRU policies change in sb3-contrib's: each LSTM it built becomes a :class:`LstmShapedGRU` of the same
    sizes (POPGym, Morad et al. 2023, found the GRU the strongest of its memory models), and the optimizer is rebuilt
    over the new parameters. Everything else, ``lstm_hidden_size`` and ``n_lstm_layers`` included, is RecurrentPPO's."""

    def __init__(self, observation_space: Any, action_space: Any, lr_schedule: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(observation_space, action_space, lr_schedule, *args, **kwargs)
        # typed as nn.LSTM by sb3-contrib; RecurrentPPO uses only what LstmShapedGRU shares with it
        self.lstm_actor = self._gru_like(self.lstm_actor)  # type: ignore[assignment]
        if self.lstm_critic is not None:
            self.lstm_critic = self._gru_like(self.lstm_critic)  # type: ignore[assignment]
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def _gru_like(self, lstm: nn.LSTM) -> LstmShapedGRU:
        return LstmShapedGRU(lstm.input_size, lstm.hidden_size, lstm.num_layers, **self.lstm_kwargs).to(self.device)


class GruPolicy(_GruInstead):
    """sb3-contrib's ``MlpLstmPolicy`` with GRUs in place of its LSTMs (actor's and, with ``enable_critic_lstm``, the
    critic's). Alias ``"MlpGruPolicy"`` for RecurrentPPO: ``RecurrentPPO("MlpGruPolicy", env)``, or in rl-zoo
    ``policy: 'MlpGruPolicy'`` in a ``ppo_lstm`` entry; ``lstm_hidden_size`` sets the GRU's state size.

    :param kwargs: everything ``MlpLstmPolicy`` takes.
    """


class MultiInputGruPolicy(_GruInstead, RecurrentMultiInputActorCriticPolicy):
    """:class:`GruPolicy` for Dict observations (``MultiInputLstmPolicy``); alias ``"MultiInputGruPolicy"``.

    :param kwargs: everything ``MultiInputLstmPolicy`` takes.
    """


_register(RecurrentPPO, "MlpGruPolicy", GruPolicy)
_register(RecurrentPPO, "MultiInputGruPolicy", MultiInputGruPolicy)
