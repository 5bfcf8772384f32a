"""TransformerPPO: PPO whose policy keeps a transformer memory across steps (sb3-contrib style, like RecurrentPPO).

Rollouts feed one token per env per step and carry a :class:`~.policy.MemoryState` per env; the buffer keeps each
observation once plus each step's block inputs (:mod:`.buffer`). The update is SB3's ``PPO.train`` unchanged: each
sample's observation dict also carries where its memory lies in its env's stream, and the policy reads the memory
from the rollout's streams (:meth:`TransformerMemoryPolicy.replay`), so the first epoch reproduces the rollout's
log-probs and values.
"""

from __future__ import annotations

from typing import Any, ClassVar, cast

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.utils import obs_as_tensor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecNormalize

from sb3_masked_attention.transformer_ppo.buffer import TransformerRolloutBuffer
from sb3_masked_attention.transformer_ppo.policy import MemoryState, TransformerMemoryPolicy
from sb3_masked_attention.wrappers import OBS_KEY


def check_normalization(env: VecEnv | None, action_space: spaces.Space) -> None:
    """Refuse a ``VecNormalize`` that would normalise the validity flag or a one-hot previous action (Discrete and
    MultiDiscrete actions): they are flags, and running statistics would turn them into drifting offsets."""
    protected = {"valid"} | ({"prev_action"} if isinstance(action_space, (spaces.Discrete, spaces.MultiDiscrete)) else set())
    while isinstance(env, VecEnvWrapper):
        if isinstance(env, VecNormalize) and env.norm_obs:
            spaces_ = getattr(env.observation_space, "spaces", {})
            keys = env.norm_obs_keys if env.norm_obs_keys is not None else list(spaces_)
            if protected & set(keys):
                raise ValueError(
                    f"VecNormalize normalises the observation keys {sorted(protected & set(keys))}: TransformerPPO needs "
                    "them as they are; normalise only the others, e.g. VecNormalize(env, norm_obs_keys=['obs', "
                    "'prev_reward']) (rl-zoo: normalize: \"dict(norm_obs_keys=['obs', 'prev_reward'])\")"
                )
        env = env.venv


class TransformerPPO(PPO):
    """PPO with :class:`TransformerMemoryPolicy` (alias ``"TransformerMemoryPolicy"``); the env must be wrapped in
    ``HistoryWrapper(env, history_len=1)`` (``across_episodes=True`` keeps the memory across episodes).

    Takes PPO's arguments; the memory settings are policy keywords (``policy_kwargs=dict(memory_len=128, ...)``).
    Where the env has ``action_masks()`` (as MaskablePPO reads them) and the actions are Discrete or MultiDiscrete,
    rollouts draw valid actions only and the update uses the same masks.

    :param use_action_masks: read the env's invalid-action masks when it has them (False: ignore them).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {"TransformerMemoryPolicy": TransformerMemoryPolicy}
    policy: TransformerMemoryPolicy
    rollout_buffer: TransformerRolloutBuffer

    def __init__(
        self, policy: str | type[TransformerMemoryPolicy], env: Any, use_action_masks: bool = True, **kwargs: Any
    ) -> None:
        if kwargs.get("rollout_buffer_class") not in (None, TransformerRolloutBuffer):
            raise ValueError("TransformerPPO uses its own TransformerRolloutBuffer: do not pass rollout_buffer_class")
        kwargs["rollout_buffer_class"] = TransformerRolloutBuffer
        self._memory: MemoryState | None = None
        self.use_action_masks = bool(use_action_masks)
        super().__init__(policy, env, **kwargs)
        if self.env is not None:  # load() builds without an env, then calls set_env
            check_normalization(self.env, self.action_space)

    def _setup_model(self) -> None:
        if not (isinstance(self.observation_space, spaces.Dict) and OBS_KEY in self.observation_space.spaces):
            raise ValueError(
                f"TransformerPPO reads one token per step: wrap the env in HistoryWrapper(env, history_len=1) (its "
                f"observation space is {self.observation_space})"
            )
        super()._setup_model()

    def set_env(self, env: Any, force_reset: bool = True) -> None:
        super().set_env(env, force_reset)
        check_normalization(self.env, self.action_space)

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_memory"]

    def _setup_learn(self, total_timesteps: int, *args: Any, **kwargs: Any) -> tuple[int, BaseCallback]:
        reset = kwargs.get("reset_num_timesteps", args[1] if len(args) > 1 else True) or self._last_obs is None
        result = super()._setup_learn(total_timesteps, *args, **kwargs)
        if reset or self._memory is None:  # the envs were reset: an empty memory
            self._memory = self.policy.initial_state(self.n_envs)
        return result

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: TransformerRolloutBuffer,  # type: ignore[override]
        n_rollout_steps: int,
    ) -> bool:
        """SB3's rollout loop with a memory per env: one token per env per step."""
        assert self._last_obs is not None and self._memory is not None, "call learn(), which resets the envs"
        self.policy.set_training_mode(False)
        rollout_buffer.reset()
        with torch.no_grad():
            self.policy.refresh(self._memory)  # the weights changed since the cache was filled
        rollout_buffer.set_prefix(self._memory.memory_hidden())
        masking = self.use_action_masks and is_masking_supported(env)
        if self.use_sde:  # gSDE: one exploration matrix per env, drawn again every sde_sample_freq steps (SB3's loop)
            self.policy.reset_noise(env.num_envs)
        callback.on_rollout_start()
        for n_steps in range(n_rollout_steps):
            if self.use_sde and self.sde_sample_freq > 0 and n_steps > 0 and n_steps % self.sde_sample_freq == 0:
                self.policy.reset_noise(env.num_envs)
            masks = self.policy.check_action_masks(get_action_masks(env), env.num_envs) if masking else None
            with torch.no_grad():
                obs = cast(dict[str, torch.Tensor], obs_as_tensor(self._last_obs, self.device))  # type: ignore[arg-type]
                starts = torch.as_tensor(self._last_episode_starts, dtype=torch.float32, device=self.device)
                masks_t = None if masks is None else torch.as_tensor(masks, device=self.device).reshape(env.num_envs, -1)
                actions_t, values, log_probs, self._memory, hidden, n_valid = self.policy.forward_memory(
                    obs, self._memory, starts, action_masks=masks_t
                )
            actions = actions_t.cpu().numpy()
            clipped = actions
            if isinstance(self.action_space, spaces.Box):
                clipped = np.clip(actions, self.action_space.low, self.action_space.high)
            new_obs, rewards, dones, infos = env.step(clipped)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return False
            self._update_info_buffer(infos, dones)
            if isinstance(self.action_space, spaces.Discrete):
                actions = actions.reshape(-1, 1)
            for idx, done in enumerate(dones):  # bootstrap truncated episodes from the memory they ended with
                if done and infos[idx].get("terminal_observation") is not None and infos[idx].get("TimeLimit.truncated"):
                    terminal = cast(dict[str, torch.Tensor], self.policy.obs_to_tensor(infos[idx]["terminal_observation"])[0])
                    with torch.no_grad():
                        value = self.policy.predict_values_memory(
                            terminal,
                            self._memory.select([idx]),
                            torch.zeros(1, device=self.device),  # type: ignore[arg-type]
                        )
                    rewards[idx] += self.gamma * value.item()
            rollout_buffer.add_memory(hidden, n_valid, None if masks is None else masks.reshape(env.num_envs, -1))
            rollout_buffer.add(self._last_obs, actions, rewards, self._last_episode_starts, values, log_probs)  # type: ignore[arg-type]
            self._last_obs, self._last_episode_starts = new_obs, dones  # type: ignore[assignment]
        with torch.no_grad():
            starts = torch.as_tensor(dones, dtype=torch.float32, device=self.device)
            last_obs = cast(dict[str, torch.Tensor], obs_as_tensor(new_obs, self.device))  # type: ignore[arg-type]
            values = self.policy.predict_values_memory(last_obs, self._memory, starts)
        rollout_buffer.compute_returns_and_advantage(last_values=values, dones=dones)
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def train(self) -> None:
        """SB3's PPO update; each sample reads its memory from this rollout's streams."""
        rollout = self.rollout_buffer.rollout_observations(self.device) if self.policy.exact_memory else None
        with self.policy.replay(self.rollout_buffer.streams(self.device), rollout):
            super().train()

    def predict(  # type: ignore[override]
        self,
        observation: dict[str, np.ndarray],
        state: MemoryState | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, MemoryState]:
        """Actions and the memory to pass back next step (None at the start), as RecurrentPPO's ``predict``;
        ``action_masks`` as MaskablePPO's."""
        return self.policy.predict(observation, state, episode_start, deterministic, action_masks)
