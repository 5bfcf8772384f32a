"""Metrics of event-sequence models on held-out sessions, the comparison table, the timing plot, generation.

The four metrics, overall and per timing scale:

* ``timing_mae_ms``: mean absolute error of each action's gap (time since the previous action), ms;
* ``event_accuracy``: share of actions whose event type is right;
* ``coord_mae_px``: mean absolute error of ``x`` and ``y`` (averaged over both), pixels;
* ``length_accuracy``: share of windows whose sequence length is exactly right.

Per-action metrics are teacher-forced (action ``k`` is predicted from the real actions before it, as in
training) and grouped by the scale of the real gap; ``length_accuracy`` is grouped by the scale of the
window's median real gap. Generation (:meth:`~sb3_masked_attention.sequence.model.SequenceModel.generate`)
is judged by the timing distribution it produces (:func:`timing_distribution`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sb3_masked_attention.evaluation.report import to_markdown
from sb3_masked_attention.io import atomic_path, save_figure, write_text_atomic
from sb3_masked_attention.sequence.baselines import repeat_last
from sb3_masked_attention.sequence.data import SCALES, WindowConfig, Windows, history_windows, make_windows, timing_scale
from sb3_masked_attention.sequence.events import load_events
from sb3_masked_attention.sequence.model import Batch, SequenceModel

METRICS = ("timing_mae_ms", "length_accuracy", "event_accuracy", "coord_mae_px")
Predictor = Callable[[Batch], dict[str, torch.Tensor]]


def _errors(predictions: dict[str, torch.Tensor], batch: Batch) -> dict[str, torch.Tensor]:
    """Per action ``(N, L)``: timing error (ms), event right, coordinate error (px, mean of x and y);
    per window ``(N,)``: length right."""
    return {
        "timing": (predictions["gap"] - batch["y_gap"]).abs() * 1000.0,
        "event": (predictions["event"] == batch["y_event"]).float(),
        "coord": (predictions["xy"] - batch["y_xy"]).abs().mean(dim=-1),
        "length": (predictions["length"] == batch["length"]).float(),
    }


def sequence_metrics(predictions: dict[str, torch.Tensor], batch: Batch) -> pd.DataFrame:
    """The four metrics of point ``predictions`` (``event``, ``gap``, ``xy``, ``length``) against ``batch``.

    :return: one row per group (``all``, ``fast``, ``medium``, ``slow``) with the metrics and the counts
        ``actions`` and ``windows``; a group with nothing in it gets NaN.
    """
    valid = batch["y_valid"].bool()
    scale = timing_scale(batch["y_gap"])
    gap = batch["y_gap"].double().masked_fill(~valid, float("nan"))
    window_scale = timing_scale(torch.nanmedian(gap, dim=1).values.float())
    errors = _errors(predictions, batch)
    rows = []
    for name, index in [("all", None), *((scale_name, i) for i, scale_name in enumerate(SCALES))]:
        actions = valid if index is None else valid & (scale == index)
        windows = torch.ones_like(valid[:, 0]) if index is None else window_scale == index
        mean = lambda values, where: float(values[where].mean()) if bool(where.any()) else float("nan")  # noqa: E731
        rows.append(
            {
                "scale": name,
                "timing_mae_ms": mean(errors["timing"], actions),
                "length_accuracy": mean(errors["length"], windows),
                "event_accuracy": mean(errors["event"], actions),
                "coord_mae_px": mean(errors["coord"], actions),
                "actions": int(actions.sum()),
                "windows": int(windows.sum()),
            }
        )
    return pd.DataFrame(rows)


def _predict_all(predict: Predictor, windows: Windows, batch_size: int = 512) -> dict[str, torch.Tensor]:
    parts = [predict(windows.batch(slice(s, s + batch_size))) for s in range(0, len(windows), batch_size)]
    return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}


def predict_models(
    models: dict[str, SequenceModel], windows: Windows, window: WindowConfig
) -> dict[str, dict[str, torch.Tensor]]:
    """Point predictions of the repeat-last baseline (first) and of each model on ``windows``."""
    predictors: dict[str, Predictor] = {"repeat_last": lambda b: repeat_last(b, window.pause, window.max_actions)}
    predictors.update({name: model.predict for name, model in models.items()})
    return {name: _predict_all(p, windows) for name, p in predictors.items()}


def metrics_table(predictions: dict[str, dict[str, torch.Tensor]], windows: Windows) -> pd.DataFrame:
    """:func:`sequence_metrics` of every predictor: long table ``model, scale, <metrics>, actions, windows``."""
    everything = windows.batch()
    table = pd.concat(
        [sequence_metrics(p, everything).assign(model=name) for name, p in predictions.items()], ignore_index=True
    )
    return table[["model", "scale", *METRICS, "actions", "windows"]]


def _window_sums(predictions: dict[str, torch.Tensor], batch: Batch) -> np.ndarray:
    """Per window: summed timing error (ms), right events, coordinate error (px), right length, actions: ``(N, 5)``."""
    valid, errors = batch["y_valid"].float(), _errors(predictions, batch)
    sums = [(errors[key] * valid).sum(dim=1) for key in ("timing", "event", "coord")]
    return torch.stack([*sums, errors["length"], valid.sum(dim=1)], dim=1).double().numpy()


def session_bootstrap(
    predictions: dict[str, dict[str, torch.Tensor]], windows: Windows, reference: str, reps: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Difference of each metric (``reference`` minus each other model, overall) with a 95% percentile
    bootstrap interval over held-out sessions: whole sessions are resampled, because windows of one session
    are not independent.

    :return: rows ``model, baseline, metric, difference, low, high, better`` (``better``: the interval lies
        entirely on the reference's good side: lower errors, higher accuracies).
    """
    if reference not in predictions:
        raise ValueError(f"reference={reference!r} is not one of the models {sorted(predictions)}")
    batch = windows.batch()
    session = windows.arrays["session"]
    sessions, index = np.unique(session, return_inverse=True)
    counts = np.random.default_rng(seed).multinomial(len(sessions), np.full(len(sessions), 1 / len(sessions)), size=reps)
    weights = counts[:, index]  # (reps, N): how often each window's session was drawn

    def metrics(name: str) -> np.ndarray:  # (reps, 4) in METRICS order
        sums = weights @ _window_sums(predictions[name], batch)
        return np.stack(
            [sums[:, 0] / sums[:, 4], sums[:, 3] / weights.sum(axis=1), sums[:, 1] / sums[:, 4], sums[:, 2] / sums[:, 4]],
            axis=1,
        )

    ours, rows = metrics(reference), []
    for name in predictions:
        if name == reference:
            continue
        difference = ours - metrics(name)
        for k, metric in enumerate(METRICS):
            low, high = np.percentile(difference[:, k], [2.5, 97.5])
            lower_is_better = "mae" in metric
            rows.append(
                {
                    "model": reference,
                    "baseline": name,
                    "metric": metric,
                    "difference": float(np.median(difference[:, k])),
                    "low": float(low),
                    "high": float(high),
                    "better": bool(high < 0 if lower_is_better else low > 0),
                }
            )
    return pd.DataFrame(rows)


@torch.no_grad()
def timing_distribution(
    models: dict[str, SequenceModel], windows: Windows, seed: int = 0, batch_size: int = 512
) -> dict[str, np.ndarray]:
    """Gaps (seconds) of the real target sequences and of sequences each model generates (sampled) after
    the same histories: ``{"real": ..., name: ...}``."""
    gaps = {"real": windows.arrays["y_gap"][windows.arrays["y_valid"]]}
    for name, model in models.items():
        generator = torch.Generator().manual_seed(seed)
        parts = []
        for start in range(0, len(windows), batch_size):
            out = model.generate(windows.batch(slice(start, start + batch_size)), generator=generator)
            parts.append(out["gap"][out["valid"]].numpy())
        gaps[name] = np.concatenate(parts)
    return gaps


def plot_timing_distribution(gaps: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Histogram of log-spaced gaps (ms), real vs generated, with the timing-scale edges marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = np.logspace(np.log10(5), np.log10(10_000), 60)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, values in gaps.items():
        style = {"color": "black", "linewidth": 2.0} if name == "real" else {"linewidth": 1.5}
        ax.hist(
            np.asarray(values) * 1000.0,
            bins=bins.tolist(),
            density=True,
            histtype="step",
            label=f"{name} ({len(values)} actions)",
            **style,
        )
    for edge in (100, 300):
        ax.axvline(edge, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("time since the previous action (ms, log scale); dotted: fast | medium | slow edges")
    ax.set_ylabel("density")
    ax.set_title("Timing of generated vs real action sequences (held-out sessions)")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def scale_shares(gaps: dict[str, np.ndarray]) -> pd.DataFrame:
    """Share of fast / medium / slow gaps in each distribution (rows: distributions)."""
    rows = [
        {"source": name, **dict(zip(SCALES, np.bincount(timing_scale(np.asarray(v)).numpy(), minlength=3) / max(len(v), 1)))}
        for name, v in gaps.items()
    ]
    return pd.DataFrame(rows)


def markdown_table(table: pd.DataFrame) -> str:
    """The comparison as Markdown: one row per model and scale, best value of each metric in bold."""
    lines = [
        "| model | scale | timing MAE (ms) | length acc. | event acc. | coord. MAE (px) | actions | windows |",
        "|" + "---|" * 8,
    ]
    for scale, group in table.groupby("scale", sort=False):
        best = {m: (group[m].min() if m.endswith("mae_ms") or m.endswith("mae_px") else group[m].max()) for m in METRICS}
        for _, row in group.iterrows():
            cells = []
            for m in METRICS:
                text = "n/a" if pd.isna(row[m]) else (f"{row[m]:.1f}" if "mae" in m else f"{row[m]:.3f}")
                cells.append(f"**{text}**" if row[m] == best[m] else text)
            lines.append(f"| {row['model']} | {scale} | {' | '.join(cells)} | {row['actions']} | {row['windows']} |")
    return "\n".join(lines) + "\n"


def evaluate_event_models(
    models: dict[str, SequenceModel], events: str | os.PathLike, out: str | os.PathLike | None = None, seed: int = 0
) -> pd.DataFrame:
    """Compare ``models`` (and repeat-last) on the sessions of ``events``; optionally write ``metrics.csv``,
    ``differences.csv`` (the first model minus each other, bootstrap intervals over sessions), ``metrics.md``,
    ``timing_shares.csv`` and ``timing_distribution.png`` to ``out``.

    All models must share one window configuration and vocabulary (the first model's is used to read the file).
    """
    if not models:
        raise ValueError("models is empty: give at least one trained model")
    first = next(iter(models.values()))
    for name, model in models.items():
        if model.window != first.window or model.event_types != first.event_types or model.enum_sizes != first.enum_sizes:
            raise ValueError(
                f"model {name!r} was trained with another window configuration or vocabulary than the first model"
            )
    log = load_events(events, event_types=first.event_types, enum_values=first.enum_values, screen=first.window.screen)
    windows = make_windows(log, first.window)
    predictions = predict_models(models, windows, first.window)
    table = metrics_table(predictions, windows)
    if out is not None:
        out = Path(out)
        reference = next(iter(models))
        differences = session_bootstrap(predictions, windows, reference, seed=seed)
        with atomic_path(out / "differences.csv") as tmp:
            differences.to_csv(tmp, index=False)
        with atomic_path(out / "metrics.csv") as tmp:
            table.to_csv(tmp, index=False)
        gaps = timing_distribution(models, windows, seed=seed)
        plot_timing_distribution(gaps, out / "timing_distribution.png")
        shares = scale_shares(gaps)
        with atomic_path(out / "timing_shares.csv") as tmp:
            shares.to_csv(tmp, index=False)
        write_text_atomic(
            out / "metrics.md",
            f"# Event-sequence models on {Path(events).name} ({len(log.sessions)} sessions, {len(windows)} windows)\n\n"
            + markdown_table(table)
            + f"\n## {reference} minus each baseline, overall, with 95% bootstrap intervals over sessions\n\n"
            + to_markdown(differences)
            + "\n## Share of each timing scale: real vs generated (sampled)\n\n"
            + to_markdown(shares)
            + "\n",
        )
    return table


def generate_after(model: SequenceModel, history: str | os.PathLike, greedy: bool = False, seed: int = 0) -> pd.DataFrame:
    """Generate the next sequence of actions after each session of the ``history`` CSV.

    :return: rows ``session, t, event, x, y, <enumerated columns>`` with absolute times continuing after
        each session's last event (the CSV format of the input).
    """
    enum_values = model.enum_values or {}
    log = load_events(
        history, event_types=model.event_types, enum_values=enum_values, min_events=1, screen=model.window.screen
    )
    windows = history_windows(log, model.window)
    out = model.generate(windows.batch(), greedy=greedy, generator=torch.Generator().manual_seed(seed))
    rows = []
    for i, session in enumerate(log.sessions):
        t = float(session.t[-1])
        for k in range(int(out["length"][i])):
            t += float(out["gap"][i, k])
            row = {
                "session": session.name,
                "t": round(t, 4),
                "event": model.event_types[int(out["event"][i, k])],
                "x": round(float(out["xy"][i, k, 0]), 1),
                "y": round(float(out["xy"][i, k, 1]), 1),
            }
            row.update({c: enum_values[c][int(out["enums"][i, k, j])] for j, c in enumerate(enum_values)})
            rows.append(row)
    return pd.DataFrame(rows, columns=["session", "t", "event", "x", "y", *enum_values])
