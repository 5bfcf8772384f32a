"""Crash-safe file writing: every file the package writes appears whole or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    import torch


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path`` (atomic on POSIX).

    :param path: the final file.
    :param suffix: suffix of the temporary file (default: that of ``path``), for writers that
        choose the format from it (matplotlib) or append one (SB3 appends ``.zip``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix if suffix is None else suffix)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; give the permissions a plain open() would
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_rows(path: str | os.PathLike) -> pd.DataFrame:
    """The CSV at ``path`` as a DataFrame (empty if the file does not exist yet)."""
    import pandas as pd

    return pd.read_csv(path) if Path(path).exists() else pd.DataFrame()


def append_row(path: str | os.PathLike, row: dict) -> None:
    """Append one row to a CSV by rewriting it atomically: a kill leaves the old file or the new one, never half."""
    import pandas as pd

    table = pd.concat([read_rows(path), pd.DataFrame([row])], ignore_index=True)
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def save_npz(path: str | os.PathLike, arrays: dict, meta: dict | None = None) -> None:
    """Write ``arrays`` (and ``meta`` as a JSON string under the key ``meta``) to a compressed ``.npz`` atomically."""
    import json

    import numpy as np

    extra = {} if meta is None else {"meta": np.array(json.dumps(meta))}
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **extra, **arrays)


def load_npz(path: str | os.PathLike, keys: tuple[str, ...], what: str, made_by: str) -> tuple[dict, dict | None]:
    """Read an ``.npz`` written by :func:`save_npz`: the ``keys`` arrays and the ``meta`` dict (None if absent).

    :param what: what the file is, for errors ("dataset", "capture file").
    :param made_by: the command that writes such files, for errors.
    :raises ValueError: the file does not exist or lacks one of ``keys``.
    """
    import json

    import numpy as np

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} does not exist: write one with `{made_by}`")
    with np.load(path, allow_pickle=False) as data:
        missing = [key for key in keys if key not in data]
        if missing:
            raise ValueError(f"{what} {str(path)!r} lacks {missing}: expected a file written by `{made_by}`")
        arrays = {key: data[key] for key in data.files if key != "meta"}
        meta = json.loads(str(data["meta"])) if "meta" in data.files else None
    return arrays, meta


def record_settings(out: str | os.PathLike, settings: dict, grow: str | None = None) -> None:
    """Write ``out/train_config.json``, refusing to resume a run directory trained with other settings.

    :param out: the run directory.
    :param settings: this run's settings (JSON-serialisable).
    :param grow: a setting that may increase on resume (train on for more updates or epochs).
    :raises ValueError: naming the first setting that differs from the recorded one.
    """
    import json

    config_file = Path(out) / "train_config.json"
    if config_file.exists():
        previous = json.loads(config_file.read_text())
        settings = json.loads(json.dumps(settings))  # tuples -> lists, as they were recorded
        for key in sorted(set(previous) | set(settings)):
            old, new = previous.get(key), settings.get(key)
            if old != new and not (key == grow and isinstance(old, int) and new > old):
                raise ValueError(
                    f"{out} was trained with {key}={old!r}, not {new!r}: use a new output directory or the same "
                    "settings to resume"
                )
    write_text_atomic(config_file, json.dumps(settings, indent=2))


def save_checkpoint(payload: dict, path: str | os.PathLike) -> None:
    """``torch.save`` a model payload (a dict with a ``format`` number) atomically."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: str | os.PathLike, what: str, made_by: str, format: int) -> dict:
    """Read a payload written by :func:`save_checkpoint` (``path`` may be a run directory holding ``model.pt``).

    :param what: what the file is, for errors ("AD model").
    :param made_by: the command that writes such files, for errors.
    :param format: the payload format number the caller reads.
    :raises ValueError: no such file, or not a payload of this format.
    """
    import torch

    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} does not exist: train one with `{made_by}`")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != format:
        raise ValueError(f"{str(path)!r} is not an {what} (format {format})")
    return payload


def save_training_state(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    **extra: object,
) -> None:
    """Atomically write what resuming needs: model, optimizer and schedule states plus ``extra`` (progress, RNG)."""
    save_checkpoint(
        {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), **extra}, path
    )


def load_training_state(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
) -> dict | None:
    """Restore a :func:`save_training_state` file into ``model``, ``optimizer`` and ``schedule``; return its
    extra entries, or None when there is no such file (a fresh run)."""
    import torch

    if not Path(path).exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict(state.pop("model"))
    optimizer.load_state_dict(state.pop("optimizer"))
    schedule.load_state_dict(state.pop("schedule"))
    return state
