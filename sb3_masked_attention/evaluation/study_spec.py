"""Study files: a strict schema, checked whole before any run starts.

A study file (YAML) names the methods, the envs and the seeds::

    name: heads
    seeds: 10                      # or a list of distinct seeds
    eval_freq: 5000                # env steps between evaluations
    eval_episodes: 20
    envs:
      sb3ma/TMaze-v0: {n_timesteps: 60000, env_kwargs: {corridor_length: 40}}
      CartPoleNoVel-v1: {n_timesteps: 50000}
      RepeatPrevious-k28:          # a task name, when one env id appears with different env_kwargs
        env_id: sb3ma/RepeatPrevious-v0
        n_timesteps: 100000
        env_kwargs: {k: 28, episode_length: 48}
    methods:
      specialized:                 # a zoo_configs entry plus overrides
        algo: ppo
        conf_file: zoo_configs/ppo.yml
        hyperparams: {policy_kwargs: "dict(head_mask_strategy='specialized')"}
      recurrent_ppo: {algo: ppo_lstm, conf_file: zoo_configs/ppo_lstm.yml, seeds: 5}   # its own seeds

An env entry's key is the task's name (the ``env`` column of the scores and its folder); it is the env id
itself unless ``env_id`` names one. A method's ``seeds`` replaces the study's for that method. ``conf_file`` is
relative to the study file (default: rl-zoo's own file for ``algo``). In ``hyperparams`` strings, ``{env}``
becomes the env id with ``/`` replaced by ``-`` (e.g. one pretrained trunk per env:
``policy_kwargs: "dict(pretrained_extractor='trunks/{env}.pt')"``, relative to the current directory).

What is checked, each mistake named with its key and the file: unknown keys at every level; seeds distinct
non-negative integers; method, env and study names usable as folder names; env ids registered and their
``env_kwargs`` accepted by the env; ``algo`` known to rl-zoo and each hyperparameter one the algorithm (or
rl-zoo) takes, from an allow-list of plain settings (:func:`~sb3_masked_attention.zoo.received_hyperparams`: a
study file is data, so ``policy`` is an alias the algorithm registers, ``dict(...)`` strings are read as literals,
and keys that name code, such as ``env_wrapper``, belong in a conf_file, which is Python you must trust); a
``pretrained_extractor`` that exists. :func:`check_buildable` then builds each (method, env) model once.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sb3_masked_attention.io import yaml_data
from sb3_masked_attention.validation import check_int

TOP_KEYS = ("name", "seeds", "eval_freq", "eval_episodes", "envs", "methods")
ENV_KEYS = ("env_id", "n_timesteps", "env_kwargs")
METHOD_KEYS = ("algo", "conf_file", "hyperparams", "seeds")
#: algorithm arguments the runner sets for every run.
RUNNER_KEYS = ("seed", "tensorboard_log", "verbose", "device", "_init_setup_model")
#: hyperparameters whose ``"dict(...)"`` strings rl-zoo would ``eval``: read here as literals.
DICT_KEYS = ("policy_kwargs", "normalize", "monitor_kwargs")
#: A folder-name-safe method or study name; env ids may add one ``namespace/``.
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")
_ENV_ID = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9_.+-]*/)?[A-Za-z0-9_][A-Za-z0-9_.+-]*")


@dataclass(frozen=True)
class Method:
    """An rl-zoo algorithm, its hyperparameter file and overrides (``-params``; ``dict`` strings already read)."""

    name: str
    algo: str
    conf_file: str | None = None
    hyperparams: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Run:
    method: Method
    env_id: str
    seed: int
    n_timesteps: int
    env_kwargs: dict[str, Any]
    eval_freq: int
    eval_episodes: int
    task: str = ""  # the env entry's name (the scores' ``env``); the env id when empty

    @property
    def task_name(self) -> str:
        return self.task or self.env_id

    @property
    def key(self) -> str:
        return f"{self.method.name}/{env_slug(self.task_name)}/seed{self.seed}"


@dataclass(frozen=True)
class Study:
    name: str
    runs: tuple[Run, ...]
    spec: dict[str, Any]
    where: str = "study file"


def env_slug(env_id: str) -> str:
    """The env id as a folder name (``sb3ma/TMaze-v0`` -> ``sb3ma-TMaze-v0``)."""
    return env_id.replace("/", "-")


def _require(spec: dict, key: str, kind: type, where: str) -> Any:
    if key not in spec:
        raise ValueError(f"{where} has no {key!r}")
    if not isinstance(spec[key], kind):
        raise ValueError(f"{where}: {key}={spec[key]!r} is invalid: expected a {kind.__name__}")
    return spec[key]


def _mapping(value: Any, where: str, allowed: tuple[str, ...]) -> dict[str, Any]:
    """``value`` (None = empty) as a mapping whose keys are all ``allowed``."""
    value = {} if value is None else value
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a mapping, not {value!r}")
    unknown = sorted(map(str, set(value) - set(allowed)))
    if unknown:
        raise ValueError(f"{where} has unknown key(s) {unknown}: expected {', '.join(allowed)}")
    return value


def _name(value: Any, where: str, pattern: re.Pattern = _NAME) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value) or ".." in value:
        raise ValueError(
            f"{where} {value!r} is not usable as a folder name: expected letters, digits and _ . + - "
            "(env ids may have one namespace/, and name registered envs: no module:), not starting with '.'"
        )
    return value


def _seeds(value: Any, where: str) -> list[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return list(range(check_int("seeds", value)))
    ok = isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in value)
    if not ok:
        raise ValueError(f"{where}: seeds={value!r} is invalid: expected a count or a list of integers >= 0")
    repeated = sorted({seed for seed in value if value.count(seed) > 1})
    if repeated:
        raise ValueError(f"{where}: seeds={value!r} repeat {repeated}: each seed is one run, list it once")
    return list(value)


def _hyperparams(value: Any, algo: str, where: str) -> dict[str, Any]:
    from sb3_masked_attention.zoo import algorithm_arguments, received_hyperparams

    if value is not None and not isinstance(value, dict):
        raise ValueError(f"{where}: hyperparams must be a mapping, not {value!r}")
    hyperparams = value or {}
    try:
        algorithm_arguments(algo)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None
    for key in hyperparams:
        if key in ("n_timesteps", "env_kwargs"):
            raise ValueError(f"{where}: hyperparams key {key!r} belongs in the env entry of `envs`")
        if key in RUNNER_KEYS:
            raise ValueError(f"{where}: hyperparams key {key!r} is set by the study runner (seeds: the top-level `seeds`)")
    received_hyperparams(algo, hyperparams, f"{where}: hyperparams")  # ``{env}`` is filled in per env, later
    return dict(hyperparams)


def _for_env(method: Method, env_id: str, where: str) -> Method:
    """``method`` for one env: ``{env}`` filled in, ``dict(...)`` strings read as literals, trunk paths checked."""
    from sb3_masked_attention.zoo import literal_dict

    hyperparams = {}
    for key, value in method.hyperparams.items():
        if isinstance(value, str):
            value = value.replace("{env}", env_slug(env_id))
            if key in DICT_KEYS:
                value = literal_dict(value, f"{where}: hyperparams {key}")
        hyperparams[key] = value
    policy_kwargs = hyperparams.get("policy_kwargs")
    if isinstance(policy_kwargs, dict) and policy_kwargs.get("pretrained_extractor") is not None:
        trunk = Path(str(policy_kwargs["pretrained_extractor"]))
        if not trunk.is_file():
            raise ValueError(
                f"{where} on env {env_id!r}: pretrained_extractor {str(trunk)!r} does not exist (relative to the "
                f"current directory {os.getcwd()!r}): make it with `sb3ma pretrain` or fix the path"
            )
        hyperparams["policy_kwargs"] = {**policy_kwargs, "pretrained_extractor": str(trunk.resolve())}
    return Method(method.name, method.algo, method.conf_file, hyperparams)


def _method(name: Any, entry: Any, study_dir: Path, where: str) -> Method:
    name = _name(name, f"{where}: method")
    where = f"{where}: method {name!r}"
    entry = _mapping(entry, where, METHOD_KEYS)
    algo = _require(entry, "algo", str, where)
    conf_file = entry.get("conf_file")
    if conf_file is not None:
        conf_path = (study_dir / str(conf_file)).resolve()
        if not conf_path.is_file():
            raise ValueError(f"{where} conf_file {conf_file!r} does not exist (relative to the study file)")
        if conf_path.suffix not in (".yml", ".yaml"):
            raise ValueError(f"{where} conf_file {conf_file!r} is not a .yml/.yaml file (rl-zoo would run a .py file)")
        conf_file = str(conf_path)
    return Method(name, algo, conf_file, _hyperparams(entry.get("hyperparams"), algo, where))


def _env(task: Any, entry: Any, where: str) -> tuple[str, str, int, dict[str, Any]]:
    """(task name, env id, budget, env_kwargs) of one env entry."""
    from sb3_masked_attention.environments import check_env_id, check_env_kwargs

    task = _name(task, f"{where}: env", _ENV_ID)
    file_where, where = where, f"{where}: env {task!r}"
    entry = _mapping(entry, where, ENV_KEYS)
    env_id = _name(entry.get("env_id", task), f"{where} env_id", _ENV_ID)
    n_timesteps = check_int(f"{where} n_timesteps", _require(entry, "n_timesteps", int, where))
    env_kwargs = entry.get("env_kwargs") or {}
    if not isinstance(env_kwargs, dict):
        raise ValueError(f"{where}: env_kwargs must be a mapping, not {env_kwargs!r}")
    try:
        check_env_id(env_id)
        check_env_kwargs(env_id, env_kwargs)
    except ValueError as error:  # the message names the env
        raise ValueError(f"{file_where}: {error}") from None
    return task, env_id, n_timesteps, dict(env_kwargs)


def read_spec(path: Path) -> dict[str, Any]:
    """The YAML mapping of a study file; ValueError naming the file and line of a syntax error."""
    if not path.is_file():
        raise ValueError(f"study file {str(path)!r} does not exist")
    try:
        spec = yaml_data(path.read_text(), f"study file {str(path)!r}")
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise ValueError(f"study file {str(path)!r} is not valid YAML{at}: {problem}") from None
    except UnicodeDecodeError:
        raise ValueError(f"study file {str(path)!r} is not a text file") from None
    if not isinstance(spec, dict):
        raise ValueError(f"study file {str(path)!r} is not a YAML mapping")
    return spec


def load_study(path: str | os.PathLike) -> Study:
    """Parse and check a study file; raise ValueError naming the bad key and the file."""
    path = Path(path)
    spec = read_spec(path)
    where = f"study file {path.name}"
    _mapping(spec, where, TOP_KEYS)
    name = _name(str(spec.get("name", path.stem)), f"{where}: name")
    seeds = _seeds(spec.get("seeds", 3), where)
    eval_freq = check_int(f"{where}: eval_freq", spec.get("eval_freq", 5000))
    eval_episodes = check_int(f"{where}: eval_episodes", spec.get("eval_episodes", 10))
    envs = _require(spec, "envs", dict, where)
    methods = _require(spec, "methods", dict, where)
    if not envs or not methods:
        raise ValueError(f"{where}: expected at least one env and one method")
    parsed_methods = [_method(name, entry, path.parent, where) for name, entry in methods.items()]
    method_seeds = {
        method.name: _seeds(entry["seeds"], f"{where}: method {method.name!r}") if "seeds" in entry else seeds
        for method, entry in zip(parsed_methods, methods.values())
    }
    parsed_envs = [_env(task, entry, where) for task, entry in envs.items()]
    slugs = [env_slug(task) for task, _, _, _ in parsed_envs]
    if len(set(slugs)) < len(slugs):
        raise ValueError(f"{where}: env names {[t for t, _, _, _ in parsed_envs]} share a folder name: rename one")
    runs = []
    for task, env_id, n_timesteps, env_kwargs in parsed_envs:
        env_methods = [_for_env(method, env_id, f"{where}: method {method.name!r}") for method in parsed_methods]
        label = "" if task == env_id else task
        for seed in sorted(set().union(*method_seeds.values())):  # seed-major: every method's first seeds first
            for method in env_methods:
                if seed in method_seeds[method.name]:
                    runs.append(Run(method, env_id, seed, n_timesteps, env_kwargs, eval_freq, eval_episodes, label))
    return Study(name, tuple(runs), spec, where)


def check_buildable(study: Study, runs: tuple[Run, ...] | list[Run] | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """Build each (method, env) model of ``runs`` once, in a scratch folder, so that a hyperparameter the
    policy rejects fails here, before any run starts, and not in a worker.

    :return: each (method name, task name)'s settings as rl-zoo resolved them (plain data, without the budget).
    :raises ValueError: naming the method, the env, the file and the error.
    """
    from sb3_masked_attention.zoo import make_zoo_model

    settings: dict[tuple[str, str], dict[str, Any]] = {}
    for run in study.runs if runs is None else runs:
        if (run.method.name, run.task_name) in settings:
            continue
        with tempfile.TemporaryDirectory(prefix="sb3ma-check-") as scratch:
            try:
                zoo = make_zoo_model(
                    run.method.algo,
                    run.env_id,
                    scratch,
                    conf_file=run.method.conf_file,
                    hyperparams=run.method.hyperparams,
                    env_kwargs=run.env_kwargs,
                    seed=run.seed,
                )
            except Exception as error:  # any failure here is one the runs would meet
                reason = (str(error).strip().splitlines() or [""])[0][:200]
                raise ValueError(
                    f"{study.where}: method {run.method.name!r} on env {run.task_name!r} cannot be built: "
                    f"{type(error).__name__}: {reason}"
                ) from None
            zoo.train_env.close()
            settings[(run.method.name, run.task_name)] = zoo.settings
    return settings
