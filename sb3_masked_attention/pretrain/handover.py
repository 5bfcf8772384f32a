"""Hand a pretrained :class:`HeadMaskedTransformerExtractor` trunk to an SB3 model (PPO, A2C, MaskablePPO)
for fine-tuning. The trunk file format is :mod:`sb3_masked_attention.extractors.trunk`."""

from __future__ import annotations

import os

from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_masked_attention.extractors.transformer import HeadMaskedTransformerExtractor
from sb3_masked_attention.extractors.trunk import load_into_extractor
from sb3_masked_attention.policies import features_extractors


def load_pretrained_extractor(model: BaseAlgorithm, path: str | os.PathLike, freeze: bool = False) -> BaseAlgorithm:
    """Put the pretrained trunk at ``path`` into ``model``'s features extractor(s) and return the model.

    With ``freeze=True`` the trunk's weights stop learning (the optimizer skips parameters without
    gradients); the actor and critic heads still train.
    """
    for extractor in features_extractors(model.policy, HeadMaskedTransformerExtractor):
        load_into_extractor(extractor, path, freeze)
    return model
