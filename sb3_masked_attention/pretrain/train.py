"""``sb3ma pretrain``: collect history windows, train a :class:`HeadMaskedTransformerExtractor` trunk with
self-supervised objectives, save it for :func:`load_pretrained_extractor`.

Read top to bottom: windows come from a :class:`HistoryWrapper` env driven by a uniformly random policy
(or a saved SB3 model, or a saved window dataset); each update draws a batch of windows, sums the chosen
objectives' losses (:mod:`sb3_masked_attention.pretrain.objectives`), clips gradients and steps AdamW.
Every loss is logged to TensorBoard; the trunk and its configuration are written atomically at the end.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from tqdm.auto import tqdm

from sb3_masked_attention.extractors.transformer import HeadMaskedTransformerExtractor
from sb3_masked_attention.extractors.trunk import save_extractor
from sb3_masked_attention.io import load_npz, save_npz
from sb3_masked_attention.pretrain.objectives import OBJECTIVES, Objective, TokenLayout, make_objectives
from sb3_masked_attention.runs import RunDir, check_update_memory, input_identity, warmup_cosine
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
    from sb3_masked_attention.environments import make_history_vec_env

    steps, n_envs = check_int("steps", steps), check_int("n_envs", n_envs)
    venv = make_history_vec_env(env_id, history_len=history_len, n_envs=n_envs, seed=seed, env_kwargs=env_kwargs)
    model: BaseAlgorithm | None = None
    if model_path is not None:
        from sb3_masked_attention.weights import load_sb3_model

        model = load_sb3_model(model_path)
    venv.action_space.seed(seed)
    obs: Any = venv.reset()
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


@dataclass(frozen=True)
class PretrainConfig:
    """``sb3ma pretrain``: what is learned and how (the trunk's architecture: ``extractor_kwargs``, whose defaults
    are :class:`HeadMaskedTransformerExtractor`'s).

    :param objectives: any of ``inverse_dynamics``, ``masked_reconstruction``, ``forward_dynamics`` (losses summed).
    :param updates: gradient updates (a larger value on resume trains on).
    :param collect_steps: environment steps (windows) to collect for training.
    :param history_len: window length; must match the PPO model it will be loaded into.
    :param inverse_horizon: inverse dynamics predicts ``a_t`` at step ``t + H`` (2 for Euler-integrated physics).
    :param normalize_keys: window keys to standardise as the PPO run's ``VecNormalize`` will (per element of the
        window, clipped at 10), e.g. ``("obs", "prev_reward")``.
    :param batch_size: windows per update.
    :param learning_rate: AdamW learning rate.
    :param schedule: ``"constant"`` or ``"cosine"`` (5% warm-up, then cosine decay).
    :param val_fraction: validation windows, as a share of ``collect_steps`` (collected from envs seeded apart; with a
        saved dataset, its last windows).
    :param eval_every: updates between validations and checkpoints.
    :param seed: seeds the collection, the initialisation and the batches.
    """

    objectives: tuple[str, ...] = OBJECTIVES
    updates: int = 2000
    collect_steps: int = 20_000
    history_len: int = 16
    inverse_horizon: int = 1
    normalize_keys: tuple[str, ...] = ()
    batch_size: int = 64
    learning_rate: float = 3e-4
    schedule: str = "constant"
    val_fraction: float = 0.1
    eval_every: int = 250
    seed: int = 0


def _standardize(parts: list[dict[str, np.ndarray]], keys: tuple[str, ...]) -> None:
    """Standardise ``keys`` of every part with the first part's (the training windows') statistics."""
    for key in keys:
        if key not in parts[0]:
            raise ValueError(f"normalize_keys: {key!r} is not a window key: expected some of {sorted(parts[0])}")
        mean, var = parts[0][key].mean(axis=0), parts[0][key].var(axis=0)
        for part in parts:
            if part:
                part[key] = np.clip((part[key] - mean) / np.sqrt(var + 1e-8), -10.0, 10.0).astype(np.float32)


def pretrain(
    out: str | os.PathLike,
    env_id: str | None = None,
    config: PretrainConfig | None = None,
    *,
    env_kwargs: dict[str, Any] | None = None,
    model_path: str | None = None,
    dataset: str | os.PathLike | None = None,
    save_data: str | os.PathLike | None = None,
    extractor_kwargs: dict[str, Any] | None = None,
    objective_options: dict[str, dict[str, Any]] | None = None,
    progress: bool = True,
    **overrides: Any,
) -> HeadMaskedTransformerExtractor:
    """Pretrain a trunk and save it to ``out`` (a ``.pt`` file); the run folder ``<out without .pt>.run/`` holds the
    settings, the resumable checkpoint and TensorBoard logs (rerunning resumes).

    :param out: the saved trunk (read by :func:`load_pretrained_extractor`).
    :param env_id: environment to collect from (not needed with ``dataset``).
    :param config: objectives and optimisation (default :class:`PretrainConfig`); ``overrides`` replace its fields.
    :param model_path: collect with this SB3 model instead of a random policy.
    :param dataset: train on saved windows instead of collecting.
    :param save_data: also write the collected training windows here.
    :param extractor_kwargs: :class:`HeadMaskedTransformerExtractor` arguments (``d_model``, ``n_layers``, ...); must
        match the PPO model's ``features_extractor_kwargs``.
    :param objective_options: keyword arguments per objective, e.g. ``{"inverse_dynamics": {"horizon": 2}}``
        (``inverse_horizon`` sets that one).
    """
    config = replace(config or PretrainConfig(), **overrides)
    updates, batch_size = check_int("updates", config.updates), check_int("batch_size", config.batch_size)
    eval_every, seed = check_int("eval_every", config.eval_every), config.seed
    if config.schedule not in ("constant", "cosine"):
        raise ValueError(f"schedule={config.schedule!r} is unknown: expected 'constant' or 'cosine'")
    if not 0.0 <= config.val_fraction < 1.0:
        raise ValueError(f"val_fraction={config.val_fraction!r} is invalid: expected a number in [0, 1)")
    if dataset is None and env_id is None:
        raise ValueError("pretrain needs env_id (to collect windows) or dataset (saved windows)")
    extractor_kwargs = dict(extractor_kwargs or {})
    options = {"inverse_dynamics": {"horizon": config.inverse_horizon}, **(objective_options or {})}
    settings = {
        "env_id": env_id,
        "env_kwargs": env_kwargs or {},
        "model_path": input_identity(model_path, "model"),
        "dataset": input_identity(dataset, "window dataset"),
        **asdict(config),
        "extractor_kwargs": extractor_kwargs,
        "objective_options": options,
    }
    settings.pop("eval_every")
    run = RunDir(Path(out).with_suffix(".run"), settings, grow=("updates",))

    torch.manual_seed(seed)
    if env_id is None:  # a saved dataset (checked above)
        assert dataset is not None
        windows, discrete = load_windows(dataset)
        n_val = int(len(windows[VALID_KEY]) * config.val_fraction)
        split = len(windows[VALID_KEY]) - n_val
        val_windows = {key: value[split:] for key, value in windows.items()}
        windows = {key: value[:split] for key, value in windows.items()}
    else:
        windows, _, action_space = collect_windows(
            env_id, config.history_len, config.collect_steps, env_kwargs, model_path, seed=seed, progress=progress
        )
        discrete = isinstance(action_space, spaces.Discrete)
        if save_data is not None:
            save_windows(windows, action_space, save_data)
    extractor = HeadMaskedTransformerExtractor(window_space(windows), **extractor_kwargs)
    d_model, n_layers, n_heads, ff_dim = (
        int(cast(int, extractor.config[key])) for key in ("d_model", "n_layers", "n_heads", "ff_dim")
    )
    check_update_memory(batch_size, config.history_len, d_model, n_layers, n_heads, ff_dim)
    slices = extractor.token_slices()
    layout = TokenLayout(obs=slices[OBS_KEY], action=slices[ACTION_KEY], discrete_action=discrete)
    heads = make_objectives(list(config.objectives), int(cast(int, extractor.config["d_model"])), layout, options)
    if (
        env_id is not None and dataset is None
    ):  # collected after the model is built, so the training run is the same with or without it
        n_val = int(config.collect_steps * config.val_fraction)
        val_windows = (
            collect_windows(env_id, config.history_len, n_val, env_kwargs, model_path, seed=seed + 10_000, progress=False)[0]
            if n_val
            else {}
        )
    _standardize([windows, val_windows], tuple(config.normalize_keys))
    trainee = torch.nn.ModuleDict({"extractor": extractor, "objectives": heads})
    optimizer = torch.optim.AdamW(trainee.parameters(), lr=config.learning_rate, weight_decay=0.01)
    schedule = warmup_cosine(optimizer, *((updates // 20, updates) if config.schedule == "cosine" else (0, 0)))
    tensors = {key: torch.as_tensor(value) for key, value in windows.items()}
    val_tensors = {key: torch.as_tensor(value) for key, value in val_windows.items()}
    n = len(tensors[VALID_KEY])
    _check_learnable(heads, tensors, n, config.history_len)
    if val_tensors:
        _check_learnable(heads, val_tensors, len(val_tensors[VALID_KEY]), config.history_len, "validation")
    generator = torch.Generator().manual_seed(seed)
    start = 0
    state = run.load_state(trainee, optimizer, schedule)
    if state is not None:
        start = state["update"]
        generator.set_state(torch.tensor(state["generator"], dtype=torch.uint8))

    def losses_of(batch: dict[str, torch.Tensor], rng: torch.Generator) -> dict[str, torch.Tensor]:
        tokens, valid = extractor.tokens(batch), batch[VALID_KEY]
        encode = lambda tokens, valid: extractor.encode(tokens, valid)[0]  # noqa: E731
        return {name: objective(encode, tokens, valid, batch.get(EPISODE_START_KEY), rng) for name, objective in heads.items()}

    writer = run.writer(done=start)
    trainee.train()
    for update in tqdm(
        range(start, updates), initial=start, total=updates, desc="pretraining", unit="update", disable=not progress
    ):
        index = torch.randint(n, (batch_size,), generator=generator)
        losses = losses_of({key: value[index] for key, value in tensors.items()}, generator)
        total = torch.stack(list(losses.values())).sum()
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(list(trainee.parameters()), 1.0)
        optimizer.step()
        schedule.step()
        for name, loss in losses.items():
            writer.add_scalar(f"pretrain/{name}", loss.item(), update + 1)
        writer.add_scalar("pretrain/total", total.item(), update + 1)
        if (update + 1) % eval_every == 0 or update + 1 == updates:
            if val_tensors:
                for name, value in validation_losses(trainee, val_tensors, losses_of, seed).items():
                    writer.add_scalar(f"val/{name}", value, update + 1)
            run.save_state(trainee, optimizer, schedule, update=update + 1, generator=generator.get_state().tolist())
    writer.close()
    extractor.eval()
    save_extractor(extractor, out)
    run.close()
    return extractor


@torch.no_grad()
def _check_learnable(
    heads: torch.nn.ModuleDict, tensors: dict[str, torch.Tensor], n: int, history_len: int, split: str = "training"
) -> None:
    """Refuse, before any update, objectives with no step to learn from in the training windows: their loss would be
    NaN at every update and the trunk written as if trained."""
    if n == 0:
        raise ValueError(f"pretraining has no {split} windows: collect more steps (--collect-steps) or change --val-fraction")
    for name, module in heads.items():
        objective = cast(Objective, module)
        count = int(objective.eligible(tensors[VALID_KEY], tensors.get(EPISODE_START_KEY)).sum())
        if count == 0:
            raise ValueError(
                f"objective {name!r} has no step to learn from in the {n} {split} windows (history_len={history_len}): "
                f"it needs {objective.needs}; use longer windows (--history-len), more steps or another objective"
            )


@torch.no_grad()
def validation_losses(
    trainee: torch.nn.Module, windows: dict[str, torch.Tensor], losses_of: Any, seed: int
) -> dict[str, float]:
    """Mean objective losses over ``windows`` in eval mode, with a fixed masking seed (comparable across updates)."""
    trainee.eval()
    rng = torch.Generator().manual_seed(seed + 1)
    n, totals = len(windows[VALID_KEY]), cast(dict[str, float], {})
    for start in range(0, n, 256):
        batch = {key: value[start : start + 256] for key, value in windows.items()}
        for name, loss in losses_of(batch, rng).items():
            totals[name] = totals.get(name, 0.0) + float(loss) * len(batch[VALID_KEY])
    trainee.train()
    return {name: value / n for name, value in totals.items()}
