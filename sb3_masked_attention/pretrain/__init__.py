"""Self-supervised pretraining of the head-masked transformer trunk and its hand-over to SB3 models.

The two public names load their module (and torch) on first use, so that ``sb3ma pretrain --help`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "save_extractor": "sb3_masked_attention.extractors.trunk",
    "load_pretrained_extractor": "sb3_masked_attention.pretrain.handover",
}

__all__ = ["load_pretrained_extractor", "save_extractor"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
