"""Record where a transformer looks while it acts: AD models (``model.pt``) in in-context evaluation, and
SB3 models (``.zip``) whose features extractor is the head-masked transformer.

The ``.npz`` written (context slots are right-aligned: slot ``C - 1`` is the newest token):

==================  ==============================  ==============================================
key                 shape / dtype                   meaning
==================  ==============================  ==============================================
``last_query``      (steps, L, H, C) float16        the newest query's attention over the context
``valid``           (steps, C) bool                 which context slots hold a token
``positions``       (steps, C) int64                absolute index of each slot's token (-1: empty)
``rewards``         (steps,) float32                reward received after the step's action
``episode_starts``  (steps,) bool                   the step is the first of an episode
``full_steps``      (S,) int64                      steps whose whole query-by-key matrices are kept
``full_attention``  (S, L, H, C, C) float16         those matrices (rows: queries, columns: keys)
``full_valid``      (S, C) bool                     context slots valid at those steps
``head_fractions``  (H,) float32                    each head's hidden share of the oldest history
``meta``            () str                          JSON: model, env id, kind, context length
==================  ==============================  ==============================================

Memory is bounded and known before the run starts: ``last_query`` is preallocated for ``steps`` rows
of ``L x H x C`` float16 values (``C`` = the model's context: ``context_len`` for AD, ``history_len``
for SB3), and only ``full_samples`` full matrices are kept, at evenly spaced steps; nothing grows
with the episode count. For very long runs record fewer rows with ``stride`` (every k-th step).
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any, cast

import numpy as np
import torch

from sb3_masked_attention.io import load_npz, save_npz
from sb3_masked_attention.validation import check_int

KEYS = (
    "last_query",
    "valid",
    "positions",
    "rewards",
    "episode_starts",
    "full_steps",
    "full_attention",
    "full_valid",
    "head_fractions",
)


class AttentionRecorder:
    """Preallocated, bounded store of captured attention (see the module docstring for the layout).

    :param steps: rows of ``last_query`` to record.
    :param n_layers: transformer layers.
    :param n_heads: heads per layer.
    :param context: context slots ``C``.
    :param full_samples: full matrices to keep, at evenly spaced steps.
    """

    def __init__(self, steps: int, n_layers: int, n_heads: int, context: int, full_samples: int = 6) -> None:
        self.steps, self.context = check_int("steps", steps), check_int("context", context)
        full_samples = check_int("full_samples", full_samples, minimum=0)
        self.last_query = np.zeros((steps, n_layers, n_heads, context), dtype=np.float16)
        self.valid = np.zeros((steps, context), dtype=bool)
        self.positions = np.full((steps, context), -1, dtype=np.int64)
        self.rewards = np.zeros(steps, dtype=np.float32)
        self.episode_starts = np.zeros(steps, dtype=bool)
        self.full_steps = (
            np.unique(np.linspace(0, steps - 1, full_samples).round().astype(np.int64))
            if full_samples
            else np.zeros(0, np.int64)
        )
        self.full_attention = np.zeros((len(self.full_steps), n_layers, n_heads, context, context), dtype=np.float16)
        self.full_valid = np.zeros((len(self.full_steps), context), dtype=bool)
        self.count = 0

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.last_query, self.valid, self.positions, self.full_attention, self.full_valid))

    def wants_full(self) -> bool:
        """Whether the next recorded step is one whose full matrices are kept."""
        return self.count in set(self.full_steps.tolist())

    def record(
        self,
        last_query: list[torch.Tensor],
        first_position: int,
        reward: float = 0.0,
        episode_start: bool = False,
        full: list[torch.Tensor] | None = None,
    ) -> None:
        """Store one step.

        :param last_query: per layer, the newest query's weights ``(H, n)`` over the ``n`` context tokens.
        :param first_position: absolute index of the oldest of those tokens.
        :param reward: reward after the step's action.
        :param episode_start: the step is the first of an episode.
        :param full: per layer ``(H, n, n)`` matrices, on a step where :meth:`wants_full`.
        """
        if self.count >= self.steps:
            raise ValueError(f"the recorder is full ({self.steps} steps)")
        n = last_query[0].shape[-1]
        slots = slice(self.context - n, self.context)
        self.last_query[self.count, :, :, slots] = torch.stack(last_query).cpu().numpy()
        self.valid[self.count, slots] = True
        self.positions[self.count, slots] = np.arange(first_position, first_position + n)
        self.rewards[self.count] = reward
        self.episode_starts[self.count] = episode_start
        if full is not None:
            index = int(np.flatnonzero(self.full_steps == self.count)[0])
            self.full_attention[index, :, :, slots, slots] = torch.stack(full).cpu().numpy()
            self.full_valid[index, slots] = True
        self.count += 1

    def save(self, path: str | os.PathLike, head_fractions: tuple[float, ...], meta: dict[str, Any]) -> None:
        """Write the recorded steps to ``path`` (atomically)."""
        keep = self.full_steps < self.count
        arrays = {
            "last_query": self.last_query[: self.count],
            "valid": self.valid[: self.count],
            "positions": self.positions[: self.count],
            "rewards": self.rewards[: self.count],
            "episode_starts": self.episode_starts[: self.count],
            "full_steps": self.full_steps[keep],
            "full_attention": self.full_attention[keep],
            "full_valid": self.full_valid[keep],
            "head_fractions": np.asarray(head_fractions, dtype=np.float32),
        }
        save_npz(path, arrays, meta)


def load_capture(path: str | os.PathLike) -> dict[str, Any]:
    """Read a capture ``.npz``; ``meta`` comes back as a dict."""
    capture, meta = load_npz(path, (*KEYS, "meta"), "capture file", "sb3ma attention capture")
    capture["meta"] = meta
    if capture["last_query"].shape[0] == 0:
        raise ValueError(f"{str(path)!r} holds no steps")
    for key in ("last_query", "full_attention", "head_fractions"):  # attention weights and head fractions are shares
        values = np.asarray(capture[key], dtype=np.float64)
        bad = ~np.isfinite(values) | (values < 0) | (values > 1.001)  # float16 rounding of a weight of 1
        if bad.any():
            raise ValueError(
                f"capture file {str(path)!r}: {key} has {int(bad.sum())} value(s) that are NaN, infinite or outside "
                f"[0, 1] (first {float(values[bad][0])}): attention weights are shares; nothing is analysed from it"
            )
    if not np.isfinite(np.asarray(capture["rewards"], dtype=np.float64)).all():
        raise ValueError(f"capture file {str(path)!r}: rewards has NaN or infinite values")
    return capture


@torch.no_grad()
def capture_ad(
    model_path: str | os.PathLike,
    out: str | os.PathLike,
    steps: int = 500,
    goal: tuple[int, int] | None = None,
    stride: int = 1,
    full_samples: int = 6,
    seed: int = 0,
) -> AttentionRecorder:
    """Capture an AD model's attention during in-context evaluation on one goal (default: the first test goal).

    Runs ``steps * stride`` environment steps (consecutive episodes, context carried) and records every
    ``stride``-th one. Full matrices are recomputed over the current context at the sampled steps.
    """
    from sb3_masked_attention.ad.evaluate import env_goals, make_goal_envs
    from sb3_masked_attention.ad.train import load_ad_model

    steps, stride = check_int("steps", steps), check_int("stride", stride)
    model, meta = load_ad_model(model_path)
    goal = (goal[0], goal[1]) if goal is not None else env_goals(meta["env_id"], "test", meta["env_kwargs"])[0]
    env = make_goal_envs(meta["env_id"], [goal], meta["env_kwargs"])[0]
    n_actions, context = model.n_actions, model.context_len
    recorder = AttentionRecorder(steps, len(model.blocks), model.config["n_heads"], context, full_samples)
    generator = torch.Generator().manual_seed(seed)
    window: deque[tuple[torch.Tensor, ...]] = deque(maxlen=context)  # raw inputs, for the full matrices
    cache, total = model.new_cache(), 0
    while recorder.count < steps:
        obs, _ = env.reset(seed=seed + total)
        prev_action, prev_reward, t, done = torch.tensor([n_actions]), torch.zeros(1), 0, False
        while not done and recorder.count < steps:
            inputs = (torch.as_tensor(obs)[None], prev_action, prev_reward, torch.tensor([t]))
            window.append(inputs)
            logits, weights = model.step(cache, *inputs, need_weights=True)
            action = torch.multinomial(logits.softmax(-1), 1, generator=generator)[:, 0]
            obs, reward, terminated, truncated, _ = env.step(int(action))
            done, t = terminated or truncated, t + 1
            if total % stride == 0:
                full = None
                if recorder.wants_full():
                    stacked = [torch.stack(column, dim=1) for column in zip(*window)]
                    _, matrices = model(*stacked, need_weights=True)
                    full = [m[0] for m in matrices]
                recorder.record([w[0, :, 0] for w in weights], total + 1 - len(window), float(reward), t == 1, full)
            prev_action, prev_reward, total = action, torch.tensor([float(reward)]), total + 1
    recorder.save(
        out,
        model.head_fractions,
        {
            "model": str(model_path),
            "kind": "ad",
            "env_id": meta["env_id"],
            "goal": list(goal),
            "context": context,
            "stride": stride,
        },
    )
    return recorder


@torch.no_grad()
def capture_sb3(
    model_path: str | os.PathLike,
    env_id: str,
    out: str | os.PathLike,
    steps: int = 500,
    algo: str = "ppo",
    env_kwargs: dict[str, Any] | None = None,
    stride: int = 1,
    full_samples: int = 6,
    seed: int = 0,
) -> AttentionRecorder:
    """Capture the head-masked transformer of an SB3 model acting (deterministically) in ``env_id``.

    The context is the model's history window; ``positions`` count env steps since the start of the run.
    """
    from sb3_masked_attention.evaluation.model_eval import make_eval_env, transformer_of
    from sb3_masked_attention.weights import load_sb3_model
    from sb3_masked_attention.wrappers import VALID_KEY

    steps, stride = check_int("steps", steps), check_int("stride", stride)
    model = load_sb3_model(model_path, algo)
    extractor = transformer_of(model)
    env = make_eval_env(model, env_id, seed, env_kwargs)
    context = extractor.history_len
    attentions = extractor.attentions()
    recorder = AttentionRecorder(steps, len(attentions), attentions[0].n_heads, context, full_samples)
    obs: Any = env.reset()
    total, start = 0, True
    while recorder.count < steps:
        action, _ = model.predict(obs, deterministic=True)
        if total % stride == 0:
            tensors, _ = model.policy.obs_to_tensor(obs)
            _, weights = extractor.forward_with_attention(cast(dict, tensors))
            n = int((obs[VALID_KEY][0] > 0).sum())
            full = [w[0, :, -n:, -n:] for w in weights] if recorder.wants_full() else None
            next_obs, reward, done, _ = env.step(action)
            recorder.record([w[0, :, -1, -n:] for w in weights], total + 1 - n, float(reward[0]), start, full)
        else:
            next_obs, reward, done, _ = env.step(action)
        obs, total, start = next_obs, total + 1, bool(done[0])
    env.close()
    recorder.save(
        out,
        extractor.head_fractions,
        {"model": str(model_path), "kind": "sb3", "env_id": env_id, "context": context, "stride": stride},
    )
    return recorder
