"""In-context evaluation of an AD model: no weight updates, many consecutive episodes on each held-out goal
with the context carried across them; the return per episode is the in-context learning curve.

All goals run in lock-step as one batch (Dark Room episodes have a fixed length). With ``use_cache``
each step feeds one new token through per-layer key/value caches (exact while the context is shorter
than the model's ``context_len``; a sliding window after that); without it each step recomputes the
whole context window, which is the reference the cache is tested against.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import gymnasium as gym
import numpy as np
import pandas as pd
import torch

from sb3_masked_attention.ad.compression import ContextCompressor
from sb3_masked_attention.ad.data import q_learning_run
from sb3_masked_attention.ad.model import ADTransformer
from sb3_masked_attention.validation import check_int


@dataclass
class InContextResult:
    """Returns ``(goals, episodes)``, the goals, and the wall time of each step's model call (all goals at once)."""

    returns: np.ndarray
    goals: list[tuple[int, int]]
    step_seconds: np.ndarray

    @property
    def seconds_per_step(self) -> float:
        return float(self.step_seconds.mean())


def make_goal_envs(env_id: str, goals: Sequence[tuple[int, int]], env_kwargs: dict[str, Any] | None = None) -> list[gym.Env]:
    import envs  # noqa: F401  (registers the sb3ma/ ids)

    return [gym.make(env_id, goal=tuple(goal), **(env_kwargs or {})) for goal in goals]


def env_goals(env_id: str, split: str, env_kwargs: dict[str, Any] | None = None) -> list[tuple[int, int]]:
    """The ``split`` (``train``/``test``/``all``) goal cells of a Dark Room env."""
    import envs  # noqa: F401

    env: Any = gym.make(env_id, goals=split, **(env_kwargs or {})).unwrapped
    return [(int(g[0]), int(g[1])) for g in env.goals]


@torch.no_grad()
def in_context_returns(
    model: ADTransformer,
    env_id: str,
    goals: Sequence[tuple[int, int]],
    episodes: int = 40,
    env_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    greedy: bool = False,
    use_cache: bool = True,
    max_context: int | None = None,
    compress: ContextCompressor | None = None,
    on_step: Callable[[list[torch.Tensor]], None] | None = None,
) -> InContextResult:
    """Run ``episodes`` consecutive episodes on every goal, carrying the context; no weight updates.

    :param model: a trained :class:`ADTransformer` (put in eval mode here).
    :param env_id: Dark Room id; one env per goal, ``goal=(x, y)``.
    :param goals: goal cells (the held-out ``test`` goals for the real evaluation).
    :param episodes: consecutive episodes per goal.
    :param seed: seeds the action sampling and the envs.
    :param greedy: take the most likely action instead of sampling it.
    :param use_cache: one token per step through a key/value cache; otherwise recompute the window.
    :param max_context: tokens kept (default: the model's ``context_len``).
    :param compress: shorten the embedded context window before each step (recomputes it; no cache).
    :param on_step: called with each layer's newest-query weights ``(B, H, 1, T)`` (turns on the explicit path).
    """
    episodes = check_int("episodes", episodes)
    if not goals:
        raise ValueError("goals is empty: expected at least one goal cell")
    if compress is not None and use_cache:
        raise ValueError("compress recomputes the compressed context each step: pass use_cache=False with compress")
    model.eval()
    max_context = model.context_len if max_context is None else check_int("max_context", max_context)
    envs = make_goal_envs(env_id, goals, env_kwargs)
    length = cast(Any, envs[0].unwrapped).episode_length
    generator = torch.Generator().manual_seed(seed)
    n, n_actions = len(goals), model.n_actions
    returns = np.zeros((n, episodes))
    cache, seen = model.new_cache(), 0
    tokens = torch.zeros(n, 0, model.config["d_model"])
    if compress is not None:
        compress.reset()
    want_weights = on_step is not None or (compress is not None and compress.needs_weights)
    prev_action, prev_reward = torch.full((n,), n_actions), torch.zeros(n)
    step_seconds = []
    for episode in range(episodes):
        obs = torch.as_tensor(np.stack([env.reset(seed=seed + 1000 * episode + i)[0] for i, env in enumerate(envs)]))
        prev_action, prev_reward = torch.full((n,), n_actions), torch.zeros(n)
        for t in range(length):
            step = torch.full((n,), t)
            start = time.perf_counter()
            if use_cache:
                logits, weights = model.step(
                    cache, obs, prev_action, prev_reward, step, need_weights=want_weights, max_context=max_context
                )
            else:
                new = model.embed(obs[:, None], prev_action[:, None], prev_reward[:, None], step[:, None])
                tokens, seen = torch.cat([tokens, new], dim=1)[:, -max_context:], seen + 1
                context = tokens if compress is None else compress.compress(tokens, seen - tokens.shape[1])
                logits, weights = _last_logits(model, context, need_weights=want_weights)
                if compress is not None:
                    compress.observe(weights)
            step_seconds.append(time.perf_counter() - start)
            if on_step is not None:
                on_step(weights)
            action = logits.argmax(-1) if greedy else torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]
            results = [env.step(int(a)) for env, a in zip(envs, action)]
            obs = torch.as_tensor(np.stack([r[0] for r in results]))
            reward = torch.tensor([float(r[1]) for r in results])
            returns[:, episode] += reward.numpy()
            prev_action, prev_reward = action, reward
    return InContextResult(returns, [(int(g[0]), int(g[1])) for g in goals], np.asarray(step_seconds))


def _last_logits(model: ADTransformer, tokens: torch.Tensor, need_weights: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Newest token's logits ``(B, n_actions)`` and each layer's newest-query weights ``(B, H, 1, T)``, recomputed."""
    logits, weights = model.forward_tokens(tokens, need_weights, last_only=True)
    return logits[:, -1], [w[..., -1:, :] for w in weights]


def source_returns(
    env_id: str,
    goals: Sequence[tuple[int, int]],
    episodes: int,
    runs: int = 3,
    env_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The source Q-learner's return per episode ``(goals, episodes)``, averaged over ``runs`` learning runs per goal."""
    envs = make_goal_envs(env_id, goals, env_kwargs)
    length = cast(Any, envs[0].unwrapped).episode_length
    curves = np.zeros((len(goals), episodes))
    for g, env in enumerate(envs):
        for run in range(runs):
            rewards = np.array([r for _, _, r, _ in q_learning_run(env, episodes, seed + 7919 * g + run)])
            curves[g] += rewards.reshape(episodes, length).sum(axis=1) / runs
    return curves


def curves_table(curves: dict[str, np.ndarray], goals: Sequence[tuple[int, int]]) -> pd.DataFrame:
    """Long table ``method,goal_x,goal_y,episode,return`` from ``{method: (goals, episodes)}``."""
    rows = [
        {"method": method, "goal_x": goal[0], "goal_y": goal[1], "episode": episode + 1, "return": float(value)}
        for method, returns in curves.items()
        for goal, row in zip(goals, returns)
        for episode, value in enumerate(row)
    ]
    return pd.DataFrame(rows)


def plot_curves(
    table: pd.DataFrame,
    out: str | os.PathLike,
    optimal: float | None = None,
    random: float | None = None,
    title: str = "In-context learning on held-out goals",
) -> None:
    """Mean return per episode with a 95% interval over goals (normal approximation), one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sb3_masked_attention.io import save_figure

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for method, group in table.groupby("method", sort=False):
        stats = group.groupby("episode")["return"].agg(["mean", "std", "count"])
        half = 1.96 * stats["std"].fillna(0.0) / np.sqrt(stats["count"])
        ax.plot(stats.index, stats["mean"], label=method)
        ax.fill_between(stats.index, stats["mean"] - half, stats["mean"] + half, alpha=0.2)
    if optimal is not None:
        ax.axhline(optimal, color="k", ls="--", lw=1, label="optimal")
        ax.axhline(0.8 * optimal, color="k", ls=":", lw=1, label="80% of optimal")
    if random is not None:
        ax.axhline(random, color="grey", ls="-.", lw=1, label="random policy")
    ax.set_xlabel("episode (context carried across episodes, no weight updates)")
    ax.set_ylabel("return (mean over goals, 95% CI)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, out, dpi=120)


def fraction_of_optimal_interval(
    last_returns: np.ndarray, optimal: np.ndarray, reps: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile-bootstrap interval, over goals, of the fraction of optimal: ``sum(last_returns) / sum(optimal)``
    of goals drawn with replacement (one row per goal: its mean return over the last episodes, its optimal return).
    It covers which goals were held out, not the sampling of actions (one sampling run per goal)."""
    last_returns, optimal = np.asarray(last_returns, dtype=float), np.asarray(optimal, dtype=float)
    if last_returns.shape != optimal.shape or last_returns.ndim != 1 or len(last_returns) < 2:
        raise ValueError(f"expected one return and one optimal return per goal, at least 2 goals; got {last_returns.shape}")
    draws = np.random.default_rng(seed).integers(len(optimal), size=(reps, len(optimal)))
    ratios = last_returns[draws].sum(axis=1) / optimal[draws].sum(axis=1)
    return float(np.quantile(ratios, 0.025)), float(np.quantile(ratios, 0.975))


def evaluate_ad(
    model_path: str | os.PathLike,
    out: str | os.PathLike,
    episodes: int = 100,
    split: str = "test",
    seed: int = 0,
    greedy: bool = False,
    use_cache: bool = True,
    source_runs: int = 3,
    last: int = 5,
    compress: ContextCompressor | None = None,
    label: str = "AD",
) -> dict[str, float]:
    """``sb3ma ad eval``: in-context curve of a saved model on the ``split`` goals against the source algorithm's.

    Writes ``OUT/in_context.csv`` (``method,goal_x,goal_y,episode,return``), ``OUT/in_context.png`` and
    ``OUT/summary.csv``; returns the summary: first and last-``last`` episodes' mean return of both, the
    optimal and random returns, the last episodes' fraction of optimal with a 95% bootstrap interval over the goals
    (:func:`fraction_of_optimal_interval`), and the model's seconds per step.
    """

    from sb3_masked_attention.ad.train import load_ad_model
    from sb3_masked_attention.io import atomic_path, make_dir

    model, meta = load_ad_model(model_path)
    out = make_dir(out)
    last = check_int("last", last)
    if last > episodes:
        raise ValueError(f"last={last} is more than episodes={episodes}")
    env_id, env_kwargs = meta["env_id"], meta["env_kwargs"]
    goals = env_goals(env_id, split, env_kwargs)
    result = in_context_returns(
        model, env_id, goals, episodes, env_kwargs, seed=seed, greedy=greedy, use_cache=use_cache, compress=compress
    )
    source = source_returns(env_id, goals, episodes, runs=source_runs, env_kwargs=env_kwargs, seed=seed)
    probe: Any = make_goal_envs(env_id, goals[:1], env_kwargs)[0].unwrapped
    optimals = np.array([probe.optimal_return_for(g) for g in goals], dtype=float)
    optimal = float(optimals.mean())
    random = float(np.mean([probe.random_return_for(g) for g in goals]))
    table = curves_table({label: result.returns, f"source ({meta['source']})": source}, goals)
    with atomic_path(out / "in_context.csv") as tmp:
        table.to_csv(tmp, index=False)
    plot_curves(
        table,
        out / "in_context.png",
        optimal=optimal,
        random=random,
        title=f"In-context learning on {len(goals)} {'held-out' if split == 'test' else split} {env_id} goals",
    )
    summary = {
        "goals": len(goals),
        "episodes": episodes,
        "first_episode": float(result.returns[:, 0].mean()),
        f"last_{last}_episodes": float(result.returns[:, -last:].mean()),
        "source_first_episode": float(source[:, 0].mean()),
        f"source_last_{last}_episodes": float(source[:, -last:].mean()),
        "optimal": optimal,
        "random": random,
        "fraction_of_optimal": float(result.returns[:, -last:].mean() / optimal),
        **dict(
            zip(
                ("fraction_of_optimal_low", "fraction_of_optimal_high"),
                fraction_of_optimal_interval(result.returns[:, -last:].mean(axis=1), optimals, seed=seed),
            )
        ),
        "seconds_per_step": result.seconds_per_step,
    }
    with atomic_path(out / "summary.csv") as tmp:
        pd.DataFrame([summary]).to_csv(tmp, index=False)
    return summary


def compare_compression(
    model_path: str | os.PathLike,
    out: str | os.PathLike,
    settings: Sequence[str],
    episodes: int = 40,
    split: str = "test",
    seed: int = 0,
    repeats: int = 1,
) -> pd.DataFrame:
    """``sb3ma attention compress``: in-context return and time per step of each compression setting.

    Every setting and the uncompressed model run the same goals, episodes and action-sampling seeds
    (``repeats`` seeds each). Compressed contexts change every step, so they are recomputed each step;
    the speed-up is against the uncompressed model evaluated the same way (recomputing its window), and
    the uncompressed model with its key/value cache is listed too.

    Writes ``OUT/compression.csv``, ``OUT/compression.md`` and ``OUT/compression.png``.
    """

    from sb3_masked_attention.ad.compression import parse_compressor
    from sb3_masked_attention.ad.train import load_ad_model
    from sb3_masked_attention.io import atomic_path, make_dir, write_text_atomic

    compressors = [parse_compressor(text) for text in settings]
    repeats = check_int("repeats", repeats)
    model, meta = load_ad_model(model_path)
    out = make_dir(out)
    goals = env_goals(meta["env_id"], split, meta["env_kwargs"])
    variants: list[tuple[str, str, bool, ContextCompressor | None]] = [
        ("none (key/value cache)", "-", True, None),
        ("none (recomputed)", "-", False, None),
    ] + [(c.name.split(":")[0], c.name, False, c) for c in compressors]
    from tqdm.auto import tqdm

    rows = []
    for strategy, setting, cached, compressor in tqdm(variants, desc="compression settings", unit="setting"):
        results = [
            in_context_returns(
                model,
                meta["env_id"],
                goals,
                episodes,
                meta["env_kwargs"],
                seed=seed + r,
                use_cache=cached,
                compress=compressor,
            )
            for r in range(repeats)
        ]
        returns = np.concatenate([r.returns for r in results])
        rows.append(
            {
                "strategy": strategy,
                "setting": setting,
                "mean_return": float(returns.mean()),
                "last_5_return": float(returns[:, -5:].mean()),
                "ms_per_step": 1000 * float(np.mean([r.seconds_per_step for r in results])),
            }
        )
    table = pd.DataFrame(rows)
    reference = table.iloc[1]
    table["return_change_pct"] = 100 * (table["mean_return"] / reference["mean_return"] - 1)
    table["speedup_vs_recomputed"] = reference["ms_per_step"] / table["ms_per_step"]
    table["speedup_vs_cached"] = table.iloc[0]["ms_per_step"] / table["ms_per_step"]
    with atomic_path(out / "compression.csv") as tmp:
        table.to_csv(tmp, index=False)
    lines = [
        f"# Context compression at inference: AD on {len(goals)} held-out {meta['env_id']} goals",
        "",
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s). "
        f"{episodes} in-context episodes per goal, {repeats} sampling seed(s); model context {model.context_len} tokens. "
        "Return change and speed-up are against the uncompressed model recomputing its window each step (the way "
        "compressed contexts are evaluated); `speedup_vs_cached` compares with the uncompressed model's key/value cache.",
        "",
        "| strategy | setting | mean return | last 5 episodes | change | ms/step | speed-up (vs recomputed) | "
        "speed-up (vs cached) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        lines.append(
            f"| {r.strategy} | `{r.setting}` | {r.mean_return:.2f} | {r.last_5_return:.2f} | {r.return_change_pct:+.1f}% | "
            f"{r.ms_per_step:.2f} | {r.speedup_vs_recomputed:.2f}x | {r.speedup_vs_cached:.2f}x |"
        )
    write_text_atomic(out / "compression.md", "\n".join(lines) + "\n")
    _plot_compression(table, out / "compression.png")
    return table


def _plot_compression(table: pd.DataFrame, path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sb3_masked_attention.io import save_figure

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, r in enumerate(table.itertuples()):
        ax.scatter(r.speedup_vs_recomputed, r.return_change_pct, color=f"C{i % 10}", s=40)
        ax.annotate(
            r.setting if r.setting != "-" else r.strategy,
            (r.speedup_vs_recomputed, r.return_change_pct),
            fontsize=7,
            xytext=(4, 3),
            textcoords="offset points",
        )
    ax.axhline(-5, color="k", ls=":", lw=1, label="-5% return")
    ax.axvline(2, color="k", ls="--", lw=1, label="2x faster")
    ax.set(
        xlabel="speed-up per step vs recomputing the full context",
        ylabel="mean return change (%)",
        title="Compression: speed vs return (AD, held-out goals)",
    )
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
