"""Build models from rl-zoo YAML entries exactly as ``python -m rl_zoo3.train`` would.

Benchmarks and studies describe a method as "an rl-zoo entry plus overrides"; this module hands
that to rl-zoo's own ``ExperimentManager`` (schedules, ``env_wrapper``, ``normalize``,
``frame_stack``, ``policy_kwargs`` strings ...) so there is one interpretation of the YAML.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

#: The project's rl-zoo hyperparameters for PPO.
PROJECT_PPO_CONFIG = Path(__file__).resolve().parents[1] / "zoo_configs" / "ppo.yml"


def rl_zoo_config(algo: str) -> Path:
    """Path of rl-zoo's own tuned hyperparameter file for ``algo`` (e.g. ``"ppo_lstm"``)."""
    import rl_zoo3

    path = Path(rl_zoo3.__file__).parent / "hyperparams" / f"{algo}.yml"
    if not path.exists():
        raise ValueError(f"rl-zoo has no hyperparameter file for algo={algo!r} (looked for {path})")
    return path


def zoo_entry(conf_file: str | os.PathLike, env_id: str) -> dict[str, Any]:
    """The hyperparameters rl-zoo takes for ``env_id`` from ``conf_file``: its entry, else the file's ``default``.

    :raises ValueError: the file does not exist, or has neither.
    """
    import yaml

    path = Path(conf_file)
    if not path.is_file():
        raise ValueError(f"conf_file {str(path)!r} does not exist")
    entries = yaml.safe_load(path.read_text()) or {}
    if env_id in entries:
        return dict(entries[env_id])
    if "default" in entries:
        return dict(entries["default"])
    raise ValueError(f"{path} has no entry for {env_id!r} and no 'default' entry")


#: The package's algorithms, under the names rl-zoo's ``--algo`` takes once :func:`register_algorithms` ran
#: (``ppo_window`` is stock PPO under a name that selects the window transformer's ``-optimize`` sampler,
#: ``ppo_lstm_fair`` sb3-contrib's RecurrentPPO under a name that selects ``ppo_tx``'s PPO search space).
ZOO_ALGORITHMS = {
    "ppo_tx": "sb3_masked_attention.transformer_ppo:TransformerPPO",
    "ppo_window": "stable_baselines3:PPO",
    "ppo_lstm_fair": "sb3_contrib:RecurrentPPO",
}


def register_algorithms() -> None:
    """Add the package's algorithms (``ppo_tx``: TransformerPPO; ``ppo_window``) to rl-zoo's ``ALGOS``, which its
    train and enjoy scripts read their ``--algo`` choices from when they parse, and their ``-optimize`` samplers
    (:mod:`~sb3_masked_attention.samplers`)."""
    import importlib

    from rl_zoo3.hyperparams_opt import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER
    from rl_zoo3.utils import ALGOS

    from sb3_masked_attention.samplers import SAMPLERS

    for name, target in ZOO_ALGORITHMS.items():
        module, attribute = target.split(":")
        ALGOS.setdefault(name, getattr(importlib.import_module(module), attribute))
        HYPERPARAMS_SAMPLER.setdefault(name, SAMPLERS[name][0])
        HYPERPARAMS_CONVERTER.setdefault(name, SAMPLERS[name][1])


#: Hyperparameter keys rl-zoo reads itself (the rest go to the algorithm's constructor).
ZOO_KEYS = (
    "n_timesteps", "n_envs", "policy", "normalize", "frame_stack", "policy_kwargs", "monitor_kwargs", "env_kwargs",
    "env_wrapper", "vec_env_wrapper", "callback", "replay_buffer_class", "replay_buffer_kwargs",
)  # fmt: skip


def algorithm_arguments(algo: str) -> set[str]:
    """The hyperparameter names rl-zoo's ``algo`` takes: its constructor's arguments and :data:`ZOO_KEYS`.

    :raises ValueError: ``algo`` unknown to rl-zoo.
    """
    import inspect

    from rl_zoo3.utils import ALGOS

    register_algorithms()
    if algo not in ALGOS:
        raise ValueError(f"algo {algo!r} is unknown to rl-zoo: expected one of {sorted(ALGOS)}")
    names: set[str] = set()
    for cls in ALGOS[algo].__mro__:  # a subclass (TransformerPPO) may pass **kwargs on to its parent's constructor
        if "__init__" not in vars(cls):
            continue
        parameters = inspect.signature(vars(cls)["__init__"]).parameters
        names |= {name for name, p in parameters.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
            break
    return (names - {"self", "env"}) | set(ZOO_KEYS)


def check_hyperparams(algo: str, hyperparams: dict[str, Any], where: str = "hyperparams") -> None:
    """Raise ValueError naming a hyperparameter that neither ``algo`` nor rl-zoo takes (before anything is built)."""
    allowed = algorithm_arguments(algo)
    unknown = sorted(set(hyperparams) - allowed)
    if unknown:
        raise ValueError(
            f"{where} {unknown} are not arguments of {algo} nor rl-zoo settings: expected some of {sorted(allowed)}"
        )


#: Algorithm arguments whose values are plain data (numbers, flags, schedule strings such as ``"lin_3e-4"``), for
#: every algorithm rl-zoo registers: the only constructor arguments read from a file we receive. The others carry
#: objects (policy classes, buffers, noise, callbacks), and rl-zoo imports a string given for some of them, or evaluates it.
PLAIN_ARGUMENTS = frozenset({
    "alive_bonus_offset", "batch_size", "buffer_size", "cg_damping", "cg_max_steps", "clip_range", "clip_range_vf",
    "delta_std", "ent_coef", "exploration_final_eps", "exploration_fraction", "exploration_initial_eps", "gae_lambda",
    "gamma", "gradient_steps", "learning_rate", "learning_starts", "line_search_max_iter",
    "line_search_shrinking_factor", "max_grad_norm", "n_critic_updates", "n_delta", "n_epochs", "n_eval_episodes",
    "n_steps", "n_top", "normalize_advantage", "optimize_memory_usage", "policy_delay", "rms_prop_eps",
    "sde_sample_freq", "stats_window_size", "sub_sampling_factor", "target_entropy", "target_kl", "target_noise_clip",
    "target_policy_noise", "target_update_interval", "tau", "top_quantiles_to_drop_per_net", "train_freq",
    "use_rms_prop", "use_sde", "use_sde_at_warmup", "vf_coef", "zero_policy",
})  # fmt: skip
#: rl-zoo settings read from a received file, each as data: ``policy`` an alias the algorithm registers (rl-zoo
#: imports a dotted name), the ``dict(...)`` strings rl-zoo would ``eval`` read as literals.
RECEIVED_ZOO_KEYS = ("n_timesteps", "n_envs", "policy", "normalize", "frame_stack", "policy_kwargs", "monitor_kwargs")
#: the settings above that rl-zoo evaluates (``eval``) when they are strings.
EVALUATED_KEYS = ("normalize", "policy_kwargs", "monitor_kwargs")
#: The one env wrapper a received file may name (TransformerPPO's runs need it), imported by rl-zoo from this path.
HISTORY_WRAPPER = "sb3_masked_attention.wrappers.HistoryWrapper"


def received_hyperparams(algo: str, hyperparams: dict[str, Any], where: str, history_wrapper: bool = False) -> dict[str, Any]:
    """Hyperparameters from a file we did not write (a study file, a run folder), checked against an allow-list of
    plain data before rl-zoo sees them: rl-zoo imports a dotted ``policy``, wrapper and callback names and evaluates
    the ``dict(...)`` strings, so a key or value outside the list is refused, never filtered.

    :param algo: the rl-zoo algorithm they are for (its policy aliases and constructor arguments).
    :param where: what to name in the error (the file).
    :param history_wrapper: also accept ``env_wrapper`` naming only :data:`HISTORY_WRAPPER` (a run folder's record).
    :return: the hyperparameters, ``dict(...)`` strings read as dicts.
    :raises ValueError: naming the key and what is allowed.
    """
    from rl_zoo3.utils import ALGOS

    import sb3_masked_attention.policies  # noqa: F401  (registers the package's policy aliases)

    allowed = (algorithm_arguments(algo) & PLAIN_ARGUMENTS) | set(RECEIVED_ZOO_KEYS)
    checked: dict[str, Any] = {}
    for key, value in hyperparams.items():
        if key == "env_wrapper" and history_wrapper:
            wrappers = value if isinstance(value, list) else [value]
            names = [next(iter(w)) if isinstance(w, dict) and len(w) == 1 else w for w in wrappers]
            if names != [HISTORY_WRAPPER] or not _plain(value):
                raise ValueError(f"{where}: env_wrapper {_short(names)} is not read: only {HISTORY_WRAPPER} is")
        elif key not in allowed:
            raise ValueError(
                f"{where}: hyperparameter {key!r} is not read from a received file (it may name code rl-zoo imports "
                f"or evaluates): expected plain settings of {algo}, one of {sorted(allowed)}; put code in a conf_file "
                "you trust"
            )
        elif key in EVALUATED_KEYS and isinstance(value, str):
            value = literal_dict(value, f"{where}: {key}")
        elif key == "policy":
            aliases = sorted(ALGOS[algo].policy_aliases)
            if not isinstance(value, str) or value not in aliases:
                raise ValueError(f"{where}: policy {_short(value)} is not a policy name of {algo}: expected one of {aliases}")
        if not _plain(value):
            raise ValueError(f"{where}: {key}={_short(value)} is not plain data (numbers, strings, lists, mappings)")
        checked[key] = value
    check_setting_ranges(checked, where)
    return checked


def _plain(value: Any) -> bool:
    """Numbers, strings, flags, None, and lists and string-keyed mappings of them."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error line never quotes a whole hostile value."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: The ranges SB3's algorithms assume of their settings, as (low, high, low included, integer): outside them SB3
#: trains without a word and the run means nothing (``gamma=2`` lets returns grow without bound).
SETTING_RANGES: dict[str, tuple[float, float, bool, bool]] = {
    "gamma": (0.0, 1.0, True, False),
    "gae_lambda": (0.0, 1.0, True, False),
    "tau": (0.0, 1.0, False, False),
    "learning_rate": (0.0, math.inf, True, False),  # 0: weights held (a check, not a run)
    "clip_range": (0.0, math.inf, False, False),
    "clip_range_vf": (0.0, math.inf, False, False),
    "target_kl": (0.0, math.inf, False, False),
    "max_grad_norm": (0.0, math.inf, False, False),
    "ent_coef": (0.0, math.inf, True, False),
    "vf_coef": (0.0, math.inf, True, False),
    "exploration_fraction": (0.0, 1.0, True, False),
    "exploration_initial_eps": (0.0, 1.0, True, False),
    "exploration_final_eps": (0.0, 1.0, True, False),
    "n_steps": (1, math.inf, True, True),
    "batch_size": (1, math.inf, True, True),
    "n_epochs": (1, math.inf, True, True),
    "n_envs": (1, math.inf, True, True),
    "n_timesteps": (1, math.inf, True, True),
    "buffer_size": (1, math.inf, True, True),
    "learning_starts": (0, math.inf, True, True),
    "stats_window_size": (1, math.inf, True, True),
    "sde_sample_freq": (-1, math.inf, True, True),
}
#: settings rl-zoo also takes as a linear schedule, ``"lin_<initial value>"``.
SCHEDULES = ("learning_rate", "clip_range", "clip_range_vf")


def check_setting_ranges(hyperparams: dict[str, Any], where: str = "hyperparams") -> None:
    """Raise ValueError naming a setting outside the range SB3 assumes (:data:`SETTING_RANGES`), or a schedule string
    that is not ``"lin_<number>"`` (rl-zoo would read any ``"<word>_<number>"`` as linear)."""
    for key, value in hyperparams.items():
        if key not in SETTING_RANGES or value is None or (key == "ent_coef" and isinstance(value, str)):
            continue  # None: the algorithm's "off" (clip_range_vf, target_kl); SAC's ent_coef may be "auto..."
        low, high, closed, integer = SETTING_RANGES[key]
        number = value
        if key in SCHEDULES and isinstance(value, str):
            prefix, _, initial = value.partition("_")
            try:
                number = float(initial) if prefix == "lin" else None
            except ValueError:
                number = None
            if number is None:
                raise ValueError(f"{where}: {key}={_short(value)} is not a schedule: expected a number or 'lin_<number>'")
        kind = "an integer" if integer else "a number"
        span = f"{'[' if closed else '('}{low}, {high}{']' if high != math.inf else ')'}"
        valid = (
            isinstance(number, (int, float))
            and not isinstance(number, bool)
            and math.isfinite(number)
            and (number >= low if closed else number > low)
            and number <= high
            and (not integer or float(number).is_integer())
        )
        if not valid:
            raise ValueError(f"{where}: {key}={_short(value)} is outside what SB3 assumes: expected {kind} in {span}")


def literal_dict(text: str | dict[str, Any], what: str = "policy_kwargs") -> dict[str, Any]:
    """Read rl-zoo's ``"dict(key=value, ...)"`` strings without running code: only ``dict(...)`` of literals.

    :raises ValueError: anything else (names, calls, attribute access), naming ``what``.
    """
    import ast

    if isinstance(text, dict):
        return dict(text)
    try:
        node = ast.parse(text.strip(), mode="eval").body
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args):
            raise ValueError
        return {kw.arg: _literal(kw.value) for kw in node.keywords if kw.arg is not None}
    except (SyntaxError, ValueError):
        raise ValueError(
            f"{what}={text!r} is not read: expected dict(key=value, ...) with literal values (numbers, strings, lists, dicts)"
        ) from None


def _literal(node: Any) -> Any:
    import ast

    if isinstance(node, ast.Call):  # nested dict(...)
        return literal_dict(ast.unparse(node))
    return ast.literal_eval(node)


@dataclass
class ZooRun:
    """A model built from an rl-zoo entry, and the manager that knows how to make its evaluation envs.

    ``settings``: the entry with the overrides applied, as rl-zoo's ``config.yml`` records them, in plain data
    (:func:`plain_settings`).
    """

    model: BaseAlgorithm
    manager: Any  # rl_zoo3.exp_manager.ExperimentManager
    n_timesteps: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def train_env(self) -> VecEnv:
        """The model's (vectorised, possibly normalised) training envs."""
        env = self.model.get_env()
        assert env is not None, "rl-zoo always gives the model its envs"
        return env

    def make_eval_env(self, n_envs: int = 1, seed: int | None = None) -> VecEnv:
        """Evaluation envs wrapped as rl-zoo wraps them (frozen normalisation, raw rewards).

        :param n_envs: parallel evaluation envs.
        :param seed: seed of their first reset (default: the training seed + 10000, so they differ).
        """
        from stable_baselines3.common.vec_env import sync_envs_normalization

        env = self.manager.create_envs(n_envs, eval_env=True, no_log=True)
        env.seed(self.manager.seed + 10_000 if seed is None else seed)
        sync_envs_normalization(self.train_env, env)  # the training statistics, frozen
        return env

    def save_normalization(self, path: str | os.PathLike) -> None:
        """Write the training envs' ``VecNormalize`` statistics to ``path`` atomically (nothing if not normalised)."""
        from stable_baselines3.common.vec_env import unwrap_vec_normalize

        from sb3_masked_attention.io import atomic_path

        normalize = unwrap_vec_normalize(self.train_env)
        if normalize is not None:
            with atomic_path(path) as tmp:
                normalize.save(str(tmp))


def make_zoo_model(
    algo: str,
    env_id: str,
    log_folder: str | os.PathLike,
    *,
    conf_file: str | os.PathLike | None = None,
    hyperparams: dict[str, Any] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    tensorboard_log: str = "",
    verbose: int = 0,
    device: str = "auto",
) -> ZooRun:
    """Create the model ``rl_zoo3.train --algo ALGO --env ENV_ID --conf-file CONF -params ...`` would train.

    :param algo: rl-zoo algorithm name (``ppo``, ``a2c``, ``ppo_lstm``, ``ppo_mask`` ...).
    :param env_id: gymnasium id (``sb3ma/`` ids and rl-zoo's NoVel ids are registered here).
    :param log_folder: rl-zoo log folder (its config.yml and Monitor files go there).
    :param conf_file: YAML file; default: rl-zoo's own file for ``algo``.
    :param hyperparams: overrides, as ``-params`` takes them (strings for ``policy_kwargs`` and the like).
    :param env_kwargs: environment keyword arguments.
    :param seed: seed of the model and environments.
    :param tensorboard_log: TensorBoard folder ("" for none).
    :param verbose: rl-zoo / SB3 verbosity.
    :param device: torch device of the model.
    """
    from rl_zoo3.exp_manager import ExperimentManager

    from sb3_masked_attention.environments import check_env_kwargs

    check_hyperparams(algo, dict(hyperparams or {}))
    check_env_kwargs(env_id, env_kwargs)  # registers the sb3ma/ and rl-zoo ids and the policy aliases

    config = Path(conf_file) if conf_file is not None else rl_zoo_config(algo)
    if not config.exists():
        raise FileNotFoundError(f"conf_file {config} does not exist")
    check_setting_ranges(dict(hyperparams or {}), "hyperparams")
    check_setting_ranges(zoo_entry(config, env_id), f"conf_file {str(config)!r} entry for {env_id!r}")
    manager = ExperimentManager(
        argparse.Namespace(algo=algo, env=env_id, conf_file=str(config), seed=seed),
        algo,
        env_id,
        str(log_folder),
        tensorboard_log=tensorboard_log,
        hyperparams=dict(hyperparams or {}),
        env_kwargs=env_kwargs,
        eval_freq=-1,  # evaluation is the caller's business
        seed=seed,
        verbose=verbose,
        device=device,
        config=str(config),
    )
    with contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO()):  # rl-zoo prints its config
        model, saved = manager.setup_experiment()  # type: ignore[misc]  # None only with --optimize
    return ZooRun(model=model, manager=manager, n_timesteps=manager.n_timesteps, settings=plain_settings(saved))


def plain_settings(value: Any) -> Any:
    """``value`` as YAML's plain data: mappings (keys sorted) and lists of numbers, strings, booleans and None; anything
    else (a class, a callable) as its ``repr`` string, so that a record of what ran never has to run code to be read."""
    if isinstance(value, dict):
        return {str(key): plain_settings(value[key]) for key in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [plain_settings(item) for item in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)
