"""Exact resume for SB3 on-policy training: rollout-aligned checkpoints.

A checkpoint is taken where a rollout starts (after an update), at the first rollout start past each multiple of
``save_freq`` steps. It holds the model's weights and optimizer (``model_<steps>_steps.zip``, read back weights-only)
and, as plain data, what else decides the rest of the run (``model_<steps>_steps.state.pt``): the torch, numpy and
Python RNG states and the length of every log file the run appends to. At that moment the training envs restart
from seeds derived from the run's seed and the step, in the straight run as in a resumed one, so no env state has
to be saved: a run killed at any moment and resumed from its newest checkpoint is the run it would have been.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import HumanOutputFormat, KVWriter, Logger, TensorBoardOutputFormat

from sb3_masked_attention.io import atomic_path, write_text_atomic
from sb3_masked_attention.runs import load_file, newest_files, save_file
from sb3_masked_attention.validation import check_int


def rng_states() -> dict[str, Any]:
    """The torch (CPU), numpy (global) and Python ``random`` states, as tensors, lists and numbers."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)  # type: ignore[misc]
    version, internal, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": [version, list(internal), gauss],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore :func:`rng_states`."""
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))


def count_lines(path: Path) -> int:
    """Lines in ``path`` (0 if it does not exist)."""
    if not path.exists():
        return 0
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)


def truncate_lines(path: Path, lines: int) -> int:
    """Keep the first ``lines`` lines of ``path`` (atomically); return how many were dropped."""
    if not path.exists():
        return 0
    kept = path.read_bytes().splitlines(keepends=True)
    if len(kept) <= lines:
        return 0
    write_text_atomic(path, b"".join(kept[:lines]).decode())
    return len(kept) - lines


class RolloutCheckpointCallback(BaseCallback):
    """Rollout-aligned checkpoints (see the module's docstring), keeping the newest ``keep``.

    :param save_freq: environment steps between checkpoints (taken at the first rollout start past each multiple).
    :param save_path: the checkpoint folder.
    :param seed: the run's seed; the envs restart from ``seed + step`` at each checkpoint.
    :param logs: files the run appends to (evaluations, monitors): their lengths are recorded with each checkpoint.
    :param resume: the state of the checkpoint the run resumes from (:func:`load_checkpoint`), or None.
    """

    def __init__(
        self,
        save_freq: int,
        save_path: str | os.PathLike,
        seed: int,
        logs: list[Path],
        resume: dict[str, Any] | None = None,
        keep: int = 2,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        self.save_freq, self.keep = check_int("save_freq", save_freq), check_int("keep", keep)
        self.save_path, self.seed, self.logs, self.resume = Path(save_path), seed, logs, resume

    def _on_step(self) -> bool:
        return True

    def _on_rollout_start(self) -> None:
        step = self.num_timesteps
        rollout = self.model.n_steps * self.model.n_envs  # type: ignore[attr-defined]
        if step == 0 or step // self.save_freq == (step - rollout) // self.save_freq:
            return  # no multiple of save_freq passed during the last rollout
        if self.resume is not None and self.resume["timesteps"] == step:
            set_rng_states(self.resume["rng"])  # the straight run's state at this moment
            self.resume = None
        else:
            self._save(step)
        env = self.model.get_env()
        assert env is not None
        env.seed(self.seed + step)  # the restart: a function of the run's seed and the step only
        self.model._last_obs = env.reset()  # type: ignore[assignment]
        self.model._last_episode_starts = np.ones((env.num_envs,), dtype=bool)

    def _save(self, step: int) -> None:
        path = self.save_path / f"model_{step}_steps.zip"
        state = {"timesteps": step, "rng": rng_states(), "logs": {log.name: count_lines(log) for log in self.logs}}
        with atomic_path(path, suffix=".zip") as tmp:
            self.model.save(tmp)
        save_file("checkpoint", {"run_state": state}, path.with_suffix(".state.pt"))  # written last: marks it whole
        for old in newest_files(self.save_path, "model", ".zip")[: -self.keep]:
            old.unlink(missing_ok=True)
            old.with_suffix(".state.pt").unlink(missing_ok=True)
        if self.verbose:
            print(f"checkpoint {path}")


def newest_checkpoint(save_path: Path, logs: list[Path]) -> tuple[Path, dict[str, Any]] | None:
    """The newest whole checkpoint in ``save_path`` (its ``.zip`` and its state), with the log files cut back to their
    lengths at that moment: what a killed sitting wrote after it is replayed exactly. Call it before anything opens
    the logs for appending.

    :raises ValueError: checkpoints of an older version (no state file), which cannot resume exactly.
    """
    zips = newest_files(save_path, "model", ".zip")
    whole = [path for path in zips if path.with_suffix(".state.pt").exists()]
    if zips and not whole:
        raise ValueError(
            f"{save_path} holds checkpoints of an older version (no .state.pt beside {zips[-1].name}), which cannot "
            "resume exactly: finish the run with the version that started it, or train into a new folder"
        )
    if not whole:
        return None
    state = load_file(whole[-1].with_suffix(".state.pt"), "checkpoint")["run_state"]
    for log in logs:
        truncate_lines(log, int(state["logs"].get(log.name, count_lines(log))))
    return whole[-1], state


class ResumedTensorBoard(TensorBoardOutputFormat):
    """SB3's TensorBoard output, which on a resumed run purges the steps the killed sitting logged after the checkpoint
    (TensorBoard hides them): each step is shown once.

    :param folder: the event folder (one per run, the same on every sitting).
    :param done: the step the run resumes from (0: from the start).
    """

    def __init__(self, folder: str, done: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=folder, purge_step=done + 1)
        self._is_closed = False


def run_logger(folder: Path, done: int, verbose: int) -> Logger:
    """SB3's logger for a resumable run: :class:`ResumedTensorBoard` in ``folder``, and stdout when ``verbose``."""
    formats: list[KVWriter] = [ResumedTensorBoard(str(folder), done)]
    if verbose:
        formats.append(HumanOutputFormat(sys.stdout))
    return Logger(str(folder), formats)
