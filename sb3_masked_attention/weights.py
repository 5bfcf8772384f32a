"""Reading SB3 model files: SB3's own loader (which unpickles, so runs code from the file) and a weights-only path.

An SB3 ``.zip`` holds ``data`` (JSON whose ``:serialized:`` fields are cloudpickle: ``PPO.load`` runs them),
``policy.pth`` and ``policy.optimizer.pth`` (state dicts: tensors and numbers). :func:`load_weights` reads
only the state dicts, with ``torch.load(weights_only=True)``, and the plain JSON counters, into a model the
caller has rebuilt from its own recorded settings: nothing in the file can run. The package uses it wherever it
reads back its own models (multi-scale resume, ``sb3ma evaluate RUN_DIR`` of an ``sb3ma train`` run).
:func:`load_sb3_model` is SB3's loader for any other model: only for files you trust.

VecNormalize statistics are pickles in SB3 and rl-zoo too; :func:`save_normalization` / :func:`load_normalization`
keep them as ``.npz`` arrays instead.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sb3_contrib import MaskablePPO, RecurrentPPO
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

from sb3_masked_attention.io import save_npz
from sb3_masked_attention.transformer_ppo import TransformerMemoryPolicy, TransformerPPO

#: rl-zoo algorithm names, the classes that load their models and the policy family each needs.
ALGORITHMS: dict[str, Any] = {
    "ppo": PPO,
    "a2c": A2C,
    "maskable_ppo": MaskablePPO,
    "ppo_lstm": RecurrentPPO,
    "ppo_tx": TransformerPPO,
}
POLICY_FAMILIES: dict[str, type] = {
    "ppo_tx": TransformerMemoryPolicy,
    "ppo": ActorCriticPolicy,
    "a2c": ActorCriticPolicy,
    "maskable_ppo": MaskableActorCriticPolicy,
    "ppo_lstm": RecurrentActorCriticPolicy,
}
#: Errors a damaged or foreign file raises inside SB3's and torch's loaders.
_LOAD_ERRORS = (AssertionError, AttributeError, EOFError, KeyError, OSError, RuntimeError, TypeError, ValueError)


def _reason(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:120]}" if lines else type(error).__name__


def _family_of(policy: Any) -> str | None:
    for algo in ("ppo_tx", "ppo_lstm", "maskable_ppo", "ppo"):
        if isinstance(policy, POLICY_FAMILIES[algo]):
            return algo
    return None


def load_sb3_model(path: str | os.PathLike, algo: str = "ppo", device: str = "cpu") -> BaseAlgorithm:
    """SB3's loader (``PPO.load`` ...), with one-line errors. It unpickles: use it only on files you trust.

    :param algo: the rl-zoo name of the algorithm that saved the model.
    :raises ValueError: unknown ``algo``, no such file, a damaged file, or a model of another algorithm
        (naming the ``algo`` to use where it can tell).
    """
    if algo not in ALGORITHMS:
        raise ValueError(f"algo={algo!r} is unknown: expected one of {list(ALGORITHMS)}")
    if not Path(path).is_file():
        raise ValueError(f"model file {str(path)!r} does not exist")
    try:
        model = ALGORITHMS[algo].load(path, device=device)
    except (*_LOAD_ERRORS, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        found = _loading_algorithm(path, device, exclude=algo)
        hint = f": it is a {found} model, load it with --algo {found}" if found else ""
        raise ValueError(f"model file {str(path)!r} cannot be loaded as a {algo} model ({_reason(error)}){hint}") from None
    found = _family_of(model.policy)
    narrower = found is not None and POLICY_FAMILIES[found] is not POLICY_FAMILIES[algo]  # a TransformerPPO read as PPO
    if not isinstance(model.policy, POLICY_FAMILIES[algo]) or (narrower and algo in ("ppo", "a2c")):
        hint = f": load it with --algo {found}" if found else ""
        raise ValueError(f"model file {str(path)!r} holds a {type(model.policy).__name__}, not a {algo} policy{hint}")
    return model


def _loading_algorithm(path: str | os.PathLike, device: str, exclude: str) -> str | None:
    """The first other algorithm whose loader reads ``path`` into a policy of its family (for the hint)."""
    for algo, algorithm in ALGORITHMS.items():
        if algo == exclude:
            continue
        try:
            if isinstance(algorithm.load(path, device=device).policy, POLICY_FAMILIES[algo]):
                return algo
        except (*_LOAD_ERRORS, pickle.UnpicklingError, zipfile.BadZipFile):
            continue
    return None


def _zip_member(archive: zipfile.ZipFile, name: str, path: Path) -> bytes:
    try:
        return archive.read(name)
    except KeyError:
        raise ValueError(f"model file {str(path)!r} has no {name!r}: expected an SB3 model .zip") from None


def saved_timesteps(path: str | os.PathLike) -> int:
    """``num_timesteps`` of an SB3 ``.zip``, from the plain JSON of its ``data`` (nothing unpickled)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            return int(json.loads(_zip_member(archive, "data", path)).get("num_timesteps", 0))
    except (zipfile.BadZipFile, json.JSONDecodeError, OSError, TypeError) as error:  # _zip_member's ValueError passes
        raise ValueError(f"model file {str(path)!r} is not a readable SB3 model ({type(error).__name__})") from None


def load_weights(model: BaseAlgorithm, path: str | os.PathLike) -> BaseAlgorithm:
    """Put the weights (and optimizer state and step counters) of the SB3 ``.zip`` at ``path`` into ``model``,
    without unpickling anything: ``policy.pth`` / ``policy.optimizer.pth`` with ``weights_only=True`` and the
    plain numbers of ``data``.

    :param model: built as the saved one was (same algorithm, policy, spaces and sizes).
    :raises ValueError: not a readable SB3 zip, or weights that do not fit ``model``.
    """
    path = Path(path)
    data, policy = _read_policy_file(path)
    try:
        with zipfile.ZipFile(path) as archive:
            optimizer = (
                torch.load(io.BytesIO(archive.read("policy.optimizer.pth")), map_location="cpu", weights_only=True)
                if "policy.optimizer.pth" in archive.namelist()
                else None
            )
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, RuntimeError, OSError) as error:
        raise ValueError(
            f"model file {str(path)!r} is not a readable SB3 model ({type(error).__name__}); nothing in it was run"
        ) from None
    try:
        model.policy.load_state_dict(policy)
        if optimizer is not None:
            model.policy.optimizer.load_state_dict(optimizer)
    except (RuntimeError, ValueError, KeyError) as error:
        raise ValueError(
            f"model file {str(path)!r} does not fit the model rebuilt from its settings ({_reason(error)})"
        ) from None
    model.num_timesteps = int(data.get("num_timesteps", 0))
    model._n_updates = int(data.get("_n_updates", 0))  # type: ignore[attr-defined]
    return model


def _read_policy_file(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The plain JSON ``data`` and the ``policy.pth`` state dict of an SB3 zip (weights only, nothing unpickled)."""
    if not path.is_file():
        raise ValueError(f"model file {str(path)!r} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            data = json.loads(_zip_member(archive, "data", path))
            policy = torch.load(io.BytesIO(_zip_member(archive, "policy.pth", path)), map_location="cpu", weights_only=True)
    except (zipfile.BadZipFile, pickle.UnpicklingError, json.JSONDecodeError, EOFError, RuntimeError, OSError) as error:
        raise ValueError(
            f"model file {str(path)!r} is not a readable SB3 model ({type(error).__name__}); nothing in it was run"
        ) from None
    return data, policy


def saved_policy_kwargs(path: str | os.PathLike) -> dict[str, Any]:
    """The ``policy_kwargs`` an SB3 ``.zip`` was built with, from the plain JSON of ``data`` (nothing unpickled).

    :raises ValueError: not a readable SB3 zip, or ``policy_kwargs`` stored only as a pickle (classes, functions).
    """
    data, _ = _read_policy_file(Path(path))
    kwargs = data.get("policy_kwargs", {})
    if not isinstance(kwargs, dict) or ":serialized:" in kwargs:
        raise ValueError(
            f"model file {str(path)!r} stores its policy_kwargs as a pickle: expected plain JSON (names, numbers, lists)"
        )
    return kwargs


Adapter = Callable[[str, torch.Tensor, torch.Tensor], "torch.Tensor | None"]


def load_matching_weights(model: BaseAlgorithm, path: str | os.PathLike, adapt: Adapter | None = None) -> dict[str, list[str]]:
    """Start ``model``'s policy from the weights of another SB3 ``.zip`` whose shapes may partly differ
    (a curriculum: the same network on a larger game). Weights only (nothing unpickled); the optimizer and the
    step counters stay fresh.

    Every parameter of ``model`` whose name and shape match the file's is copied. For a parameter whose shape
    differs, ``adapt(name, saved, current)`` may return a tensor of the current shape built from the saved one;
    otherwise the parameter keeps its fresh initialisation.

    :return: ``{"copied": [...], "adapted": [...], "fresh": [...]}`` (parameter names).
    :raises ValueError: not a readable SB3 zip, or no parameter in common.
    """
    path = Path(path)
    _, saved = _read_policy_file(path)
    state = model.policy.state_dict()
    report: dict[str, list[str]] = {"copied": [], "adapted": [], "fresh": []}
    for name, current in state.items():
        tensor = saved.get(name)
        if tensor is not None and tensor.shape == current.shape:
            state[name] = tensor
            report["copied"].append(name)
            continue
        adapted = adapt(name, tensor, current) if (adapt is not None and tensor is not None) else None
        if adapted is not None and adapted.shape == current.shape:
            state[name] = adapted
            report["adapted"].append(name)
        else:
            report["fresh"].append(name)
    if not report["copied"]:
        raise ValueError(f"model file {str(path)!r} shares no parameter with this model: expected the same policy network")
    model.policy.load_state_dict(state)
    return report


def save_normalization(normalize: VecNormalize, path: str | os.PathLike) -> None:
    """VecNormalize statistics and settings as ``.npz`` arrays + JSON (read back by :func:`load_normalization`)."""
    obs_rms = normalize.obs_rms
    stats = obs_rms.items() if isinstance(obs_rms, dict) else [("obs", obs_rms)]
    arrays = {"ret_mean": np.asarray(normalize.ret_rms.mean), "ret_var": np.asarray(normalize.ret_rms.var)}
    for key, rms in stats:
        arrays[f"obs_mean__{key}"], arrays[f"obs_var__{key}"] = np.asarray(rms.mean), np.asarray(rms.var)
    meta = {
        "obs_count": {key: float(rms.count) for key, rms in stats},
        "ret_count": float(normalize.ret_rms.count),
        "dict_obs": isinstance(obs_rms, dict),
        "settings": {
            "norm_obs": bool(normalize.norm_obs),
            "norm_reward": bool(normalize.norm_reward),
            "clip_obs": float(normalize.clip_obs),
            "clip_reward": float(normalize.clip_reward),
            "gamma": float(normalize.gamma),
            "epsilon": float(normalize.epsilon),
            "norm_obs_keys": list(normalize.norm_obs_keys) if normalize.norm_obs_keys is not None else None,
        },
    }
    save_npz(path, arrays, meta)


def _read_normalization(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    from sb3_masked_attention.io import load_npz

    what, made_by = "normalisation file", "sb3ma train --output-dir"
    arrays, meta = load_npz(path, ("ret_mean", "ret_var"), what, made_by)
    if meta is None or "settings" not in meta:
        raise ValueError(f"{what} {str(path)!r} lacks its settings: expected a file written by `{made_by}`")
    return arrays, meta


def load_normalization(venv: VecEnv, path: str | os.PathLike) -> VecNormalize:
    """``venv`` wrapped in a frozen VecNormalize (raw rewards) with the statistics of :func:`save_normalization`.

    :raises ValueError: not such a file, or statistics of other observation keys.
    """
    normalize = VecNormalize(venv, training=False, **_read_normalization(path)[1]["settings"])
    restore_normalization(normalize, path)
    normalize.norm_reward = False  # evaluation reports raw returns
    return normalize


def restore_normalization(normalize: VecNormalize, path: str | os.PathLike) -> None:
    """Put the statistics of :func:`save_normalization` into an existing ``normalize`` (no pickle)."""
    arrays, meta = _read_normalization(path)
    what = "normalisation file"
    obs_rms = normalize.obs_rms
    targets = obs_rms if isinstance(obs_rms, dict) else {"obs": obs_rms}
    if sorted(targets) != sorted(meta["obs_count"]):
        raise ValueError(f"{what} {str(path)!r} normalises {sorted(meta['obs_count'])}, this env {sorted(targets)}")
    for key, rms in targets.items():
        rms.mean, rms.var, rms.count = arrays[f"obs_mean__{key}"], arrays[f"obs_var__{key}"], meta["obs_count"][key]
    normalize.ret_rms.mean, normalize.ret_rms.var = arrays["ret_mean"], arrays["ret_var"]
    normalize.ret_rms.count = meta["ret_count"]


def load_vecnormalize(venv: VecEnv, path: str | os.PathLike) -> VecNormalize:
    """Frozen VecNormalize statistics for evaluation: a ``.npz`` of :func:`save_normalization` (safe), else an
    SB3 / rl-zoo ``vecnormalize.pkl`` (a pickle: it runs code, use only files you trust)."""
    if not Path(path).is_file():
        raise ValueError(f"VecNormalize file {str(path)!r} does not exist")
    if str(path).endswith(".npz"):
        return load_normalization(venv, path)
    try:
        normalize = VecNormalize.load(str(path), venv)
    except (*_LOAD_ERRORS, pickle.UnpicklingError, ImportError) as error:
        raise ValueError(f"VecNormalize file {str(path)!r} is not readable ({_reason(error)})") from None
    if not isinstance(normalize, VecNormalize):
        raise ValueError(f"VecNormalize file {str(path)!r} holds a {type(normalize).__name__}, not VecNormalize statistics")
    normalize.training, normalize.norm_reward = False, False
    return normalize
