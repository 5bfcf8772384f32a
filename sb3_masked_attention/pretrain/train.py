"""``sb3ma pretrain``: collect history windows, train a :class:`HeadMaskedTransformerExtractor` trunk with
self-supervised objectives, save it for :func:`load_pretrained_extractor`.

Read top to bottom: windows come from a :class:`HistoryWrapper` env driven by a uniformly random policy
(or a saved SB3 model, or a saved window dataset); each update draws a batch of windows, sums the chosen
objectives' losses (:mod:`sb3_masked_attention.pretrain.objectives`), clips gradients and steps AdamW.
Every loss is logged to TensorBoard; the trunk and its configuration are written atomically at the end.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from tqdm.auto import tqdm

from sb3_masked_attention.extractors.transformer import HeadMaskedTransformerExtractor
from sb3_masked_attention.io import load_npz, save_npz
from sb3_masked_attention.pretrain.handover import save_extractor
from sb3_masked_attention.pretrain.objectives import TokenLayout, make_objectives
from sb3_masked_attention.validation import check_int
from sb3_masked_attention.wrappers import ACTION_KEY, EPISODE_START_KEY, OBS_KEY, VALID_KEY


def collect_windows(
    env_id: str,
    history_len: int,
    steps: int,
    env_kwargs: dict[str, Any] | None = None,
    model_path: str | None = None,
    n_envs: int = 8,
    seed: int = 0,
    progress: bool = True,
) -> tuple[dict[str, np.ndarray], gym.Space, gym.Space]:
    """``steps`` history windows (one per env step) from a random policy, or from the SB3 model at ``model_path``.

    :return: the windows ``{key: (steps, history_len, ...)}``, the window observation space and the action space.
    """
    from stable_baselines3.common.base_class import BaseAlgorithm

    import envs  # noqa: F401  (registers the sb3ma/ ids)
    from sb3_masked_attention.training import make_history_vec_env

    steps, n_envs = check_int("steps", steps), check_int("n_envs", n_envs)
    venv = make_history_vec_env(env_id, history_len=history_len, n_envs=n_envs, seed=seed, env_kwargs=env_kwargs)
    model: BaseAlgorithm | None = None
    if model_path is not None:
        from sb3_masked_attention.evaluation.model_eval import load_model

        model = load_model(model_path)
    venv.action_space.seed(seed)
    obs = venv.reset()
    rows: dict[str, list[np.ndarray]] = {key: [] for key in obs}
    collected = 0
    with tqdm(total=steps, desc="collecting windows", unit="step", disable=not progress) as bar:
        while collected < steps:  # (a disabled tqdm does not count)
            for key, value in obs.items():
                rows[key].append(value)
            if model is None:
                actions = np.array([venv.action_space.sample() for _ in range(venv.num_envs)])
            else:
                actions, _ = model.predict(obs, deterministic=False)
            obs, _, _, _ = venv.step(actions)
            collected += venv.num_envs
            bar.update(venv.num_envs)
    windows = {key: np.concatenate(values)[:steps].astype(np.float32) for key, values in rows.items()}
    spaces_ = (venv.observation_space, venv.action_space)
    venv.close()
    return windows, *spaces_


def save_windows(windows: dict[str, np.ndarray], action_space: gym.Space, path: str | os.PathLike) -> None:
    """Write collected windows (and whether actions are discrete) to an ``.npz`` atomically."""
    save_npz(path, {**windows, "discrete_action": np.array(isinstance(action_space, spaces.Discrete))})


def load_windows(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], bool]:
    """Read windows written by :func:`save_windows` and whether their actions are discrete."""
    arrays, _ = load_npz(
        path, (OBS_KEY, ACTION_KEY, VALID_KEY, "discrete_action"), "window dataset", "sb3ma pretrain --save-data"
    )
    discrete = bool(arrays.pop("discrete_action"))
    return arrays, discrete


def window_space(windows: dict[str, np.ndarray]) -> spaces.Dict:
    """The HistoryWrapper observation space matching saved windows (bounds are not used by the extractor)."""
    return spaces.Dict({key: spaces.Box(-np.inf, np.inf, value.shape[1:], dtype=np.float32) for key, value in windows.items()})


def pretrain(
    out: str | os.PathLike,
    env_id: str | None = None,
    objectives: tuple[str, ...] = ("inverse_dynamics", "masked_reconstruction", "forward_dynamics"),
    updates: int = 2000,
    collect_steps: int = 20_000,
    history_len: int = 16,
    env_kwargs: dict[str, Any] | None = None,
    model_path: str | None = None,
    dataset: str | os.PathLike | None = None,
    save_data: str | os.PathLike | None = None,
    extractor_kwargs: dict[str, Any] | None = None,
    objective_options: dict[str, dict[str, Any]] | None = None,
    normalize_keys: tuple[str, ...] = (),
    batch_size: int = 64,
    learning_rate: float = 3e-4,
    seed: int = 0,
    progress: bool = True,
) -> HeadMaskedTransformerExtractor:
    """Pretrain a trunk and save it to ``out`` (a ``.pt`` file; TensorBoard logs in ``<out>.tensorboard/``).

    :param out: the saved trunk (read by :func:`load_pretrained_extractor`).
    :param env_id: environment to collect from (not needed with ``dataset``).
    :param objectives: any of ``inverse_dynamics``, ``masked_reconstruction``, ``forward_dynamics`` (losses summed).
    :param updates: gradient updates.
    :param collect_steps: environment steps (windows) to collect.
    :param history_len: window length; must match the PPO model it will be loaded into.
    :param model_path: collect with this SB3 model instead of a random policy.
    :param dataset: train on saved windows instead of collecting.
    :param save_data: also write the collected windows here.
    :param extractor_kwargs: :class:`HeadMaskedTransformerExtractor` arguments (``d_model``, ``n_layers``, ...); must
        match the PPO model's ``features_extractor_kwargs``.
    :param objective_options: keyword arguments per objective, e.g. ``{"inverse_dynamics": {"horizon": 2}}``.
    :param normalize_keys: window keys to standardise as the PPO run's ``VecNormalize`` will (per element of the
        window, clipped at 10), e.g. ``("obs", "prev_reward")`` for an rl-zoo entry with
        ``normalize: "dict(norm_obs_keys=['obs', 'prev_reward'])"``; the trunk then sees inputs on the scale it
        will see during fine-tuning.
    """
    from torch.utils.tensorboard import SummaryWriter

    updates, batch_size = check_int("updates", updates), check_int("batch_size", batch_size)
    torch.manual_seed(seed)
    if dataset is not None:
        windows, discrete = load_windows(dataset)
    else:
        if env_id is None:
            raise ValueError("pretrain needs env_id (to collect windows) or dataset (saved windows)")
        windows, _, action_space = collect_windows(
            env_id, history_len, collect_steps, env_kwargs, model_path, seed=seed, progress=progress
        )
        discrete = isinstance(action_space, spaces.Discrete)
        if save_data is not None:
            save_windows(windows, action_space, save_data)
    for key in normalize_keys:
        if key not in windows:
            raise ValueError(f"normalize_keys: {key!r} is not a window key: expected some of {sorted(windows)}")
        mean, var = windows[key].mean(axis=0), windows[key].var(axis=0)
        windows[key] = np.clip((windows[key] - mean) / np.sqrt(var + 1e-8), -10.0, 10.0).astype(np.float32)
    extractor = HeadMaskedTransformerExtractor(window_space(windows), **(extractor_kwargs or {}))
    slices = extractor.token_slices()
    layout = TokenLayout(obs=slices[OBS_KEY], action=slices[ACTION_KEY], discrete_action=discrete)
    heads = make_objectives(list(objectives), extractor.config["d_model"], layout, objective_options)
    parameters = list(extractor.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.01)
    tensors = {key: torch.as_tensor(value) for key, value in windows.items()}
    n = len(tensors[VALID_KEY])
    generator = torch.Generator().manual_seed(seed)
    encode = lambda tokens, valid: extractor.encode(tokens, valid)[0]  # noqa: E731
    writer = SummaryWriter(str(Path(f"{out}.tensorboard")))
    extractor.train()
    for update in tqdm(range(updates), desc="pretraining", unit="update", disable=not progress):
        index = torch.randint(n, (batch_size,), generator=generator)
        batch = {key: value[index] for key, value in tensors.items()}
        tokens, valid = extractor.tokens(batch), batch[VALID_KEY]
        starts = batch.get(EPISODE_START_KEY)
        losses = {name: objective(encode, tokens, valid, starts, generator) for name, objective in heads.items()}
        total = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        for name, loss in losses.items():
            writer.add_scalar(f"pretrain/{name}", loss.item(), update + 1)
        writer.add_scalar("pretrain/total", total.item(), update + 1)
    writer.close()
    extractor.eval()
    save_extractor(extractor, out)
    return extractor
