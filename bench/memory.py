"""Long-memory benchmark: TransformerPPO against RecurrentPPO, the window transformer and frame-stacked PPO-MLP.

Measuring parts write into --out (default: a new runs/bench/memory-<time> folder; --out results/benchmarks adds to
the committed results, skipping what is there and saying so); report reads --out (default results/benchmarks).

    python bench/memory.py throughput   # env steps/s over a whole learn() and in rollouts alone, peak RSS (1, 2 threads)
    python bench/memory.py threads      # two runs at once (a busy machine), 1 and 2 threads each
    python bench/memory.py tmaze [--corridors 50 200 500 1000] [--seeds 0 1 2] [--methods transformer_ppo ...]
                                        # Passive T-Maze range: success rate per corridor length (resumable)
    python bench/memory.py pilot [--methods ...]  # T-Maze settings pilots (each method's variants; resumable)
    python bench/memory.py report       # writes results/benchmarks/memory.md from the CSVs

Throughput: CartPoleNoVel-v1 at rl-zoo's tuned ``ppo_lstm`` settings (8 envs, n_steps 32, batch 256, 20 epochs) for
every method, one torch thread, each run in its own process (for its peak RSS), one after another. Rows are
appended atomically to ``results/benchmarks/memory_throughput.csv``; finished runs are skipped (resumable).
T-Maze: ``sb3ma/TMaze-v0`` (cue only at t = 0, reward only at the junction) at each corridor length, the same
budget per length for every method (:func:`tmaze_budget`), evaluated ``TMAZE_EVALS`` times on 100 greedy episodes; one
row per finished run in ``results/benchmarks/memory_tmaze.csv`` and its learning curve in ``memory_tmaze_curves.csv``
(success = the right turn). Sample efficiency on CartPoleNoVel-v1 is a study (``studies/memory.yml``); ``report``
reads its scores.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside this script, however it is loaded
from folders import measuring_folder, out_option

if TYPE_CHECKING:
    import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "benchmarks"
ENV_ID = "CartPoleNoVel-v1"
STEPS = 4096
TOKENS = [{"sb3_masked_attention.wrappers.HistoryWrapper": {"history_len": 1}}]
WINDOW = [{"sb3_masked_attention.wrappers.HistoryWrapper": {"history_len": 16}}]
NORMALIZE = "dict(norm_obs_keys=['obs', 'prev_reward'])"  # never the one-hot previous action
#: method -> (rl-zoo algo, overrides of rl-zoo's ppo_lstm CartPoleNoVel entry)
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "recurrent_ppo": ("ppo_lstm", {}),
    **{
        f"transformer_ppo_m{m}": (
            "ppo_tx",
            dict(
                policy="TransformerMemoryPolicy",
                env_wrapper=TOKENS,
                normalize=NORMALIZE,
                policy_kwargs=f"dict(memory_len={m})",
            ),
        )
        for m in (16, 128, 1024)
    },
    "window_transformer_h16": (
        "ppo",
        dict(
            policy="HeadMaskedTransformerPolicy",
            env_wrapper=WINDOW,
            normalize=NORMALIZE,
            policy_kwargs="dict(head_mask_strategy='specialized')",
        ),
    ),
    "mlp_framestack16": (
        "ppo",
        dict(
            policy="MlpPolicy",
            frame_stack=16,
            policy_kwargs="dict(ortho_init=False, activation_fn=nn.ReLU, net_arch=dict(pi=[64], vf=[64]))",
        ),
    ),
}


#: T-Maze methods: every one gets the same PPO settings (``TMAZE_PPO``) and budget; what differs is stated here.
#: RecurrentPPO also had a settings pilot of its own, as many variants as the transformer's (``PILOT_VARIANTS``).
TMAZE_METHODS = (
    "transformer_ppo", "recurrent_ppo", "mlp_framestack", "recurrent_ppo_fg", "recurrent_ppo_fg1",
    "transformer_ppo_pytorch_init", "recurrent_ppo_tuned",
)  # fmt: skip
#: transformer_ppo: the policy's default initialisation, SB3's orthogonal one (``ortho_init=True``), with which the T-Maze
#: range in results/benchmarks ran; transformer_ppo_pytorch_init: PyTorch's (``ortho_init=False``), the zoo's default
#: entry's choice for POPGym's tasks (issue 35).
TRANSFORMERS = ("transformer_ppo", "transformer_ppo_pytorch_init")
#: recurrent_ppo_fg (issue 35's baseline): RecurrentPPO with ForgetGateMlpLstmPolicy (forget-gate bias 2) and as many
#: gradient steps per rollout as TransformerPPO (two minibatches of whole episodes per epoch: 8 a rollout), where the
#: sweep's recurrent_ppo has one minibatch (4 a rollout) and PyTorch's forget-gate bias (~0). recurrent_ppo_fg1: the
#: same gradient steps per rollout from one minibatch of all the rollout's episodes, run for as many more epochs
#: (sb3-contrib rolls the minibatch boundaries by a random offset each epoch, so a second minibatch cuts episodes).
#: normalize_advantage=False: only the turn is rewarded, so per-minibatch normalisation rescales the value noise of the
#: corridor steps (all but one step in corridor + 1) to unit size; see the pilot (``python bench/memory.py pilot``).
TMAZE_PPO: dict[str, Any] = dict(n_epochs=4, ent_coef=0.01, max_grad_norm=0.5, batch_size=256, normalize_advantage=False)
#: recurrent_ppo_tuned: the settings of RecurrentPPO's equal-budget search on POPGym RepeatFirstEasy, a recall-the-first
#: -observation task as the T-Maze is (trial 8, results/memory_v2/tuning_repeat_first; zoo_configs/ppo_lstm.yml's
#: entry there), with a constant learning rate as searched; none of TMAZE_PPO's settings.
TUNED_LSTM: dict[str, Any] = dict(
    n_steps=1024, batch_size=256, gamma=0.9874870641161577, gae_lambda=0.9277462226754423,
    learning_rate=0.0009266654484753833, lr_decay=False, ent_coef=0.00011629577311404254, clip_range=0.2, n_epochs=10,
    max_grad_norm=1.6551764715637467, normalize_advantage=True,
    policy_kwargs=dict(lstm_hidden_size=64, enable_critic_lstm=True),
)  # fmt: skip
#: rl-zoo's tuned ppo_lstm entry for CartPoleNoVel-v1 (the settings RecurrentPPO runs in the heads study), but a
#: constant clip range (rl-zoo decays it: a schedule does not pickle into the run's process); activation by name.
ZOO_LSTM: dict[str, Any] = dict(
    n_epochs=20, learning_rate=1e-3, ent_coef=0.0, gamma=0.98, gae_lambda=0.8, normalize_advantage=True,
    policy_kwargs=dict(ortho_init=False, activation_fn="ReLU", lstm_hidden_size=64, enable_critic_lstm=True,
                       net_arch=dict(pi=[64], vf=[64])),
)  # fmt: skip
#: The settings pilots: method -> variant -> (settings that replace TMAZE_PPO's, budget, evaluations, corridor, seed).
#: ``learning_rate`` is where the linear decay starts, ``warmup`` the fraction of the budget over which it first rises
#: linearly from 0; ``policy_kwargs`` replace the method's.
PILOT_VARIANTS: dict[str, dict[str, tuple[dict[str, Any], int, int, int, int]]] = {
    "transformer_ppo": {
        "advantage normalised (SB3 default), 200k": (dict(normalize_advantage=True), 200_000, 10, 200, 0),
        "advantage normalised (SB3 default)": (dict(normalize_advantage=True), 120_000, 6, 200, 0),
        "advantage not normalised": (dict(normalize_advantage=False), 120_000, 6, 200, 0),
        "advantage normalised, ent_coef 0": (dict(normalize_advantage=True, ent_coef=0.0), 120_000, 6, 200, 0),
        # the sweep's settings dipped after solving on this run (corridor 500, seed 1): do these keep it solved?
        "target_kl 0.02": (dict(target_kl=0.02), 200_400, 10, 500, 1),
        "warm-up over 10% of the budget": (dict(warmup=0.1), 200_400, 10, 500, 1),
    },
    "recurrent_ppo": {  # the sweep's row has one minibatch of 4 epochs per rollout: ~6x fewer gradient steps
        "20 epochs": (dict(n_epochs=20), 120_000, 6, 200, 0),
        "20 epochs, lr 1e-3": (dict(n_epochs=20, learning_rate=1e-3), 120_000, 6, 200, 0),
        "rl-zoo CartPoleNoVel ppo_lstm settings": (ZOO_LSTM, 120_000, 6, 200, 0),
        "minibatches of 256 (truncated BPTT)": (dict(batch_size=256), 120_000, 6, 200, 0),
        # issue 35's diagnosis: PyTorch's LSTM starts with forget-gate biases near 0, so a gate keeps ~half of the
        # cell state a step and the cue's gradient fades as 0.5^corridor; corridor 5 learns at these settings, 20 not
        "sweep settings, corridor 20": (dict(), 60_000, 5, 20, 0),
        "forget-gate bias 2, corridor 20": (dict(lstm_forget_bias=2.0), 60_000, 5, 20, 0),
        "sweep settings, corridor 50": (dict(), 100_000, 5, 50, 0),
        "forget-gate bias 2, corridor 50": (dict(lstm_forget_bias=2.0), 100_000, 5, 50, 0),
        "forget-gate bias 1, corridor 50": (dict(lstm_forget_bias=1.0), 100_000, 5, 50, 0),
    },
}
TMAZE_LR = 3e-4  # decayed linearly to 0 over the budget (rl-zoo's "lin_3e-4")
TMAZE_ENVS = 8
TMAZE_EVALS = 10  # evaluations per run, evenly spaced over the budget
TMAZE_EVAL_EPISODES = 100


def tmaze_budget(corridor: int) -> int:
    """Env steps per run: 200k, or 400 episodes where that is more (corridor 1000: 400,400)."""
    return max(200_000, 400 * (corridor + 1))


def tmaze_model(method: str, corridor: int, seed: int, overrides: dict[str, Any] | None = None):
    """The model of one T-Maze run and its evaluation env.

    TransformerPPO reads one token per step (observation, previous action, previous reward) with a memory of the next
    power of two >= the episode, n_steps = max(64, episode). RecurrentPPO sees the observation (all the task needs),
    n_steps = the episode exactly (every rollout then holds whole episodes, which all last corridor + 1 steps) and one
    minibatch per epoch, so backpropagation through time runs from the turn back to the cue. PPO-MLP sees the last
    corridor + 1 observations stacked (the cue is the oldest at the turn), n_steps = max(64, episode).
    ``recurrent_ppo_tuned`` runs ``TUNED_LSTM`` instead (rollouts of 1024 steps cut episodes; sb3-contrib carries the
    LSTM state across the cut).
    """
    import torch
    from sb3_contrib import RecurrentPPO
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
    from stable_baselines3.common.vec_env import VecFrameStack

    from sb3_masked_attention import HistoryWrapper
    from sb3_masked_attention.transformer_ppo import TransformerPPO

    if method not in TMAZE_METHODS:
        raise ValueError(f"method {method!r} is not in the T-Maze sweep: expected one of {TMAZE_METHODS}")
    episode = corridor + 1
    memory = 1 << (episode - 1).bit_length()

    def envs(n: int, env_seed: int):
        wrapped: dict[str, Any] = (
            dict(wrapper_class=HistoryWrapper, wrapper_kwargs=dict(history_len=1)) if method in TRANSFORMERS else {}
        )
        vec = make_vec_env("sb3ma/TMaze-v0", n, env_seed, env_kwargs=dict(corridor_length=corridor), **wrapped)
        return VecFrameStack(vec, episode) if method == "mlp_framestack" else vec

    settings: dict[str, Any] = dict(TMAZE_PPO, n_steps=max(64, episode), policy_kwargs={})
    if method == "recurrent_ppo":
        settings.update(n_steps=episode, batch_size=episode * TMAZE_ENVS)
    if method == "recurrent_ppo_fg":  # TransformerPPO's gradient steps per rollout: n_steps * 8 envs / 256 per epoch
        minibatches = max(64, episode) * TMAZE_ENVS // TMAZE_PPO["batch_size"]
        settings.update(n_steps=episode, batch_size=episode * TMAZE_ENVS // minibatches)
    if method == "recurrent_ppo_fg1":
        minibatches = max(64, episode) * TMAZE_ENVS // TMAZE_PPO["batch_size"]
        settings.update(n_steps=episode, batch_size=episode * TMAZE_ENVS, n_epochs=TMAZE_PPO["n_epochs"] * minibatches)
    if method == "recurrent_ppo_tuned":
        settings = dict(TUNED_LSTM)
    settings.update(overrides or {})
    start_lr, warmup = settings.pop("learning_rate", TMAZE_LR), settings.pop("warmup", 0.0)
    decay = settings.pop("lr_decay", True)
    forget_bias = settings.pop("lstm_forget_bias", None)

    def learning_rate(progress_remaining: float) -> float:
        rise = min(1.0, max(1.0 - progress_remaining, 0.01) / warmup) if warmup else 1.0
        return start_lr * rise * (progress_remaining if decay else 1.0)

    settings.update(learning_rate=learning_rate, seed=seed)
    if isinstance(settings["policy_kwargs"].get("activation_fn"), str):
        settings["policy_kwargs"] = dict(settings["policy_kwargs"])
        settings["policy_kwargs"]["activation_fn"] = getattr(torch.nn, settings["policy_kwargs"]["activation_fn"])
    model: OnPolicyAlgorithm
    if method in TRANSFORMERS:
        settings["policy_kwargs"] = dict(settings["policy_kwargs"], memory_len=memory)
        if method == "transformer_ppo_pytorch_init":
            settings["policy_kwargs"]["ortho_init"] = False
        model = TransformerPPO("TransformerMemoryPolicy", envs(TMAZE_ENVS, seed), **settings)
    elif method.startswith("recurrent_ppo"):
        policy = "MlpLstmPolicy" if method == "recurrent_ppo" else "ForgetGateMlpLstmPolicy"
        model = RecurrentPPO(policy, envs(TMAZE_ENVS, seed), **settings)
        if forget_bias is not None:
            set_forget_bias(model, forget_bias)
    else:
        model = PPO("MlpPolicy", envs(TMAZE_ENVS, seed), **settings)
    return model, envs(10, seed + 10_000), memory if method in TRANSFORMERS else None


def set_forget_bias(model: Any, value: float) -> None:
    """Start every LSTM of a RecurrentPPO with forget-gate bias ``value`` instead of PyTorch's ~0 (what
    ``ForgetGateMlpLstmPolicy`` does at construction)."""
    from sb3_masked_attention.policies import set_lstm_forget_bias

    for lstm in (model.policy.lstm_actor, model.policy.lstm_critic):
        if lstm is not None:
            set_lstm_forget_bias(lstm, value)


def tmaze_run(
    method: str, corridor: int, seed: int, budget: int | None = None, evals: int = TMAZE_EVALS, overrides: dict | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One T-Maze run, evaluated ``evals`` times: its summary row and its learning curve.

    :param budget: env steps (default :func:`tmaze_budget`).
    :param overrides: PPO settings that replace ``TMAZE_PPO``'s (the pilot).
    """
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    from sb3_masked_attention.environments import register_envs
    from sb3_masked_attention.episodes import play_episodes

    torch.set_num_threads(1)
    register_envs()
    model, evaluation, memory = tmaze_model(method, corridor, seed, overrides)
    steps = budget or tmaze_budget(corridor)
    curve: list[dict[str, Any]] = []
    start = time.perf_counter()

    class Evaluate(BaseCallback):
        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            due = steps * (len(curve) + 1) // evals
            if self.num_timesteps >= due or self.num_timesteps + model.n_steps * model.n_envs > steps:
                returns = np.asarray(play_episodes(model, evaluation, TMAZE_EVAL_EPISODES).returns)
                seconds = round(time.perf_counter() - start, 1)
                curve.append(dict(method=method, corridor=corridor, seed=seed, timesteps=self.num_timesteps,
                                  success=float((returns > 0).mean()), seconds=seconds))  # fmt: skip
                print(curve[-1], flush=True)

    model.learn(steps, callback=Evaluate())
    if curve[-1]["timesteps"] != model.num_timesteps:  # the last rollout's update came after the last evaluation
        returns = np.asarray(play_episodes(model, evaluation, TMAZE_EVAL_EPISODES).returns)
        curve.append(dict(method=method, corridor=corridor, seed=seed, timesteps=model.num_timesteps,
                          success=float((returns > 0).mean()), seconds=round(time.perf_counter() - start, 1)))  # fmt: skip
    first = next((point["timesteps"] for point in curve if point["success"] >= 0.95), None)
    row = {
        "method": method,
        "corridor": corridor,
        "memory_len": memory,
        "seed": seed,
        "budget": model.num_timesteps,
        "final_success": curve[-1]["success"],
        "best_success": max(point["success"] for point in curve),
        "first_steps_to_95pct": first,
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # this run's own process
    }
    return row, curve


def tmaze(corridors: list[int], seeds: list[int], methods: list[str], out: Path = OUT) -> None:
    """The T-Maze sweep into ``out`` (``memory_tmaze.csv``, ``memory_tmaze_curves.csv``; resumable)."""
    from sb3_masked_attention.evaluation.study import worker_pool
    from sb3_masked_attention.io import append_row, read_rows

    out.mkdir(parents=True, exist_ok=True)
    path, curves = out / "memory_tmaze.csv", out / "memory_tmaze_curves.csv"
    for corridor in corridors:
        for method in methods:
            for seed in seeds:
                done = read_rows(path)
                if len(done) and ((done["method"] == method) & (done["corridor"] == corridor) & (done["seed"] == seed)).any():
                    print(f"{method}, corridor {corridor}, seed {seed}: already in {path}, skipped", flush=True)
                    continue
                with worker_pool(1) as pool:  # a fresh process per run, ending with this one
                    row, curve = pool.submit(tmaze_run, method, corridor, seed).result()
                with open(path.with_suffix(".lock"), "a") as lock:  # two sweeps may share the files
                    fcntl.flock(lock, fcntl.LOCK_EX)
                    for point in curve:  # the curve first: a run counts as finished once its summary row exists
                        append_row(curves, point)
                    append_row(path, row)
                print(row, flush=True)


def pilot(methods: list[str], out: Path = OUT) -> None:
    """The settings pilots: one run per method and variant (resumable), into ``out/memory_tmaze_pilot.csv``."""
    from sb3_masked_attention.evaluation.study import worker_pool
    from sb3_masked_attention.io import append_row, read_rows

    path = out / "memory_tmaze_pilot.csv"
    for method in methods:
        for variant, (overrides, budget, evals, corridor, seed) in PILOT_VARIANTS.get(method, {}).items():
            done = read_rows(path)
            if len(done) and ((done["method"] == method) & (done["variant"] == variant)).any():
                print(f"{method}, {variant}: already in {path}, skipped")
                continue
            with worker_pool(1) as pool:
                row, curve = pool.submit(tmaze_run, method, corridor, seed, budget, evals, overrides).result()
            successes = " ".join(f"{point['success']:g}" for point in curve)
            append_row(path, dict(method=method, variant=variant, corridor=corridor, seed=seed, budget=row["budget"],
                                  success_curve=successes, final_success=row["final_success"],
                                  seconds=row["seconds"]))  # fmt: skip
            print(method, variant, successes, flush=True)


def throughput_run(method: str, threads: int = 1) -> dict[str, Any]:
    """One learn() of ``STEPS`` steps in this (fresh) process with ``threads`` torch threads; rollout time measured
    around collect_rollouts."""
    import torch
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

    from sb3_masked_attention.zoo import make_zoo_model, rl_zoo_config

    torch.set_num_threads(threads)
    algo, overrides = METHODS[method]
    with tempfile.TemporaryDirectory() as log_folder:
        model = make_zoo_model(algo, ENV_ID, log_folder, conf_file=rl_zoo_config("ppo_lstm"), hyperparams=overrides).model
    rollout_seconds = 0.0
    assert isinstance(model, OnPolicyAlgorithm)  # PPO, RecurrentPPO, TransformerPPO
    collect = model.collect_rollouts

    def timed(*args: Any, **kwargs: Any) -> bool:
        nonlocal rollout_seconds
        start = time.perf_counter()
        result = collect(*args, **kwargs)
        rollout_seconds += time.perf_counter() - start
        return result

    model.collect_rollouts = timed  # type: ignore[method-assign]
    start = time.perf_counter()
    model.learn(STEPS)
    seconds = time.perf_counter() - start
    return {
        "method": method,
        "threads": threads,
        "steps": model.num_timesteps,
        "seconds": round(seconds, 2),
        "steps_per_s": round(model.num_timesteps / seconds, 1),
        "rollout_steps_per_s": round(model.num_timesteps / rollout_seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch": torch.__version__,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
    }


def throughput(rounds: int = 2, threads: tuple[int, ...] = (1, 2), path: Path = OUT / "memory_throughput.csv") -> None:
    """``rounds`` rounds of every method at each thread count, one after another (a round's ratios compare runs made
    minutes apart). Resumable: a (round, method, threads) row already in ``path`` is skipped, and said so."""
    from sb3_masked_attention.evaluation.study import worker_pool
    from sb3_masked_attention.io import append_row, read_rows

    runs = [(round_, n, method) for round_ in range(rounds) for n in threads for method in METHODS]
    done = read_rows(path)
    finished = set(zip(done["round"], done["method"], done["threads"])) if len(done) else set()
    todo = [run for run in runs if (run[0], run[2], run[1]) not in finished]
    if len(todo) < len(runs):
        print(f"{len(runs) - len(todo)} of {len(runs)} runs already in {path}: skipped (pass --out NEW.csv to rerun)")
    for i, (round_, n, method) in enumerate(todo):
        with worker_pool(1) as pool:  # a fresh process per method: its own peak RSS
            row = {"round": round_, **pool.submit(throughput_run, method, n).result()}
        append_row(path, row)
        print(f"[{i + 1}/{len(todo)}]", row, flush=True)


#: The methods of the busy-machine measurement (``threads`` part): the small and large memories, the window, the LSTM.
BUSY_METHODS = ("recurrent_ppo", "transformer_ppo_m16", "transformer_ppo_m1024", "window_transformer_h16")


def busy_threads(threads: tuple[int, ...] = (1, 2), path: Path = OUT / "memory_threads.csv") -> None:
    """Two copies of each method training at once (two runs sharing the 2-core machine, as a study with two workers or a
    second job does), at each thread count: what ``--threads`` should default to. One row per copy; resumable."""
    from sb3_masked_attention.evaluation.study import worker_pool
    from sb3_masked_attention.io import append_row, read_rows

    done = read_rows(path)
    finished = set(zip(done["method"], done["threads"])) if len(done) else set()
    todo = [(method, n) for n in threads for method in BUSY_METHODS if (method, n) not in finished]
    if len(todo) < len(threads) * len(BUSY_METHODS):
        print(f"{len(threads) * len(BUSY_METHODS) - len(todo)} measurements already in {path}: skipped")
    for i, (method, n) in enumerate(todo):
        with worker_pool(2) as pool:
            rows = [future.result() for future in [pool.submit(throughput_run, method, n) for _ in range(2)]]
        for copy, row in enumerate(rows):
            append_row(path, {"copy": copy, "concurrent": 2, **row})
        print(f"[{i + 1}/{len(todo)}] {method} at {n} thread(s): {[row['steps_per_s'] for row in rows]} steps/s", flush=True)


def plot_tmaze(curves: pd.DataFrame, path: Path) -> None:
    """Final success against corridor length (one dot per run, the line through the means), then success against env
    steps, one panel per corridor length, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sb3_masked_attention.io import save_figure

    corridors = sorted(curves["corridor"].unique())
    colors = {method: f"C{i}" for i, method in enumerate(TMAZE_METHODS)}
    fig, axes = plt.subplots(1, len(corridors) + 1, figsize=(4 * (len(corridors) + 1), 3.2), squeeze=False)
    finals = curves.sort_values("timesteps").groupby(["method", "corridor", "seed"], as_index=False).last()
    for method, runs in finals.groupby("method"):
        axes[0][0].scatter(runs["corridor"], runs["success"], color=colors[method], alpha=0.6, s=18)
        means = runs.groupby("corridor")["success"].mean()
        axes[0][0].plot(means.index, means.values, color=colors[method], label=method)
    axes[0][0].set_xscale("log")
    axes[0][0].set_xticks(corridors, [str(c) for c in corridors])
    axes[0][0].set_title("final success")
    axes[0][0].set_ylim(-0.02, 1.02)
    axes[0][0].set_xlabel("corridor length (steps from cue to turn)")
    for ax, corridor in zip(axes[0][1:], corridors):
        for (method, _), run in curves[curves["corridor"] == corridor].groupby(["method", "seed"]):
            ax.plot(run["timesteps"], run["success"], color=colors[method], alpha=0.8, marker=".")
        ax.set_title(f"corridor {corridor}")
        ax.set_xlabel("env steps")
        ax.set_ylim(-0.02, 1.02)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    axes[0][0].set_ylabel("success rate (100 greedy episodes)")
    handles = [plt.Line2D([], [], color=c, label=m) for m, c in colors.items() if m in set(curves["method"])]
    axes[0][-1].legend(handles=handles, fontsize=8, loc="lower right")
    save_figure(fig, path, dpi=100)


def throughput_tables(table: pd.DataFrame) -> str:
    """Medians over rounds per thread count and method (``vs_recurrent_ppo``: divided by RecurrentPPO's run of the
    same round and thread count), then every run."""
    from sb3_masked_attention.evaluation.report import to_markdown

    table = table.copy()
    if "threads" not in table:
        table.insert(1, "threads", 1)
    if "round" not in table:
        table.insert(0, "round", 0)
    reference = table[table["method"] == "recurrent_ppo"].set_index(["round", "threads"])["steps_per_s"]
    keys = list(zip(table["round"], table["threads"]))
    table["vs_recurrent_ppo"] = (table["steps_per_s"] / reference.reindex(keys).to_numpy()).round(2)
    rollout_reference = table[table["method"] == "recurrent_ppo"].set_index(["round", "threads"])["rollout_steps_per_s"]
    table["rollout_vs_recurrent_ppo"] = (table["rollout_steps_per_s"] / rollout_reference.reindex(keys).to_numpy()).round(2)
    columns = ["steps_per_s", "vs_recurrent_ppo", "rollout_steps_per_s", "rollout_vs_recurrent_ppo", "peak_rss_mb"]
    medians = table.groupby(["threads", "method"], sort=False)[columns].median().reset_index()
    return (
        f"Median over {table['round'].nunique()} round(s):\n\n"
        + to_markdown(medians)
        + "\n\nEvery run:\n\n"
        + to_markdown(table)
        + "\n"
    )


def throughput_section(table: pd.DataFrame) -> str:
    if not len(table):
        return ""
    return (
        "Command: `python bench/memory.py throughput --out results/benchmarks && python bench/memory.py report`. "
        f"{ENV_ID} at rl-zoo's tuned "
        f"`ppo_lstm` settings (8 envs, n_steps 32, batch 256, 20 epochs) for every method, {STEPS} steps each, each "
        "method in its own process, one after another, in rounds (each method once per round and thread count; "
        "`vs_recurrent_ppo` divides by RecurrentPPO's run of the same round and thread count). `threads`: "
        "`torch.set_num_threads`. `rollout_steps_per_s` times `collect_rollouts` alone; `peak_rss_mb` is the "
        "process's peak resident memory. Where the time goes: `memory_profile.md`.\n\n" + throughput_tables(table)
    )


def report(out: Path = OUT) -> None:
    """``out/memory.md`` from the CSVs in ``out`` (default the committed results/benchmarks)."""
    from sb3_masked_attention.evaluation.inference import seeds_summary
    from sb3_masked_attention.evaluation.report import to_markdown
    from sb3_masked_attention.io import read_rows, write_text_atomic

    tmaze_rows = read_rows(out / "memory_tmaze.csv")
    text = "# Long-memory benchmark\n\n" + throughput_section(read_rows(out / "memory_throughput.csv"))
    before = read_rows(out / "memory_throughput_before.csv")
    if len(before):
        text += (
            "\n### Before issue 34 (the speed work)\n\nThe same command at commit f0dc202 (one torch thread only), kept "
            "as the baseline the speed-ups are measured against; `memory_throughput_before.csv`.\n\n"
            + throughput_tables(before)
        )
    busy = read_rows(out / "memory_threads.csv")
    if len(busy):
        per_copy = busy.pivot_table(index="method", columns="threads", values="steps_per_s", aggfunc="mean")
        per_copy.columns = [f"{n} thread(s): steps/s per run" for n in per_copy.columns]
        text += (
            "\n## Threads on a busy machine\n\nCommand: `python bench/memory.py threads --out results/benchmarks`. "
            "Two copies of each method "
            "train at once (two runs sharing the two cores, as a study with two workers does), at each thread count; "
            "the mean steps/s of the two copies. With the quiet-machine rounds above this is what `--threads` "
            "defaults to (1).\n\n" + to_markdown(per_copy.reset_index()) + "\n\nEvery run:\n\n" + to_markdown(busy) + "\n"
        )
    if len(tmaze_rows):
        curves = read_rows(out / "memory_tmaze_curves.csv")
        finished = curves.merge(tmaze_rows[["method", "corridor", "seed"]])  # runs with a summary row only
        plot_tmaze(finished, out / "memory_tmaze.png")
        order = finished["method"].map({method: i for i, method in enumerate(TMAZE_METHODS)})
        finished = finished.assign(order=order).sort_values(["order", "corridor", "seed", "timesteps"]).drop(columns="order")
        summary = seeds_summary(finished.rename(columns={"success": "score"}), 0.95, by=("method", "corridor"))
        text += (
            "\n## Passive T-Maze range\n\n"
            "Command: `python bench/memory.py tmaze --methods transformer_ppo recurrent_ppo mlp_framestack "
            "--out results/benchmarks`. "
            f"Budget per run: max(200k, 400 episodes) env steps, the same for every method at a corridor length; "
            f"{TMAZE_ENVS} envs, {TMAZE_PPO}, learning rate {TMAZE_LR} decayed linearly to 0, evaluated "
            f"{TMAZE_EVALS} times per run on {TMAZE_EVAL_EPISODES} greedy episodes (success = the right turn). "
            "TransformerPPO: memory = the next power of two >= the episode, n_steps = max(64, episode). RecurrentPPO: "
            "n_steps = the episode and one minibatch per epoch (backpropagation through time spans whole episodes). "
            "PPO-MLP: the last corridor + 1 observations stacked. First reached 95%: the median over the seeds that "
            "reached it, (k/n) seeds.\n\n![](memory_tmaze.png)\n\n"
            + to_markdown(summary)
            + "\n\nEvery run:\n\n"
            + to_markdown(tmaze_rows)
        )
    pilot_rows = read_rows(out / "memory_tmaze_pilot.csv")
    if len(pilot_rows):
        text += (
            "\n## T-Maze settings pilots\n\n"
            "Command: `python bench/memory.py pilot --methods transformer_ppo recurrent_ppo --out results/benchmarks`. "
            "The sweep's settings with "
            "the variant's changes, four variants per method at corridor 200, seed 0 (and two more for TransformerPPO "
            "on the sweep run that dipped after solving: corridor 500, seed 1); `success_curve` lists the greedy "
            "success at each evaluation (evenly spaced, then the final one). One run per variant: a pilot, not a study. "
            "Identical RecurrentPPO curves are not a copying error: a greedy policy that always turns the same way "
            "scores the share of that cue among the evaluation episodes, which are the same for every run. The last "
            "five RecurrentPPO rows (issue 35's diagnosis) start its LSTMs' forget gates at bias 2 (or 1) instead of "
            "PyTorch's ~0 (`set_forget_bias`), at corridors 20 and 50 beside the sweep's settings: with a gate that "
            "keeps half the cell state a step, the cue's gradient fades as 0.5^corridor."
            "\n\n" + to_markdown(pilot_rows)
        )
    scores_path = ROOT / "results" / "memory" / "study" / "scores.csv"
    if scores_path.exists():
        scores = read_rows(scores_path)
        text += (
            "\n## Sample efficiency on CartPoleNoVel-v1\n\n"
            "Command: `sb3ma study run studies/memory.yml --dir results/memory/study --workers 1` (settings and "
            "endpoints in the study file: rl-zoo's tuned ppo_lstm settings for both, TransformerPPO at lr lin_3e-4), "
            "then `python bench/memory.py report`. Mean return of 10 greedy episodes every 5000 steps; first reached "
            "475: the median over the seeds that reached it (k/n); final: the last evaluation.\n\n"
            + to_markdown(seeds_summary(scores, 475.0, by=("method",)))
        )
    write_text_atomic(out / "memory.md", text)
    print(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["throughput", "threads", "tmaze", "pilot", "report"])
    parser.add_argument("--rounds", type=int, default=2, help="throughput: rounds of every method (default: 2)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="throughput: torch threads (default: 1 2)")
    out_option(parser)
    parser.add_argument("--corridors", type=int, nargs="+", default=[50, 200, 500, 1000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(TMAZE_METHODS), choices=TMAZE_METHODS)
    args = parser.parse_args()
    out = (args.out or OUT) if args.part == "report" else measuring_folder(args.out, "memory")
    if args.part == "tmaze":
        tmaze(args.corridors, args.seeds, args.methods, out)
    elif args.part == "pilot":
        pilot(args.methods, out)
    elif args.part == "throughput":
        throughput(args.rounds, tuple(args.threads), out / "memory_throughput.csv")
    elif args.part == "threads":
        busy_threads(tuple(args.threads), out / "memory_threads.csv")
    else:
        report(out)
    sys.exit(0)
