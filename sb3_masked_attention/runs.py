"""The one run-folder helper every trainer uses (AD, event sequences, pretraining, multi-scale PPO, studies).

A run folder holds ``train_config.json`` (the settings; a resumed run must have the same ones, and a changed
setting is refused by name), ``checkpoint.pt`` (what resuming needs, written atomically), ``tensorboard/``
and the models the trainer writes (``model.pt``, ``best_model.zip``, ...). Rerunning the same command
resumes; a larger budget (``updates``, ``epochs``, ``total_timesteps``) trains on.

Model files and checkpoints are ``torch.save`` dicts with a header: ``kind`` (what the file is) and
``format`` (its layout). They hold tensors, numbers, strings, lists and dicts only, and load with
``weights_only=True``: a file from elsewhere cannot run code, and a file of the wrong kind (a pretraining
trunk given to ``sb3ma ad eval``) is refused naming what it is.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sb3_masked_attention.io import atomic_path, hold_folder_lock, make_dir, release_folder_lock, write_text_atomic

if TYPE_CHECKING:
    import torch
    from torch.utils.tensorboard import SummaryWriter

SETTINGS_FILE = "train_config.json"
#: Settings files of older run folders, read when ``train_config.json`` is absent.
LEGACY_SETTINGS_FILES = ("run_config.json",)
FORMAT = 2


@dataclass(frozen=True)
class Kind:
    """A kind of file: its ``kind`` header, what users call it, and the command that writes it."""

    name: str
    what: str
    made_by: str


#: Every kind of file the package writes with :func:`save_file`.
KINDS = {
    kind.name: kind
    for kind in (
        Kind("ad_model", "AD model", "sb3ma ad train"),
        Kind("sequence_model", "event-sequence model", "sb3ma events train"),
        Kind("pretrained_trunk", "pretrained trunk", "sb3ma pretrain"),
        Kind("checkpoint", "training checkpoint", "a trainer's run folder"),
    )
}


def refuse_changes(
    previous: dict[str, Any],
    current: dict[str, Any],
    where: str,
    grow: Iterable[str] = (),
    defaults: dict[str, Any] | None = None,
) -> None:
    """Raise ValueError naming the first setting of ``current`` that differs from ``previous``.

    :param where: the run folder or study, for the message.
    :param grow: settings that may increase (train on for more updates, epochs or steps).
    :param defaults: values of settings that an older record lacks (added since, at these defaults).
    """
    current = json.loads(json.dumps(current))  # tuples -> lists, as they were recorded
    defaults = json.loads(json.dumps(defaults or {}))
    grow = set(grow)
    for key in sorted(set(previous) | set(current)):
        old, new = previous.get(key, defaults.get(key)), current.get(key)
        if old != new and not (key in grow and isinstance(old, int) and isinstance(new, int) and new > old):
            raise ValueError(
                f"{where} was started with {key}={old!r}, not {new!r}: use a new output directory or the same "
                "settings to resume"
            )


def input_identity(path: str | os.PathLike | None, what: str = "input file") -> dict[str, Any] | None:
    """What identifies an input file to a resumed run: its size and SHA-256, never its path as typed (the same file
    reached from another folder is the same input; another file at the same relative path is not). None: no file.

    :raises ValueError: the file does not exist.
    """
    import hashlib

    if path is None or str(path) == "":
        return None
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} does not exist")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def check_update_memory(
    batch_size: int, tokens: int, d_model: int, n_layers: int, n_heads: int, ff_dim: int, what: str = "batch_size"
) -> None:
    """Refuse a transformer update that cannot fit in this machine's memory, before it is tried (the OOM killer
    would end the run without a word). A rough count of float32 activations kept for the backward pass: per token
    and layer the block's inputs, projections and feed-forward (about ``10 d_model + 2 ff_dim``) and each head's
    attention row (``3 tokens``), doubled for the gradients.

    :raises ValueError: naming ``what`` and the estimate, when it exceeds half the machine's memory.
    """
    from sb3_masked_attention.io import memory_bytes

    per_token = 10 * d_model + 2 * ff_dim + 3 * n_heads * tokens
    estimate = 2 * 4 * batch_size * tokens * n_layers * per_token
    if estimate > memory_bytes() / 2:
        raise ValueError(
            f"{what}={batch_size} with {tokens} tokens per window needs about {estimate / 2**30:.0f} GiB for one update, "
            f"more than half this machine's {memory_bytes() / 2**30:.0f} GiB: use a smaller batch or shorter windows"
        )


def _legacy_kind(payload: dict[str, Any]) -> str | None:
    """The kind of a format-1 file (written before files had a ``kind`` header), from its keys."""
    if "arch" in payload and "enum_values" in payload:
        return "sequence_model"
    if "head_fractions" in payload:
        return "pretrained_trunk"
    if "meta" in payload and "config" in payload:
        return "ad_model"
    return None


def save_file(kind: str, payload: dict[str, Any], path: str | os.PathLike) -> None:
    """``torch.save`` ``payload`` with a ``kind``/``format`` header, atomically."""
    import torch

    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is unknown: expected one of {sorted(KINDS)}")
    with atomic_path(path) as tmp:
        torch.save({"kind": kind, "format": FORMAT, **payload}, tmp)


def load_file(path: str | os.PathLike, kind: str, default_name: str = "model.pt") -> dict[str, Any]:
    """Read a file written by :func:`save_file` with ``weights_only=True``; refuse another kind by name.

    :param path: the file, or a run folder holding ``default_name``.
    :raises ValueError: no such file, not a file of ours, or a file of another kind.
    """
    import pickle

    import torch

    expected = KINDS[kind]
    path = Path(path)
    if path.is_dir():
        path = path / default_name
    if not path.is_file():
        raise ValueError(f"{expected.what} {str(path)!r} does not exist: make one with `{expected.made_by}`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message suggests loading unsafely: never pass that advice on.
        raise ValueError(
            f"{str(path)!r} cannot be read as a file of this package ({expected.what} expected): it holds Python objects "
            f"other than tensors, numbers and text, or is damaged; nothing in it ran. Give the output of `{expected.made_by}`"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        state = "empty" if path.stat().st_size == 0 else "cut short or damaged"
        raise ValueError(
            f"{str(path)!r} is not a readable {expected.what}: the file is {state} ({type(error).__name__})"
        ) from None
    found = (
        payload.get("kind", _legacy_kind(payload) if payload.get("format") == 1 else None)
        if isinstance(payload, dict)
        else None
    )
    if found != kind:
        what = (
            f"a {KINDS[found].what} (written by `{KINDS[found].made_by}`)" if found in KINDS else "not a file of this package"
        )
        raise ValueError(f"{str(path)!r} is {what}, not an {expected.what}: give the output of `{expected.made_by}`")
    return payload


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at step ``total`` (multiplies the base rate).

    ``warmup=0, total=0`` gives a constant rate.
    """
    import torch

    if warmup == 0 and total == 0:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1.0)
    warmup = max(1, warmup)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(i, total) / total))
    )


class RunDir:
    """A trainer's run folder: recorded settings, resumable checkpoint, TensorBoard folder, models.

    :param path: the folder (created).
    :param settings: what defines the run (JSON-serialisable); recorded, and checked on resume.
    :param grow: settings that may increase on resume.
    :param defaults: values of settings that older records lack (see :func:`refuse_changes`).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        settings: dict[str, Any],
        grow: Iterable[str] = (),
        defaults: dict[str, Any] | None = None,
    ) -> None:
        self.path = make_dir(path, "run folder")
        hold_folder_lock(self.path, "run folder")  # one writer per run folder
        for name in (SETTINGS_FILE, *LEGACY_SETTINGS_FILES):
            if (self.path / name).exists():
                refuse_changes(json.loads((self.path / name).read_text()), settings, str(self.path), grow, defaults)
                break
        self.settings = settings
        self._recorded = False

    def record(self) -> None:
        """Write the settings to ``train_config.json`` (once). Trainers call it when the model has been built from
        them, and :meth:`writer` and :meth:`save_state` before anything else is written: a setting the model
        refuses is never recorded, so the corrected rerun is not refused as a changed one."""
        if not self._recorded:
            write_text_atomic(self.path / SETTINGS_FILE, json.dumps(self.settings, indent=2) + "\n")
            self._recorded = True

    def close(self) -> None:
        """Release the folder's lock (the trainer is done with it)."""
        release_folder_lock(self.path)

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    def writer(self, done: int = 0) -> SummaryWriter:
        """A TensorBoard writer on :attr:`tensorboard`.

        :param done: the step the run resumes after (0: from the start). Steps logged after it by a sitting that was
            killed are purged (TensorBoard hides them), so a resumed run shows each step once.
        """
        from torch.utils.tensorboard import SummaryWriter

        self.record()
        return SummaryWriter(str(self.tensorboard), purge_step=done + 1)

    def save_state(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: torch.optim.lr_scheduler.LRScheduler,
        **progress: Any,
    ) -> None:
        """Atomically write what resuming needs: the model, optimizer and schedule states, the torch RNG state
        and ``progress`` (counters, histories, a numpy ``bit_generator.state``: plain data only)."""
        import torch

        self.record()
        state = {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "torch_rng": torch.get_rng_state()}
        save_file("checkpoint", {"model": model.state_dict(), **state, "progress": json.dumps(progress)}, self.checkpoint)

    def load_state(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: torch.optim.lr_scheduler.LRScheduler,
    ) -> dict[str, Any] | None:
        """Restore :meth:`save_state` into the objects (and the torch RNG); return ``progress``, or None for a
        fresh run. A checkpoint of an older format is refused with what to do."""
        import torch

        if not self.checkpoint.exists():
            return None
        try:
            state = load_file(self.checkpoint, "checkpoint")
        except ValueError:
            raise ValueError(
                f"{self.checkpoint} is a checkpoint of an older version (or damaged): delete it to retrain from the start, "
                "or finish that run with the version that started it"
            ) from None
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"])
        return json.loads(state["progress"])


def newest_files(directory: str | os.PathLike, prefix: str, suffix: str) -> list[Path]:
    """Files ``<prefix>_<steps>_steps<suffix>`` in ``directory``, oldest first."""
    found = []
    for path in Path(directory).glob(f"{prefix}_*_steps{suffix}"):
        steps = path.name[len(prefix) + 1 : -len(f"_steps{suffix}")]
        if steps.isdigit():
            found.append((int(steps), path))
    return [path for _, path in sorted(found)]
