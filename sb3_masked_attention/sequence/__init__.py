"""Action-sequence generation from input-event logs (event type, timing, coordinates).

The public names load their module (and torch) on first use, so that ``sb3ma events --help`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GRUDecoder": "baselines",
    "repeat_last": "baselines",
    "WindowConfig": "data",
    "Windows": "data",
    "make_windows": "data",
    "EventLog": "events",
    "load_events": "events",
    "save_events": "events",
    "synthesize_sessions": "events",
    "AdvancedAttentionDecoder": "model",
    "ContextAwareActionGenerator": "model",
    "MultiScaleTimingProcessor": "model",
}

__all__ = [
    "AdvancedAttentionDecoder",
    "ContextAwareActionGenerator",
    "EventLog",
    "GRUDecoder",
    "MultiScaleTimingProcessor",
    "WindowConfig",
    "Windows",
    "load_events",
    "make_windows",
    "repeat_last",
    "save_events",
    "synthesize_sessions",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
