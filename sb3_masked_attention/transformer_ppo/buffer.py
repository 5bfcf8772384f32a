"""A rollout buffer that stores each observation once and what the transformer memory needs to replay it.

Beside SB3's Dict rollout data it keeps, per step and env, the token's block inputs for every layer
(``hidden``, ``L x d_model`` floats) and the number of valid memory slots it read (``n_valid``), and, per env,
the memory as it was when the rollout began (``prefix``, ``L x M x d_model``), all on the policy's device (a step
adds them without a copy to the host). Env ``e``'s stream is then
``[prefix_e ; hidden_e]``, and sample ``t`` read slots ``t .. t + M - 1`` of it, of which the newest
``n_valid`` were valid: no window is ever stored.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import torch
from stable_baselines3.common.buffers import DictRolloutBuffer
from stable_baselines3.common.type_aliases import DictRolloutBufferSamples

#: Extra keys of each sample's observation dict: where its memory lies (read by the policy in training).
MEMORY_ENV, MEMORY_STEP, MEMORY_VALID = "_memory_env", "_memory_step", "_memory_valid"
#: Extra key of each sample's observation dict when the env gave invalid-action masks: the step's mask.
ACTION_MASK = "_action_mask"


class TransformerRolloutBuffer(DictRolloutBuffer):
    """:class:`~stable_baselines3.common.buffers.DictRolloutBuffer` plus the memory replay data.

    Each sample's observation dict also holds :data:`MEMORY_ENV`, :data:`MEMORY_STEP` and :data:`MEMORY_VALID`
    (its env, its step and the valid memory slots it read), so SB3's ``PPO.train`` passes them to the policy.

    The memory arrays take their shape from the memory given to :meth:`set_prefix` at each rollout's start.
    """

    def reset(self) -> None:
        super().reset()
        self.hidden: torch.Tensor | None = None
        self.prefix: torch.Tensor | None = None
        self.n_valid = torch.zeros((self.buffer_size, self.n_envs), dtype=torch.long, device=self.device)
        self.action_masks: np.ndarray | None = None

    def set_prefix(self, hidden: torch.Tensor) -> None:
        """The memory's block inputs ``(L, n_envs, M, d_model)`` when the rollout begins (oldest first)."""
        self.prefix = hidden.detach().to(self.device, copy=True)
        layers, _, _, d_model = self.prefix.shape
        self.hidden = torch.zeros(self.buffer_size, self.n_envs, layers, d_model, device=self.device)

    def add_memory(self, hidden: torch.Tensor, n_valid: torch.Tensor, action_masks: np.ndarray | None = None) -> None:
        """The step's block inputs ``(n_envs, L, d_model)``, valid slots read ``(n_envs,)`` and, where the env gives
        them, its invalid-action masks ``(n_envs, mask_size)``; call before :meth:`add`."""
        assert self.hidden is not None, "set_prefix() starts each rollout"
        self.hidden[self.pos] = hidden.detach()
        self.n_valid[self.pos] = n_valid
        if action_masks is not None:
            if self.action_masks is None:
                self.action_masks = np.ones((self.buffer_size, *action_masks.shape), dtype=bool)
            self.action_masks[self.pos] = action_masks

    def streams(self, device: torch.device | str) -> torch.Tensor:
        """Every env's stream of block inputs ``(L, n_envs, M + buffer_size, d_model)``: prefix, then the rollout."""
        assert self.prefix is not None and self.hidden is not None, "set_prefix() starts each rollout"
        return torch.cat([self.prefix, self.hidden.permute(2, 1, 0, 3)], dim=2).to(device)

    def rollout_observations(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        """The whole rollout's observations env by env (``(n_envs * buffer_size, ...)``, the order of :meth:`get`'s
        flattening) with each one's memory keys: what an exact memory re-encodes."""
        assert self.full, "the rollout is not complete"
        flat = (lambda array: array) if self.generator_ready else self.swap_and_flatten
        steps, envs = np.meshgrid(np.arange(self.buffer_size), np.arange(self.n_envs), indexing="ij")
        where = {MEMORY_ENV: envs, MEMORY_STEP: steps, MEMORY_VALID: self.n_valid.cpu().numpy()}
        observations = {key: flat(value) for key, value in self.observations.items()}
        observations.update({key: self.swap_and_flatten(value).ravel() for key, value in where.items()})
        return {key: torch.as_tensor(value, device=device) for key, value in observations.items()}

    def get(self, batch_size: int | None = None) -> Generator[DictRolloutBufferSamples, None, None]:  # type: ignore[override]
        assert self.full, "the rollout is not complete"
        if not self.generator_ready:
            steps, envs = np.meshgrid(np.arange(self.buffer_size), np.arange(self.n_envs), indexing="ij")
            self.step_index, self.env_index = self.swap_and_flatten(steps).ravel(), self.swap_and_flatten(envs).ravel()
            self.n_valid_flat = self.swap_and_flatten(self.n_valid.cpu().numpy()).ravel()
            if self.action_masks is not None:
                self.action_masks_flat = self.swap_and_flatten(self.action_masks)
        yield from super().get(batch_size)  # flattens the rest the same way (env-major)

    def _get_samples(self, batch_inds: np.ndarray, env=None) -> DictRolloutBufferSamples:  # type: ignore[override]
        samples = super()._get_samples(batch_inds, env)
        where = {
            MEMORY_ENV: torch.as_tensor(self.env_index[batch_inds], device=self.device),
            MEMORY_STEP: torch.as_tensor(self.step_index[batch_inds], device=self.device),
            MEMORY_VALID: torch.as_tensor(self.n_valid_flat[batch_inds], device=self.device),
        }
        if self.action_masks is not None:
            where[ACTION_MASK] = torch.as_tensor(self.action_masks_flat[batch_inds], device=self.device)
        return samples._replace(observations={**samples.observations, **where})
