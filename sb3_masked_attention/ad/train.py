"""Train an :class:`ADTransformer` to predict the source algorithm's next action from its learning history.

Read top to bottom: windows of ``context_len`` consecutive transitions are cut at random from the
learning runs (5% of runs held out for validation), the model predicts every action of the window
(cross-entropy), AdamW with warm-up and cosine decay, gradient clipping. ``OUT/checkpoint.pt`` is
written atomically every ``checkpoint_every`` updates; running again with the same settings resumes
from it, a changed setting is refused naming it, except a larger ``updates``, which trains on (the cosine
schedule stretches to the new total). ``OUT/model.pt`` is the final model.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sb3_masked_attention.ad.config import ADTrainConfig
from sb3_masked_attention.ad.data import Histories, load_histories
from sb3_masked_attention.ad.model import ADTransformer, transition_inputs
from sb3_masked_attention.runs import RunDir, check_update_memory, input_identity, load_file, save_file, warmup_cosine
from sb3_masked_attention.validation import check_int


def _windows(
    histories: Histories, runs: np.ndarray, length: int, batch: int, rng: np.random.Generator
) -> tuple[dict, torch.Tensor]:
    run = rng.choice(runs, size=batch)
    start = rng.integers(0, histories.actions.shape[1] - length + 1, size=batch)
    index = start[:, None] + np.arange(length)
    take = lambda a: a[run[:, None], index]  # noqa: E731
    inputs = transition_inputs(
        take(histories.observations),
        take(histories.actions),
        take(histories.rewards),
        take(histories.timesteps),
        histories.meta["n_actions"],
    )
    return inputs, torch.as_tensor(take(histories.actions))


def save_ad_model(model: ADTransformer, meta: dict[str, Any], path: str | os.PathLike) -> None:
    """Write the model, its configuration and the dataset's ``meta`` (env id, kwargs) atomically."""
    save_file("ad_model", {"config": model.config, "meta": meta, "state_dict": model.state_dict()}, path)


def load_ad_model(path: str | os.PathLike) -> tuple[ADTransformer, dict[str, Any]]:
    """Read a model saved by :func:`save_ad_model` (or its run directory); return it in eval mode and its meta."""
    payload = load_file(path, "ad_model")
    model = ADTransformer(**payload["config"])
    model.load_state_dict(payload["state_dict"])
    return model.eval(), payload["meta"]


def train_ad(
    dataset: str | os.PathLike,
    out: str | os.PathLike,
    config: ADTrainConfig | None = None,
    progress: bool = True,
    **overrides: Any,
) -> ADTransformer:
    """Train (or resume training) an AD model on a dataset from :func:`collect_histories`.

    :param dataset: the ``.npz`` learning histories.
    :param out: run directory: ``checkpoint.pt``, ``model.pt``, ``train_config.json``, TensorBoard logs.
    :param config: architecture and optimisation (default :class:`ADTrainConfig`).
    :param overrides: :class:`ADTrainConfig` fields replacing ``config``'s (``updates=500``, ``context_len=100`` ...).
    """
    config = replace(config or ADTrainConfig(), **overrides)
    updates, batch_size = check_int("updates", config.updates), check_int("batch_size", config.batch_size)
    checkpoint_every = check_int("checkpoint_every", config.checkpoint_every)
    learning_rate, seed = config.learning_rate, config.seed
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate={learning_rate!r} is invalid: expected a positive number")
    histories = load_histories(dataset)
    meta = histories.meta
    settings = {"dataset": input_identity(dataset), **asdict(config)}
    settings.pop("checkpoint_every")  # how often to save does not change the run
    run = RunDir(out, settings, grow=("updates",), defaults=asdict(ADTrainConfig()))

    torch.manual_seed(seed)
    model = ADTransformer(
        meta["n_actions"], meta["obs_low"], meta["obs_high"], meta["episode_length"], **config.model_kwargs()
    )
    length = model.context_len
    if length > histories.actions.shape[1]:
        raise ValueError(f"context_len={length} is longer than the dataset's runs ({histories.actions.shape[1]} steps)")
    check_update_memory(batch_size, length, config.d_model, config.n_layers, config.n_heads, config.ff_dim)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    schedule = warmup_cosine(optimizer, warmup=updates // 20, total=updates)
    rng = np.random.default_rng(seed)
    order = rng.permutation(histories.n_runs)
    n_val = max(1, histories.n_runs // 20) if histories.n_runs > 1 else 0
    val_runs, train_runs = order[:n_val], order[n_val:]
    start = 0
    state = run.load_state(model, optimizer, schedule)
    if state is not None:
        rng.bit_generator.state = state["rng"]
        start = state["update"]

    writer = run.writer(done=start)
    model.train()
    bar = tqdm(range(start, updates), initial=start, total=updates, desc="AD training", unit="update", disable=not progress)
    for update in bar:
        inputs, targets = _windows(histories, train_runs, length, batch_size, rng)
        logits, _ = model(**inputs)
        loss = F.cross_entropy(logits.reshape(-1, model.n_actions), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        writer.add_scalar("train/loss", loss.item(), update + 1)
        if (update + 1) % checkpoint_every == 0 or update + 1 == updates:
            metrics = _validate(model, histories, val_runs if n_val else train_runs, length, rng)
            for name, value in metrics.items():
                writer.add_scalar(f"val/{name}", value, update + 1)
            bar.set_postfix(loss=f"{loss.item():.3f}", val_acc=f"{metrics['accuracy']:.3f}")
            run.save_state(model, optimizer, schedule, rng=rng.bit_generator.state, update=update + 1)
    writer.close()
    model.eval()
    save_ad_model(model, meta, run.path / "model.pt")
    run.close()
    return model


@torch.no_grad()
def _validate(
    model: ADTransformer, histories: Histories, runs: np.ndarray, length: int, rng: np.random.Generator
) -> dict[str, float]:
    was_training = model.training
    model.eval()
    inputs, targets = _windows(histories, runs, length, 32, np.random.default_rng(rng.integers(2**32)))
    logits, _ = model(**inputs)
    model.train(was_training)
    loss = F.cross_entropy(logits.reshape(-1, model.n_actions), targets.reshape(-1)).item()
    return {"loss": loss, "accuracy": (logits.argmax(-1) == targets).float().mean().item()}
