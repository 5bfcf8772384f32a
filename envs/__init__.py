"""Gymnasium environments of sb3-masked-attention, registered under the ``sb3ma/`` namespace.

``import envs`` registers them (and, through ``sb3_masked_attention``, the policy aliases), so
rl-zoo finds both with ``--gym-packages envs``. Every memory task documents its exact
``optimal_return`` and ``random_return`` (attributes of the unwrapped env) for normalisation; the
strategy game TerritoryControl has none (reference policies' returns are in results/multiscale/).
"""

from gymnasium.envs.registration import register, registry

import sb3_masked_attention  # noqa: F401  (registers the SB3 policy aliases for rl-zoo)
from envs.darkroom import DarkKeyToDoorEnv, DarkroomEnv, DarkroomHardEnv, goal_split
from envs.popgym_tasks import (
    PopgymAutoencodeEasy,
    PopgymCountRecallEasy,
    PopgymRepeatFirstEasy,
    PopgymRepeatPreviousEasy,
    PopgymStatelessCartPoleEasy,
)
from envs.repeat_previous import RepeatPreviousEnv
from envs.territory import TerritoryControlEnv
from envs.tmaze import TMazeEnv

__all__ = [
    "TERRITORY_IDS",
    "DarkKeyToDoorEnv",
    "DarkroomEnv",
    "DarkroomHardEnv",
    "PopgymAutoencodeEasy",
    "PopgymCountRecallEasy",
    "PopgymRepeatFirstEasy",
    "PopgymRepeatPreviousEasy",
    "PopgymStatelessCartPoleEasy",
    "RepeatPreviousEnv",
    "TMazeEnv",
    "TerritoryControlEnv",
    "goal_split",
]

ENV_IDS = {
    "sb3ma/Darkroom-v0": "envs.darkroom:DarkroomEnv",
    "sb3ma/DarkroomHard-v0": "envs.darkroom:DarkroomHardEnv",
    "sb3ma/DarkKeyToDoor-v0": "envs.darkroom:DarkKeyToDoorEnv",
    "sb3ma/TMaze-v0": "envs.tmaze:TMazeEnv",
    "sb3ma/RepeatPrevious-v0": "envs.repeat_previous:RepeatPreviousEnv",
    "sb3ma/TerritoryControl-v0": "envs.territory:TerritoryControlEnv",  # the medium preset
    "sb3ma/TerritoryControl-small-v0": "envs.territory:TerritoryControlEnv",
    "sb3ma/TerritoryControl-medium-v0": "envs.territory:TerritoryControlEnv",
    "sb3ma/TerritoryControl-full-v0": "envs.territory:TerritoryControlEnv",
    # POPGym's diagnostic memory tasks, on POPGym's reward scale (envs/popgym_tasks.py)
    "sb3ma/popgym-RepeatFirstEasy-v0": "envs.popgym_tasks:PopgymRepeatFirstEasy",
    "sb3ma/popgym-CountRecallEasy-v0": "envs.popgym_tasks:PopgymCountRecallEasy",
    "sb3ma/popgym-AutoencodeEasy-v0": "envs.popgym_tasks:PopgymAutoencodeEasy",
    "sb3ma/popgym-RepeatPreviousEasy-v0": "envs.popgym_tasks:PopgymRepeatPreviousEasy",
    "sb3ma/popgym-StatelessCartPoleEasy-v0": "envs.popgym_tasks:PopgymStatelessCartPoleEasy",
}

#: TerritoryControl's ids: the default (medium) and one per preset (envs.territory.PRESETS).
TERRITORY_IDS = tuple(env_id for env_id in ENV_IDS if env_id.startswith("sb3ma/TerritoryControl"))

for _env_id, _entry_point in ENV_IDS.items():
    if _env_id not in registry:
        _preset = _env_id.split("-")[1] if _env_id in TERRITORY_IDS[1:] else None  # ...-{preset}-v0
        register(id=_env_id, entry_point=_entry_point, kwargs={"preset": _preset} if _preset else {})
