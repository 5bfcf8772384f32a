"""Evaluate one saved model over several seeds, and ablate its attention heads one at a time.

Head ablation zeroes one head's output (its slice of the attention output, before the output
projection) in every layer, or in one layer, and measures the return drop: which heads the policy
relies on. Heads of the same index share one mask window in every layer, so ``layer="all"`` rows
read directly as "the policy without the heads that see this much history".
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pandas as pd
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv

from sb3_masked_attention.environments import register_envs
from sb3_masked_attention.episodes import play_episodes
from sb3_masked_attention.extractors.transformer import HeadMaskedTransformerExtractor
from sb3_masked_attention.io import atomic_path
from sb3_masked_attention.policies import features_extractors
from sb3_masked_attention.validation import check_int
from sb3_masked_attention.weights import load_sb3_model, load_vecnormalize
from sb3_masked_attention.wrappers import EPISODE_START_KEY, VALID_KEY, HistoryWrapper


def make_eval_env(
    model: BaseAlgorithm,
    env_id: str,
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
    vecnormalize: str | os.PathLike | None = None,
) -> VecEnv:
    """One env like the model's: wrapped in :class:`HistoryWrapper` when its observation space is a
    history window (length and ``across_episodes`` read from the space), with frozen VecNormalize
    statistics when given (``vecnormalize.npz`` of ``sb3ma train``, or an rl-zoo ``vecnormalize.pkl``: a pickle)."""
    register_envs()
    space = model.observation_space
    wrapper, wrapper_kwargs = None, None
    if hasattr(space, "spaces") and VALID_KEY in space.spaces:
        wrapper = HistoryWrapper
        wrapper_kwargs = {
            "history_len": space.spaces[VALID_KEY].shape[0],
            "across_episodes": EPISODE_START_KEY in space.spaces,
        }
    env = make_vec_env(
        env_id, n_envs=1, seed=seed, env_kwargs=env_kwargs, wrapper_class=wrapper, wrapper_kwargs=wrapper_kwargs
    )
    return env if vecnormalize is None else load_vecnormalize(env, vecnormalize)


def transformer_of(model: BaseAlgorithm) -> HeadMaskedTransformerExtractor:
    """The model's (actor's) head-masked transformer extractor; ValueError if it has none."""
    return cast(HeadMaskedTransformerExtractor, features_extractors(model.policy, HeadMaskedTransformerExtractor)[0])


@contextlib.contextmanager
def ablate_head(extractor: HeadMaskedTransformerExtractor, head: int, layer: int | None = None) -> Iterator[None]:
    """Zero ``head``'s output in ``layer`` (None: every layer) for the duration of the block."""
    attentions = extractor.attentions()
    head_dim = attentions[0].head_dim
    columns = slice(head * head_dim, (head + 1) * head_dim)

    def zero_head(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        heads = args[0].clone()
        heads[..., columns] = 0.0
        return (heads, *args[1:])

    layers = range(len(attentions)) if layer is None else [layer]
    hooks = [attentions[i].out_proj.register_forward_pre_hook(zero_head) for i in layers]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def evaluate_model(
    model_path: str | os.PathLike,
    env_id: str | None = None,
    *,
    episodes: int = 20,
    seeds: Sequence[int] = (0, 1, 2),
    algo: str = "ppo",
    env_kwargs: dict[str, Any] | None = None,
    vecnormalize: str | os.PathLike | None = None,
    ablate_heads: bool = False,
    out: str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Mean return of ``episodes`` deterministic episodes per seed; with ``ablate_heads`` also per ablated
    head (every layer, then each layer) and its drop from the intact model. Written to ``out`` (CSV) if given.

    Columns: ``seed, ablated_head, layer, mean_return, drop`` (``ablated_head`` -1 = intact model;
    ``layer`` "all" or the layer index as text).

    :param model_path: an SB3 ``.zip`` (loaded by SB3, which unpickles: only files you trust), or the
        ``--output-dir`` of ``sb3ma train`` (rebuilt from its settings, weights only; its env, env kwargs and
        ``vecnormalize.npz`` are the defaults).
    :param env_id: the env (required for a ``.zip``).
    """
    episodes = check_int("episodes", episodes)
    if not seeds:
        raise ValueError("seeds is empty: expected at least one seed")
    if Path(model_path).is_dir():
        from sb3_masked_attention.training import load_trained, trained_settings

        settings = trained_settings(model_path)
        model: BaseAlgorithm = load_trained(model_path).model
        env_id = env_id or settings["env_id"]
        env_kwargs = settings["env_kwargs"] if env_kwargs is None else env_kwargs
        stats = Path(model_path) / "vecnormalize.npz"
        vecnormalize = stats if vecnormalize is None and stats.is_file() else vecnormalize
    else:
        if env_id is None:
            raise ValueError(f"env_id is needed to evaluate {str(model_path)!r} (a model file, not an sb3ma train folder)")
        model = load_sb3_model(model_path, algo)
    variants: list[tuple[int, int | None]] = [(-1, None)]
    if ablate_heads:
        extractor = transformer_of(model)
        n_heads, n_layers = extractor.attentions()[0].n_heads, len(extractor.attentions())
        variants += [(h, None) for h in range(n_heads)]
        if n_layers > 1:
            variants += [(h, layer) for layer in range(n_layers) for h in range(n_heads)]
    rows = []
    for seed in seeds:
        for head, layer in variants:
            env = make_eval_env(model, env_id, int(seed), env_kwargs, vecnormalize)
            with ablate_head(transformer_of(model), head, layer) if head >= 0 else contextlib.nullcontext():
                score = play_episodes(model, env, episodes).mean
            env.close()
            rows.append(
                {
                    "seed": int(seed),
                    "ablated_head": head,
                    "layer": "all" if layer is None else str(layer),
                    "mean_return": score,
                }
            )
    table = pd.DataFrame(rows)
    intact = table[table["ablated_head"] == -1].set_index("seed")["mean_return"]
    table["drop"] = intact.loc[table["seed"]].to_numpy() - table["mean_return"].to_numpy()
    if out is not None:
        with atomic_path(out) as tmp:
            table.to_csv(tmp, index=False)
    return table


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per variant (intact model first)."""
    return table.groupby(["ablated_head", "layer"], sort=False)[["mean_return", "drop"]].agg(["mean", "std"]).reset_index()
