"""SB3 callbacks: TensorBoard logging of what the extractors attend to, and a resumable evaluation log."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import Image
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.vec_env import VecEnv

from sb3_masked_attention.episodes import play_episodes
from sb3_masked_attention.extractors.multiscale import MultiScaleExtractor
from sb3_masked_attention.extractors.transformer import HeadMaskedTransformerExtractor
from sb3_masked_attention.io import append_row, atomic_path, read_rows
from sb3_masked_attention.policies import features_extractors
from sb3_masked_attention.validation import check_int

_NOT_TEXT = ("stdout", "log", "json", "csv")  # images and histograms go to TensorBoard only


def head_statistics(weights: torch.Tensor, valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Entropy (nats) and mean look-back distance (steps) of the newest query, per head.

    :param weights: one layer's attention ``(B, H, T, T)``.
    :param valid: ``(B, T)`` validity of the history positions (None: all valid); rows with no
        valid position are left out.
    :return: two ``(H,)`` tensors, averaged over the batch.
    """
    last = weights[:, :, -1, :]  # (B, H, T): the newest query, the one the policy reads
    entropy = -(last * last.clamp_min(1e-12).log()).sum(-1)
    distance = torch.arange(last.shape[-1] - 1, -1, -1, dtype=last.dtype, device=last.device)
    lookback = (last * distance).sum(-1)
    keep = torch.ones(last.shape[0], dtype=torch.bool, device=last.device) if valid is None else valid.any(-1)
    return entropy[keep].mean(0), lookback[keep].mean(0)


class AttentionLoggingCallback(BaseCallback):
    """Every ``log_freq`` steps, run the features extractor on the latest observations with attention on
    and log it to TensorBoard.

    * :class:`MultiScaleExtractorWithAttention`: ``attention/scale_weight/<map>``, ``attention/cross/<map>``
      (cross-attention weight per scale, mean over batch and heads), ``attention/channel/<map>/stage<i>``
      (channel importance: histogram plus ``.../top`` = the largest mean gate) and the spatial attention
      maps as images ``attention/spatial/<map>/stage<i>`` (the first ``n_images`` environments).
    * :class:`HeadMaskedTransformerExtractor`: ``attention/layer<l>/head<h>/entropy`` and ``.../lookback``
      (mean steps into the past the newest query looks).

    :param log_freq: environment steps between two logs.
    :param n_images: environments whose spatial maps are logged as images.
    """

    def __init__(self, log_freq: int = 10_000, n_images: int = 1, verbose: int = 0) -> None:
        super().__init__(verbose)
        self.log_freq = check_int("log_freq", log_freq)
        self.n_images = check_int("n_images", n_images, minimum=0)
        self._last_log = -np.inf

    def _on_step(self) -> bool:
        if self.num_timesteps - self._last_log < self.log_freq:
            return True
        self._last_log = self.num_timesteps
        extractor = features_extractors(self.model.policy)[0]  # the actor's
        if not hasattr(extractor, "forward_with_attention"):
            return True
        policy = self.model.policy
        latest: Any = self.locals.get("new_obs", self.model._last_obs)
        obs_tensor, _ = policy.obs_to_tensor(latest)
        observations: Any = preprocess_obs(obs_tensor, policy.observation_space, normalize_images=policy.normalize_images)
        with torch.no_grad():
            _, attention = extractor.forward_with_attention(observations)
        if isinstance(extractor, MultiScaleExtractor):
            self._log_multiscale(extractor, attention)
        elif isinstance(extractor, HeadMaskedTransformerExtractor):
            self._log_heads(attention, observations.get("valid"))
        return True

    def _log_multiscale(self, extractor: MultiScaleExtractor, maps: dict[str, torch.Tensor]) -> None:
        keys = extractor.image_keys
        if "scale_weights" in maps:
            for key, weight in zip(keys, maps["scale_weights"].tolist()):
                self.logger.record(f"attention/scale_weight/{key}", weight)
        if "cross_attention" in maps:
            for key, weight in zip(keys, maps["cross_attention"].mean(dim=(0, 1)).tolist()):
                self.logger.record(f"attention/cross/{key}", weight)
        for name, value in maps.items():
            key, _, kind = name.partition("/")
            if kind.startswith("channel_"):
                stage = kind.removeprefix("channel_")
                importance = value.mean(0)
                self.logger.record(f"attention/channel/{key}/{stage}", importance, exclude=_NOT_TEXT)
                self.logger.record(f"attention/channel/{key}/{stage}/top", importance.max().item())
            elif kind.startswith("spatial_"):
                stage = kind.removeprefix("spatial_")
                for env in range(min(self.n_images, value.shape[0])):
                    image = value[env : env + 1].clamp(0, 1).cpu()  # (1, H, W) in [0, 1]
                    self.logger.record(f"attention/spatial/{key}/{stage}/env{env}", Image(image, "CHW"), exclude=_NOT_TEXT)

    def _log_heads(self, weights: Sequence[torch.Tensor], valid: torch.Tensor | None) -> None:
        for layer, layer_weights in enumerate(weights):
            entropy, lookback = head_statistics(layer_weights, None if valid is None else valid > 0)
            for head in range(entropy.shape[0]):
                self.logger.record(f"attention/layer{layer}/head{head}/entropy", entropy[head].item())
                self.logger.record(f"attention/layer{layer}/head{head}/lookback", lookback[head].item())


class EvaluationLogCallback(BaseCallback):
    """Evaluate every ``eval_freq`` steps; append one CSV row per evaluation; keep the best model.

    Unlike SB3's ``EvalCallback``, whose ``evaluations.npz`` restarts empty when training resumes,
    this appends to ``log_path`` (atomically) and reads the best score back from it, so a run
    resumed from a checkpoint keeps one continuous record. Action masks are used when the model is
    maskable and the env provides them.

    :param eval_env: a VecEnv with one environment.
    :param log_path: CSV with columns ``timesteps, training_seconds, mean_return, std_return`` and ``mean_<key>``
        for every ``info_keys`` entry found in the final ``info`` of the episodes. ``training_seconds`` is the
        wall-clock of training so far, evaluations excluded, summed over resumes (the time between a run's last
        evaluation and a kill is not counted).
    :param best_model_path: where the model with the best mean return is saved (None: not saved).
    :param seed: when given, the evaluation env restarts from ``seed + steps`` at each evaluation, and evaluations
        fall at the first step and then at the first step past each multiple of ``eval_freq``: both a function of
        the step alone, so a run resumed from a checkpoint evaluates as the straight run did.
    """

    def __init__(
        self,
        eval_env: VecEnv,
        log_path: str | os.PathLike,
        eval_freq: int = 10_000,
        n_eval_episodes: int = 5,
        best_model_path: str | os.PathLike | None = None,
        info_keys: Sequence[str] = ("is_success",),
        deterministic: bool = True,
        seed: int | None = None,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        if eval_env.num_envs != 1:
            raise ValueError(f"eval_env has {eval_env.num_envs} environments: expected 1")
        self.eval_env = eval_env
        self.log_path = Path(log_path)
        self.eval_freq = check_int("eval_freq", eval_freq)
        self.n_eval_episodes = check_int("n_eval_episodes", n_eval_episodes)
        self.best_model_path = None if best_model_path is None else Path(best_model_path)
        self.info_keys = tuple(info_keys)
        self.deterministic = deterministic
        self.seed = seed
        self._next_eval = 0

    def _init_callback(self) -> None:
        done = read_rows(self.log_path)
        self.best_return = float(done["mean_return"].max()) if len(done) else -np.inf
        last = int(done["timesteps"].max()) if len(done) else -1
        self._next_eval = max(self.num_timesteps, last) + self.eval_freq if last >= 0 else self.num_timesteps
        recorded = done["training_seconds"].dropna().tolist() if "training_seconds" in done else []
        self._clock_base = float(recorded[-1]) if recorded else 0.0
        self._clock_start, self._evaluating = time.perf_counter(), 0.0

    def evaluate(self) -> dict[str, Any]:
        """Play ``n_eval_episodes`` episodes; mean and std of returns and the means of the final info values."""
        if self.seed is not None:
            self.eval_env.seed(self.seed + self.num_timesteps)
        episodes = play_episodes(self.model, self.eval_env, self.n_eval_episodes, self.deterministic, self.info_keys)
        row = {"timesteps": self.num_timesteps, "mean_return": episodes.mean, "std_return": episodes.std}
        row.update({f"mean_{key}": float(np.mean(values)) for key, values in episodes.finals.items() if values})
        return row

    def _due(self) -> bool:
        step, n_envs = self.num_timesteps, self.training_env.num_envs
        if self.seed is None:  # the first step of this sitting, then every eval_freq steps after the last evaluation
            return step >= self._next_eval
        return step == n_envs or step // self.eval_freq > (step - n_envs) // self.eval_freq

    def _on_step(self) -> bool:
        if not self._due():
            return True
        self._next_eval = self.num_timesteps + self.eval_freq
        started = time.perf_counter()
        seconds = self._clock_base + started - self._clock_start - self._evaluating
        row = {"timesteps": self.num_timesteps, "training_seconds": round(seconds, 2), **self.evaluate()}
        self._evaluating += time.perf_counter() - started
        append_row(self.log_path, row)
        scores = {key: value for key, value in row.items() if key not in ("timesteps", "training_seconds")}
        for key, value in scores.items():
            self.logger.record(f"eval/{key}", value)
        if self.verbose:
            print(f"eval at {self.num_timesteps} steps: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.items()))
        if self.best_model_path is not None and row["mean_return"] > self.best_return:
            self.best_return = row["mean_return"]
            with atomic_path(self.best_model_path, suffix=".zip") as tmp:
                self.model.save(tmp)
        return True
