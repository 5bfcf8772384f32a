"""Gymnasium environments of sb3-masked-attention, registered under the ``sb3ma/`` namespace.

``import envs`` registers them (and, through ``sb3_masked_attention``, the policy aliases), so
rl-zoo finds both with ``--gym-packages envs``.
"""

from gymnasium.envs.registration import register, registry

import sb3_masked_attention  # noqa: F401  (registers the SB3 policy aliases for rl-zoo)
from envs.tmaze import TMazeEnv

__all__ = ["TMazeEnv"]

if "sb3ma/TMaze-v0" not in registry:
    register(id="sb3ma/TMaze-v0", entry_point="envs.tmaze:TMazeEnv", max_episode_steps=10_000)
