"""Windows of history and the action sequence that follows, and their tensor encoding.

A *decision point* is the moment just after an event (``now``). Its history is every event of the
last ``history_seconds`` up to and including that one (the newest ``max_history``, left-padded,
newest last, as :class:`~sb3_masked_attention.wrappers.HistoryWrapper` lays out observations); its
target is the run of events that follows: up to ``max_actions`` of them, ended early by a pause
(a gap longer than ``pause``). Decision points are placed at the start of every such run, so one
session yields one window per sequence of actions.

The *gap* of an event is the time since the event before it: the first target gap is the wait
after ``now``. Gaps put an action on a timing scale: fast (< 100 ms), medium (100-300 ms) or
slow (> 300 ms).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sb3_masked_attention.sequence.events import EventLog
from sb3_masked_attention.validation import check_int

SCALES = ("fast", "medium", "slow")
SCALE_EDGES = (0.1, 0.3)  # seconds: fast < 0.1 <= medium < 0.3 <= slow


def timing_scale(gap: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Scale index of each gap in seconds: 0 fast (< 100 ms), 1 medium (100-300 ms), 2 slow (>= 300 ms)."""
    gap = torch.as_tensor(gap)
    return (gap >= SCALE_EDGES[0]).long() + (gap >= SCALE_EDGES[1]).long()


@dataclass(frozen=True)
class WindowConfig:
    """How event logs are cut into (history, target) windows.

    :param history_seconds: seconds of history before each decision point.
    :param max_history: the most history events kept (the newest).
    :param max_actions: the longest target sequence.
    :param pause: a gap longer than this (seconds) ends a target sequence.
    :param min_gap: shortest gap the models represent (seconds); shorter ones are clipped.
    :param max_gap: longest gap the models represent (seconds); longer ones are clipped.
    :param screen: ``(width, height)`` in pixels; coordinates are divided by it.
    """

    history_seconds: float = 6.0
    max_history: int = 64
    max_actions: int = 8
    pause: float = 1.0
    min_gap: float = 0.005
    max_gap: float = 10.0
    screen: tuple[float, float] = (1920.0, 1080.0)

    def __post_init__(self) -> None:
        check_int("max_history", self.max_history)
        check_int("max_actions", self.max_actions)
        for name in ("history_seconds", "pause", "min_gap", "max_gap"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r} is invalid: expected seconds > 0")
        if not (self.min_gap < SCALE_EDGES[0] and self.max_gap > SCALE_EDGES[1]):
            raise ValueError(f"min_gap={self.min_gap} and max_gap={self.max_gap} must bracket the scale edges {SCALE_EDGES}")
        if len(self.screen) != 2 or min(self.screen) <= 0:
            raise ValueError(f"screen={self.screen!r} is invalid: expected (width, height) in pixels > 0")
        object.__setattr__(self, "screen", tuple(float(s) for s in self.screen))

    def to_dict(self) -> dict:
        return {**asdict(self), "screen": list(self.screen)}


@dataclass
class Windows:
    """All windows of an event log, as arrays (``N`` windows, ``T = max_history``, ``L = max_actions``,
    ``K`` enumerated fields). History arrays are left-padded; target arrays right-padded.

    ``h_event (N, T)``, ``h_enums (N, T, K)``, ``h_xy (N, T, 2)`` pixels, ``h_gap (N, T)`` seconds,
    ``h_time (N, T)`` seconds relative to now (<= 0), ``h_valid (N, T)``;
    ``y_event (N, L)``, ``y_enums (N, L, K)``, ``y_xy (N, L, 2)``, ``y_gap (N, L)``, ``y_valid (N, L)``,
    ``length (N,)`` (1..L); ``session (N,)`` index of the session in the log.
    """

    arrays: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.arrays["length"])

    def batch(self, index: np.ndarray | slice | None = None) -> dict[str, torch.Tensor]:
        """The windows at ``index`` (all by default) as tensors."""
        index = slice(None) if index is None else index
        return {key: torch.as_tensor(value[index]) for key, value in self.arrays.items()}

    def select(self, mask: np.ndarray) -> Windows:
        return Windows({key: value[mask] for key, value in self.arrays.items()})


def _gaps(t: np.ndarray, config: WindowConfig) -> np.ndarray:
    """Each event's gap to the one before it (the first event's: ``max_gap``)."""
    return np.diff(t, prepend=t[0] - config.max_gap)


def _spans(log: EventLog, config: WindowConfig) -> list[tuple[int, int, int]]:
    """``(session, first target event, target length)`` of every window: runs split at pauses, then chunked."""
    spans = []
    for s_index, s in enumerate(log.sessions):
        gaps, start = _gaps(s.t, config), 1
        while start < len(s):
            length = 1
            while start + length < len(s) and length < config.max_actions and gaps[start + length] <= config.pause:
                length += 1
            spans.append((s_index, start, length))
            start += length
    return spans


def _fill(log: EventLog, spans: list[tuple[int, int, int]], config: WindowConfig) -> Windows:
    """The arrays of the windows whose decision point is just before event ``start`` of each span."""
    n, T, L, K = len(spans), config.max_history, config.max_actions, len(log.enum_values)
    a: dict[str, np.ndarray] = {
        "h_event": np.zeros((n, T), np.int64),
        "h_enums": np.zeros((n, T, K), np.int64),
        "h_xy": np.zeros((n, T, 2), np.float32),
        "h_gap": np.zeros((n, T), np.float32),
        "h_time": np.zeros((n, T), np.float32),
        "h_valid": np.zeros((n, T), bool),
        "y_event": np.zeros((n, L), np.int64),
        "y_enums": np.zeros((n, L, K), np.int64),
        "y_xy": np.zeros((n, L, 2), np.float32),
        "y_gap": np.zeros((n, L), np.float32),
        "y_valid": np.zeros((n, L), bool),
        "length": np.array([span[2] for span in spans], np.int64).reshape(n),
        "session": np.array([span[0] for span in spans], np.int64).reshape(n),
    }
    gaps_by_session = [_gaps(s.t, config) for s in log.sessions]
    for i, (s_index, start, length) in enumerate(spans):
        s, gaps = log.sessions[s_index], gaps_by_session[s_index]
        now = s.t[start - 1]
        first = max(int(np.searchsorted(s.t, now - config.history_seconds - 1e-9, side="left")), start - T)
        h, y = np.arange(first, start), np.arange(start, start + length)
        hs, ys = slice(T - len(h), T), slice(0, length)
        a["h_event"][i, hs], a["h_enums"][i, hs], a["h_xy"][i, hs] = s.event[h], s.enums[h], s.xy[h]
        a["h_gap"][i, hs], a["h_time"][i, hs], a["h_valid"][i, hs] = gaps[h], s.t[h] - now, True
        a["y_event"][i, ys], a["y_enums"][i, ys], a["y_xy"][i, ys] = s.event[y], s.enums[y], s.xy[y]
        a["y_gap"][i, ys], a["y_valid"][i, ys] = gaps[y], True
    np.clip(a["h_gap"], config.min_gap, config.max_gap, out=a["h_gap"])
    np.clip(a["y_gap"], config.min_gap, config.max_gap, out=a["y_gap"])
    a["y_gap"][~a["y_valid"]] = 0.0
    return Windows(a)


def make_windows(log: EventLog, config: WindowConfig) -> Windows:
    """Cut every session of ``log`` into windows (see the module docstring).

    :return: :class:`Windows`; a session contributes one window per target sequence after its first event.
    """
    return _fill(log, _spans(log, config), config)


def history_windows(log: EventLog, config: WindowConfig) -> Windows:
    """One window per session whose decision point is the session's last event: nothing to predict yet
    (``length`` 0, no valid target), for generation."""
    return _fill(log, [(i, len(s), 0) for i, s in enumerate(log.sessions)], config)


def split_sessions(n_sessions: int, val_fraction: float, seed: int) -> np.ndarray:
    """Boolean ``(n_sessions,)``, True for the validation sessions (at least one, at least one left to train)."""
    if n_sessions < 2:
        raise ValueError(f"{n_sessions} session(s): a train/validation split by session needs at least 2")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction} is invalid: expected a value in (0, 1)")
    n_val = min(max(1, round(val_fraction * n_sessions)), n_sessions - 1)
    chosen = np.random.default_rng(seed).permutation(n_sessions)[:n_val]
    is_val = np.zeros(n_sessions, bool)
    is_val[chosen] = True
    return is_val


class EventEncoding:
    """Turns event fields into the feature vectors the models read.

    Token features, ``(…, token_dim)``: event one-hot, one one-hot per enumerated field, ``x, y`` over
    the screen size, the log-gap (``log(gap / 0.3 s) / 2``), the gap's timing-scale one-hot and the time
    relative to now over ``history_seconds``. Padding tokens are all zeros.

    Window features, ``(B, behaviour_dim)``, describe the player's recent behaviour: events per second,
    the share of each event type and of each timing scale, the mean log-gap and the mean pointer travel.

    :param event_types: event names (their number is what matters here).
    :param enum_sizes: values per enumerated field, in column order.
    :param config: the window configuration (screen, gaps, history length).
    """

    def __init__(self, event_types: Sequence[str], enum_sizes: dict[str, int], config: WindowConfig) -> None:
        self.n_events = len(event_types)
        self.enum_sizes = dict(enum_sizes)
        self.config = config
        self.token_dim = self.n_events + sum(self.enum_sizes.values()) + 2 + 1 + len(SCALES) + 1
        self.behaviour_dim = 1 + self.n_events + len(SCALES) + 2
        self.temporal_dim = 1 + len(SCALES) + 2

    def log_gap(self, gap: torch.Tensor) -> torch.Tensor:
        return torch.log(gap.clamp(self.config.min_gap, self.config.max_gap) / SCALE_EDGES[1]) / 2.0

    def tokens(
        self,
        event: torch.Tensor,
        enums: torch.Tensor,
        xy: torch.Tensor,
        gap: torch.Tensor,
        time: torch.Tensor,
        valid: torch.Tensor,
    ) -> torch.Tensor:
        """``event (…)``, ``enums (…, K)``, ``xy (…, 2)`` px, ``gap (…)`` s, ``time (…)`` s, ``valid (…)``
        -> ``(…, token_dim)``."""
        parts = [F.one_hot(event, self.n_events).float()]
        parts += [F.one_hot(enums[..., k], size).float() for k, size in enumerate(self.enum_sizes.values())]
        parts += [
            xy / xy.new_tensor(self.config.screen),
            self.log_gap(gap)[..., None],
            F.one_hot(timing_scale(gap), len(SCALES)).float(),
            (time / self.config.history_seconds)[..., None],
        ]
        return torch.cat(parts, dim=-1) * valid[..., None].float()

    def behaviour(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Window features ``(B, behaviour_dim)`` from a batch's history."""
        valid = batch["h_valid"].float()
        count = valid.sum(dim=1).clamp(min=1.0)
        share = lambda onehot: (onehot * valid[..., None]).sum(dim=1) / count[:, None]  # noqa: E731
        step = (batch["h_xy"][:, 1:] - batch["h_xy"][:, :-1]).norm(dim=-1) / float(np.hypot(*self.config.screen))
        both = valid[:, 1:] * valid[:, :-1]
        return torch.cat(
            [
                (valid.sum(dim=1) / self.config.history_seconds)[:, None] / 10.0,
                share(F.one_hot(batch["h_event"], self.n_events).float()),
                share(F.one_hot(timing_scale(batch["h_gap"]), len(SCALES)).float()),
                ((self.log_gap(batch["h_gap"]) * valid).sum(dim=1) / count)[:, None],
                ((step * both).sum(dim=1) / both.sum(dim=1).clamp(min=1.0))[:, None],
            ],
            dim=1,
        )

    def temporal(self, prev_gap: torch.Tensor, prev_time: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """Features of the moment an action is generated, ``(…, temporal_dim)`` = ``(…, 6)``: the previous action's log-gap and
        scale, the time elapsed since now, and the step index over ``max_actions``."""
        return torch.cat(
            [
                self.log_gap(prev_gap)[..., None],
                F.one_hot(timing_scale(prev_gap), len(SCALES)).float(),
                (prev_time / self.config.history_seconds)[..., None],
                (step.float() / self.config.max_actions)[..., None],
            ],
            dim=-1,
        )
