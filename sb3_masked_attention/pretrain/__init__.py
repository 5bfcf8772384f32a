"""Self-supervised pretraining of the head-masked transformer trunk and its hand-over to SB3 models.

The two public names load their module (and torch) on first use, so that ``sb3ma pretrain --help`` stays light.
"""

from __future__ import annotations

from sb3_masked_attention.lazy import lazy_attributes

_EXPORTS = {
    "save_extractor": "sb3_masked_attention.extractors.trunk",
    "load_pretrained_extractor": "sb3_masked_attention.pretrain.handover",
}

__all__ = ["load_pretrained_extractor", "save_extractor"]


__getattr__, __dir__ = lazy_attributes(globals(), _EXPORTS)
