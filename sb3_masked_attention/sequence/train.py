"""Train an event-sequence decoder (attention or the GRU baseline) on an event log.

Read top to bottom: the log is cut into windows (:func:`~sb3_masked_attention.sequence.data.make_windows`),
sessions are split into training and validation (never one session on both sides), each epoch shuffles
the training windows, the summed loss is minimised with AdamW (one epoch of warm-up, cosine decay, gradient clipping), and the
validation loss is measured after every epoch. ``OUT/checkpoint.pt`` is written atomically after each
epoch; running again with the same settings resumes from it, a changed setting is refused naming it,
except a larger ``epochs``, which trains on. ``OUT/model.pt`` holds the weights of the epoch with the
lowest validation loss; ``OUT/training.csv`` the per-epoch losses; ``OUT/tensorboard`` the same curves.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from sb3_masked_attention.io import atomic_path
from sb3_masked_attention.runs import RunDir, input_identity, load_file, save_file, warmup_cosine
from sb3_masked_attention.sequence.baselines import GRUDecoder
from sb3_masked_attention.sequence.config import SequenceTrainConfig
from sb3_masked_attention.sequence.data import WindowConfig, Windows, make_windows, split_sessions
from sb3_masked_attention.sequence.events import EventLog, load_events
from sb3_masked_attention.sequence.model import AdvancedAttentionDecoder, SequenceModel
from sb3_masked_attention.validation import check_int

ARCHITECTURES: dict[str, type[SequenceModel]] = {"attention": AdvancedAttentionDecoder, "gru": GRUDecoder}


def _architecture(arch: str) -> type[SequenceModel]:
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch={arch!r} is unknown: expected one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch]


def build_model(arch: str, log: EventLog, window: WindowConfig, **model_kwargs: Any) -> SequenceModel:
    """An untrained ``arch`` model (``"attention"`` or ``"gru"``) for ``log``'s vocabularies."""
    model = _architecture(arch)(
        max_actions=window.max_actions,
        enum_sizes=log.enum_sizes,
        event_types=log.event_types,
        window=window.to_dict(),
        **model_kwargs,
    )
    model.enum_values = log.enum_values
    return model


def save_sequence_model(model: SequenceModel, arch: str, path: str | os.PathLike) -> None:
    """Write the model, its architecture, configuration and vocabularies atomically."""
    payload = {"arch": arch, "config": model.config, "enum_values": model.enum_values, "state_dict": model.state_dict()}
    save_file("sequence_model", payload, path)


def load_sequence_model(path: str | os.PathLike) -> tuple[SequenceModel, str]:
    """Read a model written by :func:`train_sequence_model` (a run directory or its ``model.pt``).

    :return: the model in eval mode (with its ``enum_values``) and its architecture name.
    """
    payload = load_file(path, "sequence_model")
    model = _architecture(payload.get("arch", ""))(**payload["config"])
    model.load_state_dict(payload["state_dict"])
    model.enum_values = payload["enum_values"]
    return model.eval(), payload["arch"]


@torch.no_grad()
def validation_losses(model: SequenceModel, windows: Windows, batch_size: int = 256) -> dict[str, float]:
    """Mean losses over ``windows`` (weighted by batch size), in eval mode."""
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    for start in range(0, len(windows), batch_size):
        batch = windows.batch(slice(start, start + batch_size))
        n = len(batch["length"])
        for name, value in model.loss(batch).items():
            totals[name] = totals.get(name, 0.0) + float(value) * n
    model.train(was_training)
    return {name: value / len(windows) for name, value in totals.items()}


def train_sequence_model(
    events: str | os.PathLike,
    out: str | os.PathLike,
    config: SequenceTrainConfig | None = None,
    window: WindowConfig | None = None,
    progress: bool = True,
    **overrides: Any,
) -> SequenceModel:
    """Train (or resume training) an event-sequence decoder.

    :param events: the event-log CSV (:func:`~sb3_masked_attention.sequence.events.load_events`).
    :param out: run directory: ``model.pt``, ``checkpoint.pt``, ``training.csv``, ``train_config.json``,
        ``tensorboard/``.
    :param config: architecture and optimisation (default :class:`SequenceTrainConfig`).
    :param window: how the log is cut into windows (default :class:`WindowConfig`).
    :param overrides: :class:`SequenceTrainConfig` fields replacing ``config``'s (``arch="gru"``, ``epochs=3`` ...).
    :return: the model with the lowest validation loss, in eval mode.
    """
    config = replace(config or SequenceTrainConfig(), **overrides)
    arch, seed = config.arch, config.seed
    epochs, batch_size = check_int("epochs", config.epochs), check_int("batch_size", config.batch_size)
    if not (math.isfinite(config.learning_rate) and config.learning_rate > 0):
        raise ValueError(f"learning_rate={config.learning_rate!r} is invalid: expected a positive number")
    _architecture(arch)  # before reading the data
    window = window or WindowConfig()
    log = load_events(events, screen=window.screen)
    windows = make_windows(log, window)
    is_val = split_sessions(len(log.sessions), config.val_fraction, seed)[windows.arrays["session"]]
    train_windows, val_windows = windows.select(~is_val), windows.select(is_val)
    model_kwargs = config.model_kwargs()
    settings = {
        "events": input_identity(events),
        "arch": arch,
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": config.learning_rate,
        "val_fraction": config.val_fraction,
        "seed": seed,
        "window": window.to_dict(),
        **model_kwargs,
    }
    run = RunDir(out, settings, grow=("epochs",))

    torch.manual_seed(seed)
    model = build_model(arch, log, window, **model_kwargs)
    batches = math.ceil(len(train_windows) / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=0.01)
    schedule = warmup_cosine(optimizer, warmup=batches, total=epochs * batches)  # one epoch of warm-up
    history: list[dict[str, float]] = []
    best = math.inf
    state = run.load_state(model, optimizer, schedule)
    if state is not None:
        history, best = state["history"], state["best"]

    writer = run.writer(done=len(history))
    model.train()
    bar = tqdm(
        total=epochs * batches, initial=len(history) * batches, desc=f"{arch} decoder", unit="batch", disable=not progress
    )
    for epoch in range(len(history), epochs):
        order = np.random.default_rng([seed, epoch]).permutation(len(train_windows))  # same order after a resume
        sums: dict[str, float] = {}
        for start in range(0, len(order), batch_size):
            batch = train_windows.batch(order[start : start + batch_size])
            losses = model.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            bar.update(1)
        row: dict[str, float] = {"epoch": epoch + 1, **{f"train_{k}": v / batches for k, v in sums.items()}}
        row.update({f"val_{k}": v for k, v in validation_losses(model, val_windows).items()})
        history.append(row)
        for key, number in row.items():
            if key != "epoch":
                writer.add_scalar(key.replace("_", "/", 1), number, epoch + 1)
        bar.set_postfix(train=f"{row['train_total']:.3f}", val=f"{row['val_total']:.3f}")
        if row["val_total"] < best:
            best = row["val_total"]
            save_sequence_model(model, arch, run.path / "model.pt")
        run.save_state(model, optimizer, schedule, history=history, best=best)
        with atomic_path(run.path / "training.csv") as tmp:
            pd.DataFrame(history).to_csv(tmp, index=False)
    bar.close()
    writer.close()
    run.close()
    return load_sequence_model(run.path / "model.pt")[0]
