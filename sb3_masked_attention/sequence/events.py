"""Input-event logs: the CSV format, its validation, and a synthetic human-like generator.

An event log is a CSV file with the columns ``session,t,event,x,y`` and any number of extra
*enumerated* columns (``button``, ``key``, ...): one row per input event, ``t`` in seconds from the
start of the session, ``x, y`` the pointer position in pixels. Rows of one session are sorted by time.

:func:`load_events` checks all of it and names the offending file row (the header is row 1).
:func:`synthesize_sessions` writes sessions with the structure human play has: bursts of fast key
presses (< 100 ms apart), ordinary clicks and drags whose movement time grows with distance (Fitts'
law, 100-300 ms and beyond), slow pauses between activities, and per-player habits: each session has its
own hot spots on the screen and a routine of 2-4 activities (key bursts, key combos with their own rhythm,
click/drag paths over the hot spots) that the player mostly replays in turn (80%; otherwise any activity
of the routine), with jitter in timing, position and burst length — as players repeat rotations and
build orders. What comes next is therefore partly written in the last seconds of history.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sb3_masked_attention.io import atomic_path
from sb3_masked_attention.validation import check_int

REQUIRED_COLUMNS = ("session", "t", "event", "x", "y")
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass
class Session:
    """One session's events, sorted by time.

    :param name: the session id of the CSV.
    :param t: ``(N,)`` float64 seconds.
    :param event: ``(N,)`` int64 index into the log's ``event_types``.
    :param xy: ``(N, 2)`` float32 pixels.
    :param enums: ``(N, K)`` int64, one column per enumerated field (index into its values).
    :param rows: ``(N,)`` file row of each event (header = 1), for error messages.
    """

    name: str
    t: np.ndarray
    event: np.ndarray
    xy: np.ndarray
    enums: np.ndarray
    rows: np.ndarray

    def __len__(self) -> int:
        return len(self.t)


@dataclass
class EventLog:
    """Sessions plus the vocabularies that turn names into indices.

    :param sessions: the sessions, in file order.
    :param event_types: event names; ``Session.event`` indexes this list.
    :param enum_values: per enumerated column, its values; ``Session.enums[:, k]`` indexes the k-th.
    """

    sessions: list[Session]
    event_types: list[str]
    enum_values: dict[str, list[str]] = field(default_factory=dict)

    @property
    def enum_sizes(self) -> dict[str, int]:
        return {name: len(values) for name, values in self.enum_values.items()}

    @property
    def n_events(self) -> int:
        return sum(len(s) for s in self.sessions)


def _float(value: str, column: str, row: int, path: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{path} row {row}: {column}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueError(f"{path} row {row}: {column}={value!r} is not a finite number")
    return number


def load_events(  # noqa: C901  (one check per documented mistake, each naming the row)
    path: str | os.PathLike,
    event_types: Sequence[str] | None = None,
    enum_values: Mapping[str, Sequence[str]] | None = None,
    min_events: int = 2,
    screen: tuple[float, float] | None = None,
) -> EventLog:
    """Read and validate an event-log CSV.

    :param path: the CSV file.
    :param event_types: the allowed event names (a trained model's vocabulary); ``None`` = the names
        the file uses, sorted.
    :param enum_values: the allowed values of each enumerated column (a model's vocabulary); its columns
        must all be in the file. ``None`` = the file's extra columns and the values they use, sorted.
    :param min_events: the fewest events a session may have (a window needs history and a target).
    :param screen: ``(width, height)``: every ``x`` must lie in ``[0, width]`` and ``y`` in ``[0, height]``
        (a model would otherwise clamp or overflow them and score nonsense). ``None``: any float32 value.
    :return: the :class:`EventLog`.
    :raises ValueError: missing columns, a value that is not a finite number, a coordinate off the screen, a
        negative or decreasing
        time within a session, an empty session id, an event name or enumerated value outside the given
        vocabulary, or a session with fewer than ``min_events`` events; the message names the row.
    """
    path = str(path)
    if not Path(path).is_file():
        raise ValueError(f"events file {path!r} does not exist")
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"events file {path!r} is empty: expected a header {','.join(REQUIRED_COLUMNS)}")
        header = [name.strip() for name in header]
        missing = [name for name in REQUIRED_COLUMNS if name not in header]
        if missing:
            raise ValueError(f"{path} is missing column(s) {', '.join(missing)} (required: {','.join(REQUIRED_COLUMNS)})")
        extra = [name for name in header if name not in REQUIRED_COLUMNS]
        if enum_values is not None:
            absent = [name for name in enum_values if name not in header]
            if absent:
                raise ValueError(f"{path} is missing enumerated column(s) {', '.join(absent)} that the model uses")
            extra = list(enum_values)
        index = {name: header.index(name) for name in header}
        records: dict[str, list[tuple]] = {}
        for row_number, row in enumerate(reader, start=2):
            if not row or all(cell.strip() == "" for cell in row):
                continue
            if len(row) != len(header):
                raise ValueError(f"{path} row {row_number}: {len(row)} fields, the header has {len(header)}")
            session = row[index["session"]].strip()
            if session == "":
                raise ValueError(f"{path} row {row_number}: empty session id")
            t = _float(row[index["t"]], "t", row_number, path)
            if t < 0:
                raise ValueError(f"{path} row {row_number}: t={t} is negative: times are seconds >= 0")
            x, y = (_float(row[index[c]], c, row_number, path) for c in ("x", "y"))
            if screen is not None:
                for column, value, high in zip(("x", "y"), (x, y), screen):
                    if not 0.0 <= value <= high:
                        raise ValueError(
                            f"{path} row {row_number}: {column}={value:g} is off the screen [0, {high:g}] "
                            f"of {screen[0]:g}x{screen[1]:g} (set by `sb3ma events train --screen WIDTH HEIGHT`)"
                        )
            elif max(abs(x), abs(y)) > _FLOAT32_MAX:
                raise ValueError(f"{path} row {row_number}: x={x:g}, y={y:g} do not fit a float32 (|value| <= 3.4e38)")
            records.setdefault(session, []).append(
                (t, row[index["event"]].strip(), x, y, tuple(row[index[c]].strip() for c in extra), row_number)
            )
    if not records:
        raise ValueError(f"events file {path!r} has a header but no events")

    names = sorted({r[1] for rs in records.values() for r in rs}) if event_types is None else list(event_types)
    values = (
        {c: sorted({r[4][k] for rs in records.values() for r in rs}) for k, c in enumerate(extra)}
        if enum_values is None
        else {c: list(v) for c, v in enum_values.items()}
    )
    event_index = {name: i for i, name in enumerate(names)}
    value_index = {c: {v: i for i, v in enumerate(vs)} for c, vs in values.items()}
    sessions = []
    for name, rs in records.items():
        for previous, current in itertools.pairwise(rs):
            if current[0] < previous[0]:
                raise ValueError(
                    f"{path} row {current[5]}: t={current[0]} is earlier than row {previous[5]} (t={previous[0]}) "
                    f"of session {name!r}: sort each session's rows by time"
                )
        if len(rs) < min_events:
            raise ValueError(f"{path} row {rs[0][5]}: session {name!r} has {len(rs)} event(s): need at least {min_events}")
        for r in rs:
            if r[1] not in event_index:
                raise ValueError(f"{path} row {r[5]}: unknown event {r[1]!r}: expected one of {', '.join(names)}")
            for k, c in enumerate(extra):
                if r[4][k] not in value_index[c]:
                    raise ValueError(f"{path} row {r[5]}: unknown {c} {r[4][k]!r}: expected one of {', '.join(values[c])}")
        sessions.append(
            Session(
                name=name,
                t=np.array([r[0] for r in rs], dtype=np.float64),
                event=np.array([event_index[r[1]] for r in rs], dtype=np.int64),
                xy=np.array([(r[2], r[3]) for r in rs], dtype=np.float32),
                enums=np.array([[value_index[c][r[4][k]] for k, c in enumerate(extra)] for r in rs], dtype=np.int64).reshape(
                    len(rs), len(extra)
                ),
                rows=np.array([r[5] for r in rs], dtype=np.int64),
            )
        )
    return EventLog(sessions, names, values)


def save_events(log: EventLog, path: str | os.PathLike) -> None:
    """Write ``log`` as CSV (atomically): ``session,t,event,x,y`` then its enumerated columns."""
    columns = list(REQUIRED_COLUMNS) + list(log.enum_values)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for s in log.sessions:
            for i in range(len(s)):
                enums = [log.enum_values[c][s.enums[i, k]] for k, c in enumerate(log.enum_values)]
                writer.writerow(
                    [s.name, f"{s.t[i]:.4f}", log.event_types[s.event[i]], f"{s.xy[i, 0]:.1f}", f"{s.xy[i, 1]:.1f}", *enums]
                )


# --- synthetic sessions -----------------------------------------------------------------------------

SYNTH_EVENTS = ["click", "drag", "key"]
SYNTH_KEYS = ["none", "1", "2", "3", "4", "q", "w", "e", "r", "space"]
SYNTH_BUTTONS = ["none", "left", "right"]
SCREEN = (1920.0, 1080.0)


def _fitts(distance: float, width: float = 50.0) -> float:
    """Pointer movement time in seconds (Fitts' law, Shannon form; a = 0.08 s, b = 0.12 s/bit)."""
    return 0.08 + 0.12 * math.log2(1.0 + distance / width)


def _routine(hotspots: np.ndarray, rng: np.random.Generator) -> list[tuple]:
    """A player's routine: 2-4 activities replayed in turn (a rotation, a build order)."""
    activities: list[tuple] = []
    for kind in rng.choice(["burst", "combo", "pointer"], size=int(rng.integers(2, 5))):
        if kind == "burst":  # mashing one key at a steady fast rhythm
            activities.append(
                ("burst", int(rng.integers(1, len(SYNTH_KEYS))), int(rng.integers(3, 9)), rng.uniform(0.045, 0.09))
            )
        elif kind == "combo":  # a practised key sequence with its own timing
            size = int(rng.integers(3, 6))
            activities.append(("combo", rng.integers(1, len(SYNTH_KEYS), size=size), rng.uniform(0.06, 0.28, size=size)))
        else:  # clicks and drags on this player's hot spots
            size = int(rng.integers(1, 5))
            activities.append(
                (
                    "pointer",
                    rng.integers(len(hotspots), size=size),
                    rng.random(size) < 0.25,
                    np.where(rng.random(size) < 0.15, 2, 1),
                )
            )
    return activities


def _synth_session(name: str, duration: float, rng: np.random.Generator) -> Session:
    hotspots = rng.uniform((100, 100), (SCREEN[0] - 100, SCREEN[1] - 100), size=(5, 2))
    routine = _routine(hotspots, rng)
    t, pointer, turn = rng.uniform(0.2, 1.0), hotspots[0].copy(), int(rng.integers(len(routine)))
    events: list[tuple[float, int, float, float, int, int]] = []  # t, event, x, y, button, key

    def emit(gap: float, event: int, xy: np.ndarray, button: int, key: int) -> None:
        nonlocal t
        t += gap
        events.append((t, event, float(xy[0]), float(xy[1]), button, key))

    first = True
    while t < duration:
        if not first:  # a pause between activities, usually long enough to end a sequence
            t += float(rng.lognormal(math.log(1.25), 0.15))
        first = False
        # Mostly the next activity of the routine; sometimes any activity of it.
        turn = (turn + 1) % len(routine) if rng.random() < 0.8 else int(rng.integers(len(routine)))
        activity = routine[turn]
        if activity[0] == "burst":
            _, key, count, rhythm = activity
            count = max(2, count + int(rng.integers(-1, 2)) * (rng.random() < 0.3))
            for i in range(count):
                emit(rng.uniform(0.3, 0.6) if i == 0 else rhythm * rng.uniform(0.9, 1.1), 2, pointer, 0, key)
        elif activity[0] == "combo":
            _, keys, gaps = activity
            for i, key in enumerate(keys):
                emit(rng.uniform(0.3, 0.6) if i == 0 else gaps[i] * rng.uniform(0.9, 1.1), 2, pointer, 0, int(key))
        else:  # movement time grows with the distance to the hot spot
            _, spots, drags, buttons = activity
            for spot, drag, button in zip(spots, drags, buttons):
                target = hotspots[spot] + rng.normal(0, 8, size=2)
                gap = _fitts(float(np.linalg.norm(target - pointer))) * rng.uniform(0.9, 1.1) + (0.05 if drag else 0.0)
                emit(gap, 1 if drag else 0, target, int(button), 0)
                pointer = target
    keep = [e for e in events if e[0] <= duration] or events[:2]
    array = np.array(keep, dtype=np.float64)
    return Session(
        name=name,
        t=np.round(array[:, 0], 4),
        event=array[:, 1].astype(np.int64),
        xy=np.round(array[:, 2:4], 1).astype(np.float32),
        enums=array[:, 4:6].astype(np.int64),
        rows=np.zeros(len(array), dtype=np.int64),
    )


def synthesize_sessions(n_sessions: int, seed: int = 0, duration: float = 60.0, prefix: str = "s") -> EventLog:
    """Synthetic human-like sessions (see the module docstring) on a 1920x1080 screen.

    Events ``click``, ``drag`` (``x, y`` = where the drag ends) and ``key``; enumerated columns
    ``button`` (``none``/``left``/``right``) and ``key`` (``none`` or the key).

    :param n_sessions: number of sessions (>= 1).
    :param seed: random seed; the same seed gives the same sessions.
    :param duration: seconds per session, in (1, 86400].
    :param prefix: session ids are ``{prefix}{i:04d}`` (use different prefixes for files you combine).
    """
    check_int("n_sessions", n_sessions)
    if not 1.0 < duration <= 86_400.0:  # NaN and infinity fail too: an endless session would never be written
        raise ValueError(f"duration={duration} is invalid: expected seconds in (1, 86400]")
    rng = np.random.default_rng(seed)
    sessions = [_synth_session(f"{prefix}{i:04d}", duration, rng) for i in range(n_sessions)]
    return EventLog(sessions, list(SYNTH_EVENTS), {"button": list(SYNTH_BUTTONS), "key": list(SYNTH_KEYS)})
