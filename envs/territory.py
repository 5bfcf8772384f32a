"""TerritoryControl: a fast territory-control strategy game in the style of territorial.io / OpenFront.

Players own tiles of a land/water map. Troops grow with territory up to a cap; an attack sends
a fraction of a player's troops at a target (neutral land or a neighbouring player) and then
advances along the shared border every step until its troops run out or the border closes.
Neutral land is cheap and taken a whole border layer per step; a player's land costs more the
denser its troops are, and is taken half a layer per step. Water is impassable. A player who
owns nothing is eliminated.

Rules, per step (all constants are class attributes):

* troops ``T`` of a player with ``N`` tiles (at home and under way) grow by ``GROWTH_BASE + GROWTH_RATE * T * (1 - T / cap)``,
  ``cap = CAP_BASE + CAP_PER_TILE * N`` (so they decay towards the cap after losing land);
* an attack on neutral land takes ``min(frontier, troops / NEUTRAL_COST)`` random frontier tiles;
  on player ``q`` with density ``d = T_q / N_q`` it takes ``min(ceil(PLAYER_SPEED * frontier),
  troops / (1 + DEFENCE * d))`` tiles and the defender loses ``d`` troops per tile lost;
* an attack with no frontier left or too few troops for one tile ends; what is left returns home;
  troops under way in attacks count against the cap;
* bots act every ``bot_interval`` steps (staggered) by the scripted strategy of their ``bot_level``
  (``envs.territory_policies``): expand into neutral land above a troop reserve, attack the weakest
  bordering player when stronger by a margin;
* the game ends when the agent is eliminated, when it owns ``win_share`` of the land or is the last
  player standing (a win), or after ``max_steps`` steps, when the player with the most land wins.

Presets (``preset=``, and the registered ids ``sb3ma/TerritoryControl-{small,medium,full}-v0``) set the
map, the bots, the episode length and the observation resolution: :data:`PRESETS`. Every other argument
overrides its preset's value.

Speed: the game keeps the list of border tiles, per-block tile counts and the agent's centroid
up to date from the tiles that change; a step never rescans the map. Only the observation
windows (``local_map``, ``tactical_map``) are read afresh each step.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs import territory_kernels as kernels
from envs.territory_maps import (
    MAP_PRESETS,
    generate_map,
    is_map_file,
    load_map,
    seeded_map,
)
from envs.territory_policies import strategy_row
from sb3_masked_attention.validation import check_int, check_render_mode

WATER, NEUTRAL, AGENT = -1, 0, 1
#: Observation channels, in order, of ``global_map``, ``local_map`` and ``tactical_map``.
CHANNELS = ("own", "enemy", "neutral", "water", "own_border", "enemy_density")
#: Features of the ``global`` vector, all in [0, 1].
GLOBAL_FEATURES = (
    "troops_over_cap",
    "log_troops",
    "territory_share",
    "rank",  # 0 = first, 1 = last
    "players_alive",
    "time",
    "troops_attacking",
    "under_attack",
)
#: Fractions of the agent's troops an attack may send (second action component).
TROOP_FRACTIONS = (0.1, 0.25, 0.5, 0.75, 1.0)
#: Preset -> settings. ``map_resolution``/``tactical_size``: side of the map observations/the tactical one. The small
#: and medium presets' observations are small (64x64 at most) so that training runs at hundreds of steps/s on a CPU:
#: at medium, 128x128 maps made MaskablePPO 7.7x slower (``results/benchmarks/multiscale_training.md``). The small
#: and medium presets give the agent the bots' cadence (``action_interval`` 4): acting every tick starves growth, and a
#: learner then has four times fewer decisions per game. Small plays medium bots: against easy ones a constant order
#: (10% of the troops into neutral land every 4th tick) wins every game (``results/multiscale/reference_policies.csv``).
PRESETS: dict[str, dict[str, Any]] = {
    "small": {
        "map_size": 64,
        "num_bots": 2,
        "bot_level": "medium",
        "max_steps": 200,
        "action_interval": 4,
        "local_view_size": 32,
        "map_resolution": 32,
        "tactical_size": 16,
    },
    "medium": {
        "map_size": 256,
        "num_bots": 4,
        "bot_level": "medium",
        "max_steps": 500,
        "action_interval": 4,
        "local_view_size": 64,
        "map_resolution": 64,
        "tactical_size": 32,
    },
    "full": {
        "map_size": 1024,
        "num_bots": 10,
        "bot_level": "medium",
        "max_steps": 1000,
        "action_interval": 1,
        "map_resolution": 128,
        "tactical_size": 64,
    },
}

_PALETTE_SEED = 7


class TerritoryControlEnv(gym.Env):
    """Territory-control game; the agent is player 1, bots are players 2..``num_bots + 1``.

    Arguments left ``None`` take the value of ``preset``.

    :param preset: ``"small"``, ``"medium"`` or ``"full"`` (:data:`PRESETS`).
    :param map_name: ``"plains"``, ``"islands"``, ``"continents"``, or the path of a ``.png``
        (grey >= 128 is land) or ``.npy`` (non-zero is land) map file.
    :param map_size: side of the square map in tiles, 64 to 2048 (a map file is resampled to it;
        None: the file's size, or the preset's for a procedural map).
    :param num_bots: scripted opponents, 0 to 64.
    :param bot_level: the bots' strategy, ``"passive"``, ``"expander"``, ``"easy"``, ``"medium"`` or ``"hard"``
        (:data:`envs.territory_policies.LEVELS`).
    :param max_steps: game length: after it the game ends and the player with the most land wins.
    :param map_resolution: side of ``global_map`` and ``local_map``, 16 to 256.
    :param tactical_size: side (tiles and cells) of ``tactical_map``, 8 to ``map_size``.
    :param local_view_size: side of the window around the agent's territory shown in ``local_map``, 16 to
        ``map_size`` (None: the preset's, else ``min(256, map_size)``).
    :param map_seed: None draws a new procedural map every reset; an int fixes the map.
    :param bot_interval: bots reconsider their attacks every this many steps (game ticks).
    :param action_interval: game ticks per ``step``: the agent's order applies on the first, it waits on the others
        (the observation is made once, at the end); 4 gives the agent the bots' cadence. ``max_steps`` counts ticks.
        None: the preset's (4 at small and medium, 1 at full).
    :param win_share: the agent wins on owning this share of the land; against bots also by being the last player
        standing or having the most land after ``max_steps`` (ties included).

    Action ``MultiDiscrete([num_bots + 2, 5])``: target (0 wait, 1 neutral land, ``k >= 2`` player
    ``k``) and the index into :data:`TROOP_FRACTIONS`. An invalid target (not bordering, dead) is
    a no-op with ``info["invalid_action"] = True``; :meth:`action_masks` marks valid ones for
    MaskablePPO. Observation (``R = map_resolution``, ``K = tactical_size``): ``global_map`` (6, R, R)
    uint8, the whole map; ``local_map`` (6, R, R) uint8, the ``local_view_size`` window centred on the agent's
    territory; ``tactical_map`` (6, K, K) uint8, full resolution on the most contested border; channels
    :data:`CHANNELS` as fractions of each cell scaled to 0-255; ``global`` (8,) float32
    :data:`GLOBAL_FEATURES`. Reward: change in the agent's territory share each step, plus
    ``+1`` on winning and ``-1`` on elimination (a game lost on land at the end scores 0). ``info``:
    ``territory_share``, ``rank``, ``players_alive``, ``invalid_action``, and ``is_success`` (won) at the end
    of an episode. :meth:`scripted_action` plays a bot level from the agent's seat.
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 10}

    START_RADIUS = 2
    START_TROOPS = 100.0
    CAP_BASE, CAP_PER_TILE = 100.0, 10.0
    GROWTH_BASE, GROWTH_RATE = 1.0, 0.05
    NEUTRAL_COST, DEFENCE, PLAYER_SPEED = 1.0, 1.5, 0.5
    DENSITY_SCALE = 10.0  # troops per tile shown as a full enemy_density channel
    MIN_ATTACK = 1.0

    def __init__(
        self,
        map_name: str = "plains",
        map_size: int | None = None,
        num_bots: int | None = None,
        max_steps: int | None = None,
        local_view_size: int | None = None,
        map_seed: int | None = None,
        bot_interval: int = 4,
        action_interval: int | None = None,
        win_share: float = 0.8,
        render_mode: str | None = None,
        preset: str = "medium",
        bot_level: str | None = None,
        map_resolution: int | None = None,
        tactical_size: int | None = None,
    ) -> None:
        self.render_mode = check_render_mode(render_mode)
        if preset not in PRESETS:
            raise ValueError(f"preset={preset!r} is unknown: expected one of {list(PRESETS)}")
        self.preset = preset
        settings = PRESETS[preset]
        if is_map_file(map_name):
            self._file_land: np.ndarray | None = load_map(map_name, None if map_size is None else self._check_size(map_size))
            map_size = self._file_land.shape[0]
        elif map_name in MAP_PRESETS:
            self._file_land = None
        else:
            raise ValueError(f"map_name={map_name!r} is unknown: expected one of {sorted(MAP_PRESETS)} or a .png/.npy file")
        self.map_name = str(map_name)
        self.map_size = self._check_size(settings["map_size"] if map_size is None else map_size)
        self.num_bots = check_int("num_bots", settings["num_bots"] if num_bots is None else num_bots, minimum=0)
        if self.num_bots > 64:
            raise ValueError(f"num_bots={num_bots!r} is invalid: expected 0 to 64")
        self.bot_level = settings["bot_level"] if bot_level is None else bot_level
        self._bot_strategy = strategy_row(self.bot_level)
        self.max_steps = check_int("max_steps", settings["max_steps"] if max_steps is None else max_steps)
        self.map_resolution = check_int(
            "map_resolution", settings["map_resolution"] if map_resolution is None else map_resolution, minimum=16
        )
        if self.map_resolution > 256:
            raise ValueError(f"map_resolution={map_resolution!r} is invalid: expected 16 to 256")
        self.tactical_size = check_int(
            "tactical_size", settings["tactical_size"] if tactical_size is None else tactical_size, minimum=8
        )
        if self.tactical_size > self.map_size:
            raise ValueError(
                f"tactical_size={tactical_size!r} is larger than the map ({self.map_size} tiles): "
                f"expected 8 to {self.map_size}"
            )
        local_view_size = settings.get("local_view_size") if local_view_size is None else local_view_size
        if local_view_size is None:
            self.local_view_size = min(256, self.map_size)
        else:
            self.local_view_size = check_int("local_view_size", local_view_size, minimum=16)
            if self.local_view_size > self.map_size:
                raise ValueError(
                    f"local_view_size={local_view_size!r} is larger than the map ({self.map_size} tiles): "
                    f"expected 16 to {self.map_size}, or leave it unset (min(256, map_size))"
                )
        self.bot_interval = check_int("bot_interval", bot_interval)
        self.action_interval = check_int(
            "action_interval", settings["action_interval"] if action_interval is None else action_interval
        )
        if not 0.0 < float(win_share) <= 1.0:
            raise ValueError(f"win_share={win_share!r} is invalid: expected a value in (0, 1]")
        self.win_share = float(win_share)
        if map_seed is not None:
            check_int("map_seed", map_seed, minimum=0)
        self.map_seed = map_seed

        self.n_players = self.num_bots + 1
        side, tactical = self.map_resolution, self.tactical_size
        map_space = spaces.Box(0, 255, (len(CHANNELS), side, side), np.uint8)
        self.observation_space = spaces.Dict(
            {
                "global_map": map_space,
                "local_map": map_space,
                "tactical_map": spaces.Box(0, 255, (len(CHANNELS), tactical, tactical), np.uint8),
                "global": spaces.Box(0.0, 1.0, (len(GLOBAL_FEATURES),), np.float32),
            }
        )
        self.action_space = spaces.MultiDiscrete([self.num_bots + 2, len(TROOP_FRACTIONS)])
        self._setup_geometry()
        self._land: np.ndarray | None = None
        self._palette = self._make_palette()

    @staticmethod
    def _check_size(map_size: Any) -> int:
        size = check_int("map_size", map_size, minimum=64)
        if size > 2048:
            raise ValueError(f"map_size={map_size!r} is invalid: expected 64 to 2048")
        return size

    # ------------------------------------------------------------------ geometry (fixed per env)
    def _setup_geometry(self) -> None:
        s = self.map_size
        self._wp = s + 2  # padded width: a ring of water spares every bounds check
        self._offsets = np.array([-1, 1, -self._wp, self._wp], dtype=np.int64)
        self._res = min(s, self.map_resolution)  # per-block counts kept at this resolution
        coord = np.arange(s) * self._res // s
        block = np.full((s + 2, s + 2), -1, dtype=np.int64)
        block[1:-1, 1:-1] = coord[:, None] * self._res + coord[None, :]
        self._block = block.ravel()
        self._block_area = np.bincount(block[1:-1, 1:-1].ravel(), minlength=self._res**2).astype(np.float64)
        self._block_side = s / self._res
        self._upsample = np.arange(self.map_resolution) * self._res // self.map_resolution
        self._view = self.local_view_size
        self._block_scale = 255.0 / self._block_area
        self._block_stamp = np.zeros(self._res**2, dtype=bool)

    def _make_palette(self) -> np.ndarray:
        rng = np.random.default_rng(_PALETTE_SEED)
        palette = np.empty((self.n_players + 2, 3), dtype=np.uint8)
        palette[0] = (40, 80, 160)  # water
        palette[1] = (200, 200, 190)  # neutral
        palette[2] = (230, 40, 40)  # agent
        palette[3:] = rng.integers(40, 220, (self.n_players - 1, 3))
        return palette

    # ------------------------------------------------------------------ reset
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if self._file_land is not None:
            land = self._file_land
        elif self.map_seed is not None:
            land = seeded_map(self.map_name, self.map_size, self.map_seed)
        else:
            land = generate_map(self.map_name, self.map_size, self.np_random)
        self._init_state(land)
        self._spawn_players()
        self._refresh_contacts()
        self._prev_share = self._share()
        return self._observation(), self._info(invalid=False)

    def _init_state(self, land: np.ndarray) -> None:
        s, p1 = self.map_size, self.n_players + 1
        if self._land is not land:
            self._land = land
            self._land_tiles = int(land.sum())
            padded = np.zeros((s + 2, s + 2), dtype=bool)
            padded[1:-1, 1:-1] = land
            self._land_flat = padded.ravel()
            self._land_per_block = np.bincount(self._block[self._land_flat], minlength=self._res**2)
            self._water_channel = self._to_uint8(1.0 - self._land_per_block / self._block_area)
        self._global_pixels = np.zeros((len(CHANNELS), self._res**2), dtype=np.uint8)
        self._global_pixels[3] = self._water_channel
        n = (s + 2) ** 2
        self._owner = np.where(self._land_flat, NEUTRAL, WATER).astype(np.int16)
        self._owner2d = self._owner.reshape(s + 2, s + 2)
        self._is_border = np.zeros(n, dtype=bool)
        self._agent_border = np.zeros(n, dtype=bool)
        self._in_list = np.zeros(n, dtype=bool)
        self._border_buf = np.zeros(self._land_tiles + 1, dtype=np.int64)
        self._border_len = 0
        self._stamp = np.zeros(n, dtype=np.int64)
        self._tiles = np.zeros(p1, dtype=np.int64)
        self._tiles[NEUTRAL] = self._land_tiles
        self._block_counts = np.zeros((p1, self._res**2), dtype=np.int64)
        self._block_counts[NEUTRAL] = self._land_per_block
        self._agent_border_blocks = np.zeros(self._res**2, dtype=np.int64)
        self._agent_sum = np.zeros(2, dtype=np.float64)  # sum of the agent's (row, col), padded coordinates
        self._troops = np.zeros(p1, dtype=np.float64)
        self._alive = np.zeros(p1, dtype=bool)
        self._pool = np.zeros((p1, p1), dtype=np.float64)  # [attacker, target] troops under way
        self._adjacent = np.zeros((p1, p1), dtype=bool)
        self._contested_tile = -1
        self._stamp_id = 0
        self._steps = 0
        self._centre = (s // 2, s // 2)
        kernels.all_block_pixels(
            self._block_counts,
            self._land_per_block,
            self._block_scale,
            self._agent_border_blocks,
            self._block_side,
            self._global_pixels,
        )

    def _spawn_players(self) -> None:
        s, r = self.map_size, self.START_RADIUS
        land2d = self._land
        assert land2d is not None  # set by reset() before any spawn
        # Spawn where a whole start disc is land when possible (erosion by shifts).
        ok = land2d.copy()
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                ok[max(0, -dy) : s - max(0, dy), max(0, -dx) : s - max(0, dx)] &= land2d[
                    max(0, dy) : s + min(0, dy), max(0, dx) : s + min(0, dx)
                ]
        candidates = np.flatnonzero(ok)
        if len(candidates) < self.n_players:
            candidates = np.flatnonzero(land2d)
        if len(candidates) < self.n_players:
            raise ValueError(f"the map has {len(candidates)} land tiles: too few for {self.n_players} players")
        sample = self.np_random.permutation(candidates)[: 64 * self.n_players]
        rows, cols = sample // s, sample % s
        min_dist = s / (2.0 * math.sqrt(self.n_players))
        chosen: list[int] = []
        while len(chosen) < self.n_players:
            for i in range(len(sample)):
                if len(chosen) == self.n_players:
                    break
                far = [(rows[i] - rows[j]) ** 2 + (cols[i] - cols[j]) ** 2 >= min_dist**2 for j in chosen]
                if i not in chosen and all(far):
                    chosen.append(i)
            min_dist /= 2.0  # crowded map: relax the spacing and fill the remaining seats
        chosen = [int(sample[i]) for i in chosen]
        disc = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= r * r]
        for player, c in enumerate(chosen, start=AGENT):
            cy, cx = divmod(c, s)
            tiles = np.array(
                [(cy + dy + 1) * self._wp + cx + dx + 1 for dy, dx in disc if 0 <= cy + dy < s and 0 <= cx + dx < s]
            )
            tiles = tiles[self._owner[tiles] == NEUTRAL]
            self._set_owner(tiles, np.full(len(tiles), player, dtype=np.int16))
            self._troops[player] = self.START_TROOPS
            self._alive[player] = True

    # ------------------------------------------------------------------ incremental state
    def _next_stamp(self) -> int:
        self._stamp_id += 1
        return self._stamp_id

    def _set_owner(self, tiles: np.ndarray, new: np.ndarray) -> None:
        """Give ``tiles`` (padded flat indices, unique) to ``new`` owners; update every derived array."""
        self._border_len = kernels.set_owner(
            tiles,
            new,
            len(tiles),
            self._owner,
            self._land_flat,
            self._offsets,
            self._block,
            self._tiles,
            self._block_counts,
            self._is_border,
            self._agent_border,
            self._agent_border_blocks,
            self._in_list,
            self._border_buf,
            self._border_len,
            self._agent_sum,
            self._wp,
            self._land_per_block,
            self._block_scale,
            self._block_side,
            self._global_pixels,
            self._block_stamp,
            self._stamp,
            self._next_stamp(),
        )

    def _refresh_contacts(self) -> None:
        """Who borders whom (for masks and bots) and where the agent's most contested front is."""
        self._border_len, self._contested_tile, self._pair_tile, self._pair_attack, self._n_pairs = kernels.scan_contacts(
            self._border_buf,
            self._border_len,
            self._owner,
            self._is_border,
            self._in_list,
            self._offsets,
            self._adjacent,
            self._enemy_density_per_player(),
            self._wp,
        )

    # ------------------------------------------------------------------ game rules
    def _capacity(self) -> np.ndarray:
        return self.CAP_BASE + self.CAP_PER_TILE * self._tiles

    def _density(self) -> np.ndarray:
        return self._troops / np.maximum(self._tiles, 1)

    def _seed(self) -> int:
        return int(self.np_random.integers(2**63))

    def _advance_attacks(self) -> None:
        density = self._density()
        cost = 1.0 + self.DEFENCE * density
        cost[NEUTRAL] = self.NEUTRAL_COST
        tiles, owners, n = kernels.advance_attacks(
            self._pair_tile,
            self._pair_attack,
            self._n_pairs,
            self._pool,
            cost,
            self.PLAYER_SPEED,
            self.MIN_ATTACK,
            self._stamp,
            self._next_stamp(),
            self._seed(),
            self._troops,
            density,
            self._owner,
            self._offsets,
        )
        self._set_owner(tiles[:n], owners[:n])

    # ------------------------------------------------------------------ step
    def step(self, action):
        invalid = self._order(action)
        start_share = self._prev_share
        for _ in range(self.action_interval):  # the order on the first tick; the agent waits on the others
            self._tick()
            share = self._share()
            lost = not self._alive[AGENT]
            over = self._steps >= self.max_steps  # the game's end, not a time limit: the most land wins
            others_alive = int(self._alive[AGENT + 1 :].sum())
            won = not lost and (
                share >= self.win_share or (self.num_bots > 0 and (others_alive == 0 or (over and self._rank() == 1)))
            )
            terminated = lost or won or over
            if terminated:
                break
        self._prev_share = share
        reward = share - start_share + (1.0 if won else (-1.0 if lost else 0.0))
        info = self._info(invalid)
        if terminated:
            info["is_success"] = won
        return self._observation(), float(reward), terminated, False, info

    def _order(self, action: Any) -> bool:
        """Apply the agent's order (send a fraction of its troops at a target); True if it was invalid."""
        target_index, fraction_index = (int(a) for a in np.asarray(action).reshape(-1)[:2])
        if not (0 <= target_index < self.num_bots + 2 and 0 <= fraction_index < len(TROOP_FRACTIONS)):
            return True
        if target_index == 0:
            return False
        target = NEUTRAL if target_index == 1 else target_index
        valid = self._alive[AGENT] and self._adjacent[AGENT, target] and (target == NEUTRAL or self._alive[target])
        sent = self._troops[AGENT] * TROOP_FRACTIONS[fraction_index]
        if valid and sent >= self.MIN_ATTACK:
            self._troops[AGENT] -= sent
            self._pool[AGENT, target] += sent
        return not valid

    def _tick(self) -> None:
        """One game tick: the bots' orders, the attacks' advance, growth and elimination."""
        if self.num_bots:
            kernels.bots_act(
                self._steps,
                self.bot_interval,
                self._bot_strategy,
                self._alive,
                self._adjacent,
                self._troops,
                self._capacity(),
                self._pool,
                self.MIN_ATTACK,
            )
        self._advance_attacks()
        kernels.grow_and_eliminate(
            self._troops,
            self._tiles,
            self._alive,
            self._pool,
            self.CAP_BASE,
            self.CAP_PER_TILE,
            self.GROWTH_BASE,
            self.GROWTH_RATE,
        )
        self._refresh_contacts()
        self._steps += 1

    def scripted_action(self, level: str) -> np.ndarray:
        """The action the scripted strategy ``level`` (:data:`envs.territory_policies.LEVELS`) takes in the agent's
        seat now: its expansion if it orders one, else its attack, else wait; the troop fraction is the level's."""
        strategy = strategy_row(level)
        expand, target = kernels.scripted_orders(
            AGENT, strategy, self._alive, self._adjacent, self._troops, self._capacity(), self._pool, self.MIN_ATTACK
        )
        if expand:
            return np.array([1, TROOP_FRACTIONS.index(strategy[kernels.EXPAND_FRACTION])], dtype=np.int64)
        if target >= 0:
            return np.array([target, TROOP_FRACTIONS.index(strategy[kernels.ATTACK_FRACTION])], dtype=np.int64)
        return np.zeros(2, dtype=np.int64)

    def action_masks(self) -> np.ndarray:
        """Valid actions for MaskablePPO: the target mask, then all troop fractions."""
        targets = np.zeros(self.num_bots + 2, dtype=bool)
        targets[0] = True
        if self._alive[AGENT]:
            targets[1] = self._adjacent[AGENT, NEUTRAL]
            targets[2:] = self._adjacent[AGENT, 2:] & self._alive[2:]
        return np.concatenate([targets, np.ones(len(TROOP_FRACTIONS), dtype=bool)])

    # ------------------------------------------------------------------ observation
    def _share(self) -> float:
        return float(self._tiles[AGENT]) / self._land_tiles

    def land_shares(self) -> np.ndarray:
        """Share of the land each player owns, ``(num_bots + 1,)``: the agent first, then the bots in seat order."""
        return self._tiles[AGENT:] / self._land_tiles

    def player_colours(self) -> np.ndarray:
        """The RGB colour :meth:`render` gives each player, ``(num_bots + 1, 3)`` uint8, in :meth:`land_shares` order."""
        return self._palette[AGENT + 1 :].copy()

    def _rank(self) -> int:
        return 1 + int((self._tiles[AGENT + 1 :] > self._tiles[AGENT]).sum())

    def _info(self, invalid: bool) -> dict[str, Any]:
        return {
            "territory_share": self._share(),
            "rank": self._rank(),
            "players_alive": int(self._alive.sum()),
            "invalid_action": invalid,
        }

    @staticmethod
    def _to_uint8(fraction: np.ndarray) -> np.ndarray:
        return (np.clip(fraction, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    def _enemy_density_per_player(self) -> np.ndarray:
        """Per owner id: the enemy_density value of its tiles (0 for water, neutral and the agent)."""
        values = np.zeros(self.n_players + 1, dtype=np.float32)
        values[AGENT + 1 :] = np.minimum(self._density()[AGENT + 1 :] / self.DENSITY_SCALE, 1.0)
        return values

    def _global_map(self, density: np.ndarray) -> np.ndarray:
        # Channels other than enemy_density are kept up to date by set_owner, block by block.
        kernels.density_pixels(self._block_counts, self._block_scale, density, self._global_pixels)
        side = self._res
        maps = self._global_pixels.reshape(len(CHANNELS), side, side)
        if side != self.map_resolution:
            return maps[:, self._upsample][:, :, self._upsample]
        return maps.copy()

    def _window_map(self, centre: tuple[int, int], view: int, res: int, density: np.ndarray) -> np.ndarray:
        """Channels of the ``view``-tile window centred on ``centre`` (map coordinates), ``res x res``."""
        s = self.map_size
        y0 = min(max(centre[0] - view // 2, 0), s - view) + 1
        x0 = min(max(centre[1] - view // 2, 0), s - view) + 1
        out = np.empty((len(CHANNELS), res, res), dtype=np.uint8)
        border2d = self._is_border.reshape(self._owner2d.shape)
        kernels.window_maps(self._owner2d, border2d, y0, x0, view, res, density, out)
        return out

    def _contested_centre(self) -> tuple[int, int]:
        if self._contested_tile < 0:
            return self._centre
        return int(self._contested_tile // self._wp) - 1, int(self._contested_tile % self._wp) - 1

    def _observation(self) -> dict[str, np.ndarray]:
        density = self._enemy_density_per_player()
        global_map = self._global_map(density)
        if self._tiles[AGENT]:
            y, x = self._agent_sum / self._tiles[AGENT]
            self._centre = (int(y) - 1, int(x) - 1)
        if self._view == self.map_size:
            local_map = global_map.copy()  # the window is the whole map
        else:
            local_map = self._window_map(self._centre, self._view, self.map_resolution, density)
        tactical_map = self._window_map(self._contested_centre(), self.tactical_size, self.tactical_size, density)
        return {
            "global_map": global_map,
            "local_map": local_map,
            "tactical_map": tactical_map,
            "global": self._global_features(),
        }

    def _global_features(self) -> np.ndarray:
        tiles, troops, pool = self._tiles, float(self._troops[AGENT]), self._pool
        cap = self.CAP_BASE + self.CAP_PER_TILE * float(tiles[AGENT])
        max_cap = self.CAP_BASE + self.CAP_PER_TILE * self._land_tiles
        features = (
            troops / cap,
            math.log1p(troops) / math.log1p(max_cap),
            self._share(),
            (self._rank() - 1) / max(self.n_players - 1, 1),
            int(self._alive.sum()) / self.n_players,
            self._steps / self.max_steps,
            float(pool[AGENT].sum()) / cap,
            float(pool[AGENT + 1 :, AGENT].sum()) / max(troops, 1.0),
        )
        return np.clip(np.array(features, dtype=np.float32), 0.0, 1.0)

    def render(self) -> np.ndarray | None:
        """RGB picture of the whole map, (map_size, map_size, 3) uint8: water, neutral, one colour per player."""
        if self.render_mode != "rgb_array":
            return None
        inner = self._owner2d[1:-1, 1:-1]
        image = self._palette[inner + 1]
        border = self._is_border.reshape(self._owner2d.shape)[1:-1, 1:-1]
        image[border] = (image[border] * 0.55).astype(np.uint8)  # darker borders show the fronts
        return image
