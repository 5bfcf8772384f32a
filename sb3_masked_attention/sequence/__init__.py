"""Action-sequence generation from input-event logs (event type, timing, coordinates).

The public names load their module (and torch) on first use, so that ``sb3ma events --help`` stays light.
"""

from __future__ import annotations

from sb3_masked_attention.lazy import lazy_attributes

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


__getattr__, __dir__ = lazy_attributes(globals(), {name: f"{__name__}.{module}" for name, module in _EXPORTS.items()})
