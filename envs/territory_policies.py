"""Scripted TerritoryControl strategies: the bots' levels, and reference policies for the agent's seat.

A level is one row of six numbers read by :func:`envs.territory_kernels.scripted_orders` (the same rule
drives a bot and, through :meth:`TerritoryControlEnv.scripted_action`, the agent's seat):

============  ==============  ===============  ============  ==============  ===============  ================
level         expand reserve  expand fraction  attack ratio  attack reserve  attack fraction  attack while
                                                                                              expanding
============  ==============  ===============  ============  ==============  ===============  ================
``passive``   --              0 (never)        --            --              0 (never)        --
``expander``  0.3 of cap      0.5              --            --              0 (never)        --
``easy``      0.5 of cap      0.25             3.0 x         0.8 of cap      0.25             no
``medium``    0.3 of cap      0.5              1.5 x         0.5 of cap      0.5              no
``hard``      0.3 of cap      0.25             1.2 x         0.4 of cap      0.25             yes
============  ==============  ===============  ============  ==============  ===============  ================

Expand: into bordering neutral land when no expansion is under way and the troops at home are at least
the reserve. Attack: the bordering player with the fewest troops, when its own troops are at least the
ratio times theirs and the reserve, and no attack on it is under way. Fractions are of the troops at
home and are among :data:`envs.territory.TROOP_FRACTIONS`, so the agent's seat can play every level.

Reference policies for the agent's seat (``reference_policy(name)``): ``"wait"`` (never acts), ``"random"``
(uniform over valid targets and over fractions), ``"constant"`` (10% of the troops into neutral land every step while
any borders the agent: the simplest policy that ever wins, a floor for a learner) and each level's name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

#: Level name -> (expand reserve, expand fraction, attack ratio, attack reserve, attack fraction, attack while expanding).
LEVELS: dict[str, tuple[float, float, float, float, float, float]] = {
    "passive": (0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "expander": (0.3, 0.5, 0.0, 0.0, 0.0, 0.0),
    "easy": (0.5, 0.25, 3.0, 0.8, 0.25, 0.0),
    "medium": (0.3, 0.5, 1.5, 0.5, 0.5, 0.0),
    "hard": (0.3, 0.25, 1.2, 0.4, 0.25, 1.0),
}
#: Reference policies for the agent's seat ("wait" plays like a passive bot), weakest expected first.
REFERENCE_POLICIES = ("wait", "random", "constant", "expander", "easy", "medium", "hard")


def strategy_row(level: Any) -> np.ndarray:
    """The level's row for the kernels, float64 ``(6,)``."""
    if level not in LEVELS:
        raise ValueError(f"bot level {level!r} is unknown: expected one of {list(LEVELS)}")
    return np.array(LEVELS[level], dtype=np.float64)


Policy = Callable[[Any], np.ndarray]


def reference_policy(name: Any, seed: int = 0) -> Policy:
    """A policy for the agent's seat: ``policy(env) -> action`` (``env`` a TerritoryControlEnv or a wrapper of one).

    :param name: ``"wait"``, ``"random"``, ``"constant"`` or a level of :data:`LEVELS`.
    :param seed: seeds ``"random"``.
    """
    if name not in REFERENCE_POLICIES:
        raise ValueError(f"reference policy {name!r} is unknown: expected one of {list(REFERENCE_POLICIES)}")
    if name == "wait":
        return lambda env: np.zeros(2, dtype=np.int64)
    if name == "constant":  # waits once no neutral land borders the agent
        return lambda env: np.array([1, 0] if env.unwrapped.action_masks()[1] else [0, 0], dtype=np.int64)
    if name == "random":
        rng = np.random.default_rng(seed)

        def random_valid(env: Any) -> np.ndarray:
            game = env.unwrapped
            targets = np.flatnonzero(game.action_masks()[: game.num_bots + 2])
            return np.array([rng.choice(targets), rng.integers(game.action_space.nvec[1])], dtype=np.int64)

        return random_valid
    return lambda env: env.unwrapped.scripted_action(name)
