"""Save a trained :class:`HeadMaskedTransformerExtractor` trunk with its configuration, and load it into
the features extractor of an SB3 model (PPO, A2C, MaskablePPO) for fine-tuning.

The file is a ``torch.save`` of ``{"format": 1, "config": extractor.config, "head_fractions": ...,
"state_dict": ...}``. Loading checks every configuration field that fixes a weight's shape and names
the first that differs; the head-mask strategy may differ (masks have no weights).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy

from sb3_masked_attention.extractors.transformer import HeadMaskedTransformerExtractor
from sb3_masked_attention.io import atomic_path

FORMAT = 1


def save_extractor(extractor: HeadMaskedTransformerExtractor, path: str | os.PathLike) -> None:
    """Write ``extractor``'s weights and configuration to ``path`` (atomically)."""
    if not isinstance(extractor, HeadMaskedTransformerExtractor):
        raise ValueError(f"expected a HeadMaskedTransformerExtractor, got {type(extractor).__name__}")
    payload = {
        "format": FORMAT,
        "config": dict(extractor.config),
        "head_fractions": list(extractor.head_fractions),
        "state_dict": {k: v.detach().cpu() for k, v in extractor.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def policy_extractors(policy: BasePolicy) -> list[HeadMaskedTransformerExtractor]:
    """The policy's features extractor(s): one if shared, else the actor's and the critic's."""
    found = [policy.features_extractor]
    if not getattr(policy, "share_features_extractor", True):
        found = [policy.pi_features_extractor, policy.vf_features_extractor]
    for extractor in found:
        if not isinstance(extractor, HeadMaskedTransformerExtractor):
            raise ValueError(
                f"the model's features extractor is a {type(extractor).__name__}: expected a HeadMaskedTransformerExtractor"
            )
    return found


def load_into_extractor(extractor: HeadMaskedTransformerExtractor, path: str | os.PathLike, freeze: bool = False) -> None:
    """Copy the weights saved at ``path`` into ``extractor``; ``freeze`` stops their gradients."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"pretrained extractor file {str(path)!r} does not exist")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not a saved extractor (format {FORMAT})")
    for key, saved in payload["config"].items():
        if extractor.config.get(key) != saved:
            raise ValueError(
                f"pretrained extractor {str(path)!r} has {key}={saved!r} but the model's extractor has "
                f"{key}={extractor.config.get(key)!r}"
            )
    extractor.load_state_dict(payload["state_dict"])
    for parameter in extractor.parameters():
        parameter.requires_grad_(not freeze)


def load_pretrained_extractor(model: BaseAlgorithm, path: str | os.PathLike, freeze: bool = False) -> BaseAlgorithm:
    """Put the pretrained trunk at ``path`` into ``model``'s features extractor(s) and return the model.

    With ``freeze=True`` the trunk's weights stop learning (the optimizer skips parameters without
    gradients); the actor and critic heads still train.
    """
    for extractor in policy_extractors(model.policy):
        load_into_extractor(extractor, path, freeze)
    return model
