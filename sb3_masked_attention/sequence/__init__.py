"""Action-sequence generation from input-event logs (event type, timing, coordinates)."""

from sb3_masked_attention.sequence.baselines import GRUDecoder, repeat_last
from sb3_masked_attention.sequence.data import WindowConfig, Windows, make_windows
from sb3_masked_attention.sequence.events import EventLog, load_events, save_events, synthesize_sessions
from sb3_masked_attention.sequence.model import (
    AdvancedAttentionDecoder,
    ContextAwareActionGenerator,
    MultiScaleTimingProcessor,
)

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
