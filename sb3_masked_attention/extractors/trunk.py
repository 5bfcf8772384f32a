"""Save a :class:`HeadMaskedTransformerExtractor` trunk (weights + configuration) and load it into another.

The file is a :func:`~sb3_masked_attention.runs.save_file` of kind ``pretrained_trunk``:
``{"config": extractor.config, "head_fractions": ..., "state_dict": ...}``. Loading checks every
configuration field that fixes a weight's shape and names the first that differs; the head-mask
strategy may differ (masks have no weights).
"""

from __future__ import annotations

import os

from sb3_masked_attention.extractors.transformer import HeadMaskedTransformerExtractor
from sb3_masked_attention.runs import load_file, save_file


def save_extractor(extractor: HeadMaskedTransformerExtractor, path: str | os.PathLike) -> None:
    """Write ``extractor``'s weights and configuration to ``path`` (atomically)."""
    if not isinstance(extractor, HeadMaskedTransformerExtractor):
        raise ValueError(f"expected a HeadMaskedTransformerExtractor, got {type(extractor).__name__}")
    payload = {
        "config": dict(extractor.config),
        "head_fractions": list(extractor.head_fractions),
        "state_dict": {k: v.detach().cpu() for k, v in extractor.state_dict().items()},
    }
    save_file("pretrained_trunk", payload, path)


def load_into_extractor(extractor: HeadMaskedTransformerExtractor, path: str | os.PathLike, freeze: bool = False) -> None:
    """Copy the weights saved at ``path`` into ``extractor``; ``freeze`` stops their gradients."""
    payload = load_file(path, "pretrained_trunk")
    for key, saved in payload["config"].items():
        if extractor.config.get(key) != saved:
            raise ValueError(
                f"pretrained extractor {str(path)!r} has {key}={saved!r} but the model's extractor has "
                f"{key}={extractor.config.get(key)!r}"
            )
    # the trunk's weights, the model's own masks (a trunk pretrained under one strategy serves a policy with another)
    extractor.load_state_dict({**payload["state_dict"], "head_fractions_saved": extractor.head_fractions_saved.clone()})
    for parameter in extractor.parameters():
        parameter.requires_grad_(not freeze)
