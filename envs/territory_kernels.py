"""Compiled inner loops of TerritoryControl (numba): they touch only changed tiles, borders and windows.

Maps are flat arrays over the map padded by one ring of water (``owner == -1``), so a neighbour
is ``tile + offset`` with no bounds check. Randomness comes from a seed the environment draws
from its own generator each step (splitmix64 inside), so episodes are deterministic under a seed.
"""

from __future__ import annotations

import numpy as np
from numba import njit

WATER, NEUTRAL, AGENT = -1, 0, 1


@njit(cache=True, inline="always")
def _splitmix64(state: np.uint64) -> tuple[np.uint64, np.uint64]:
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


@njit(cache=True)
def _random_prefix(values, lo, hi, k, state):
    """Partial Fisher-Yates: move a uniform random ``k``-subset of ``values[lo:hi]`` to ``values[lo:lo+k]``."""
    for i in range(k):
        state, r = _splitmix64(state)
        pick = lo + i + np.int64(r % np.uint64(hi - lo - i))
        values[lo + i], values[pick] = values[pick], values[lo + i]
    return state


@njit(cache=True)
def set_owner(
    tiles,
    new_owner,
    n,
    owner,
    land,
    offsets,
    block,
    tile_count,
    block_count,
    is_border,
    agent_border,
    agent_border_blocks,
    in_list,
    border_buf,
    border_len,
    agent_sum,
    wp,
    land_per_block,
    scale,
    side,
    global_map,
    block_stamp,
    stamp,
    stamp_id,
):
    """Give ``tiles[:n]`` to ``new_owner[:n]`` and update every derived array (counts, borders, the
    global map's blocks around them); returns the border length."""
    for i in range(n):
        t = tiles[i]
        old, new = owner[t], new_owner[i]
        owner[t] = new
        b = block[t]
        tile_count[old] -= 1
        tile_count[new] += 1
        block_count[old, b] -= 1
        block_count[new, b] += 1
        if old == AGENT:
            agent_sum[0] -= t // wp
            agent_sum[1] -= t % wp
        if new == AGENT:
            agent_sum[0] += t // wp
            agent_sum[1] += t % wp
    # Border status can change only on the changed tiles and their neighbours: visit each once.
    for i in range(n):
        for d in range(5):
            x = tiles[i] if d == 4 else tiles[i] + offsets[d]
            if not land[x] or stamp[x] == stamp_id:
                continue
            stamp[x] = stamp_id
            o = owner[x]
            border = False
            if o > NEUTRAL:
                for e in range(4):
                    y = owner[x + offsets[e]]
                    if y >= NEUTRAL and y != o:
                        border = True
                        break
            is_border[x] = border
            mine = border and o == AGENT
            if mine != agent_border[x]:
                agent_border_blocks[block[x]] += 1 if mine else -1
                agent_border[x] = mine
            if border and not in_list[x]:
                in_list[x] = True
                border_buf[border_len] = x
                border_len += 1
            block_stamp[block[x]] = True
    # Redraw each touched block of the global map once.
    for i in range(n):
        for d in range(5):
            x = tiles[i] if d == 4 else tiles[i] + offsets[d]
            b = block[x]
            if b >= 0 and block_stamp[b]:
                block_stamp[b] = False
                block_pixels(b, block_count, land_per_block, scale, agent_border_blocks, side, global_map)
    return border_len


@njit(cache=True, inline="always")
def block_pixels(b, block_count, land_per_block, scale, agent_border_blocks, side, global_map):
    """Channels own, enemy, neutral and own_border of the global map's block ``b`` (uint8)."""
    s = scale[b]
    own, neutral = block_count[AGENT, b], block_count[NEUTRAL, b]
    global_map[0, b] = int(own * s + 0.5)
    global_map[1, b] = int((land_per_block[b] - neutral - own) * s + 0.5)
    global_map[2, b] = int(neutral * s + 0.5)
    global_map[4, b] = int(min(agent_border_blocks[b] * side * s, 255.0) + 0.5)


@njit(cache=True)
def all_block_pixels(block_count, land_per_block, scale, agent_border_blocks, side, global_map):
    for b in range(block_count.shape[1]):
        block_pixels(b, block_count, land_per_block, scale, agent_border_blocks, side, global_map)


@njit(cache=True)
def advance_attacks(  # noqa: C901  (a numba kernel: one flat loop over attack pairs)
    pair_tile,
    pair_attack,
    n_pairs,
    pool,
    cost,
    player_speed,
    min_attack,
    stamp,
    stamp_id,
    seed,
    troops,
    density,
    owner,
    offsets,
):
    """Advance every attack one step; returns (tiles, new owners, count) to hand to :func:`set_owner`.

    ``pair_tile[i]`` is land of player ``q`` next to land of player ``a`` with ``pair_attack[i] =
    a * p1 + q`` (from :func:`scan_contacts`). Each attack ``pool[a, q]`` may take its frontier:
    all of it on neutral land, ``ceil(player_speed * frontier)`` on a player, at most
    ``pool / cost[q]`` tiles, chosen at random among those with two or more of the attacker's
    tiles around them first, then among the rest. A tile facing two attackers is a candidate of the
    first one met in a scan that starts at a random pair. Finished attacks return their troops.
    """
    p1 = pool.shape[0]
    state = np.uint64(seed)
    cand_tile = np.empty(n_pairs, dtype=np.int64)
    cand_attack = np.empty(n_pairs, dtype=np.int64)
    frontier = np.zeros(p1 * p1, dtype=np.int64)
    m = 0
    state, r = _splitmix64(state)
    start = np.int64(r % np.uint64(max(n_pairs, 1)))
    for k in range(n_pairs):
        i = (k + start) % n_pairs
        x, j = pair_tile[i], pair_attack[i]
        if pool[j // p1, j % p1] < min_attack or stamp[x] == stamp_id:
            continue
        stamp[x] = stamp_id
        cand_tile[m] = x
        cand_attack[m] = j
        frontier[j] += 1
        m += 1
    # Counting sort of the candidates by attack.
    first = np.zeros(p1 * p1 + 1, dtype=np.int64)
    for j in range(p1 * p1):
        first[j + 1] = first[j] + frontier[j]
    fill = first[:-1].copy()
    grouped = np.empty(m, dtype=np.int64)
    for i in range(m):
        grouped[fill[cand_attack[i]]] = cand_tile[i]
        fill[cand_attack[i]] += 1
    out_tiles = np.empty(m, dtype=np.int64)
    out_owner = np.empty(m, dtype=np.int16)
    taken_total = 0
    for a in range(1, p1):
        for q in range(p1):
            j = a * p1 + q
            f = frontier[j]
            if pool[a, q] <= 0.0:
                continue
            if f == 0 or pool[a, q] < cost[q]:
                troops[a] += pool[a, q]  # nothing left to take: the troops go home
                pool[a, q] = 0.0
                continue
            speed = f if q == NEUTRAL else int(np.ceil(player_speed * f))
            quota = min(speed, int(pool[a, q] / cost[q] + 1e-9))
            lo = first[j]
            if quota < f:
                # Tiles with two or more of the attacker's tiles around them go first: fronts stay
                # smooth instead of fraying into a checkerboard (whose border would cost every step).
                supported = lo
                for i in range(lo, lo + f):
                    x, around = grouped[i], 0
                    for d in range(4):
                        around += owner[x + offsets[d]] == a
                    if around >= 2:
                        grouped[i], grouped[supported] = grouped[supported], grouped[i]
                        supported += 1
                state = _random_prefix(grouped, lo, supported, min(quota, supported - lo), state)
                if quota > supported - lo:
                    state = _random_prefix(grouped, supported, lo + f, quota - (supported - lo), state)
            for i in range(lo, lo + quota):
                out_tiles[taken_total] = grouped[i]
                out_owner[taken_total] = a
                taken_total += 1
            pool[a, q] -= quota * cost[q]
            if q > NEUTRAL:
                troops[q] = max(troops[q] - quota * density[q], 0.0)
    return out_tiles, out_owner, taken_total


#: Columns of a strategy row (see ``envs.territory_policies.LEVELS``).
EXPAND_RESERVE, EXPAND_FRACTION, ATTACK_RATIO, ATTACK_RESERVE, ATTACK_FRACTION, ATTACK_WHILE_EXPANDING = range(6)


@njit(cache=True)
def scripted_orders(player, strategy, alive, adjacent, troops, capacity, pool, min_attack):
    """The orders of the scripted ``strategy`` (a row of six numbers) for ``player`` now.

    Expand: into neutral land it borders, when no expansion is under way and its troops are at least
    ``EXPAND_RESERVE`` of its cap, sending ``EXPAND_FRACTION``. Attack: the bordering player with the
    fewest troops, when its own troops are at least ``ATTACK_RATIO`` times that player's and
    ``ATTACK_RESERVE`` of its cap, no attack on it is under way, and (unless ``ATTACK_WHILE_EXPANDING``)
    it borders no neutral land; sending ``ATTACK_FRACTION``. Returns (expand?, attack target or -1);
    the caller sends the expansion first.
    """
    t, cap = troops[player], capacity[player]
    expand = (
        strategy[EXPAND_FRACTION] > 0.0
        and adjacent[player, NEUTRAL]
        and pool[player, NEUTRAL] < min_attack
        and t >= strategy[EXPAND_RESERVE] * cap
        and t * strategy[EXPAND_FRACTION] >= min_attack
    )
    target = -1
    may_attack = strategy[ATTACK_FRACTION] > 0.0 and t >= strategy[ATTACK_RESERVE] * cap
    if may_attack and (strategy[ATTACK_WHILE_EXPANDING] > 0.0 or not adjacent[player, NEUTRAL]):
        for q in range(AGENT, alive.shape[0]):
            if q == player or not (alive[q] and adjacent[player, q]) or pool[player, q] >= min_attack:
                continue
            if t >= strategy[ATTACK_RATIO] * troops[q] and (target < 0 or troops[q] < troops[target]):
                target = q
    return expand, target


@njit(cache=True)
def bots_act(step, interval, strategy, alive, adjacent, troops, capacity, pool, min_attack):
    """Bots due this step (every ``interval`` steps, staggered) send the orders of ``strategy`` (every bot plays
    the same level): the expansion first, then the attack, each a fraction of the troops at home."""
    for bot in range(AGENT + 1, alive.shape[0]):
        if not alive[bot] or (step + bot) % interval:
            continue
        expand, target = scripted_orders(bot, strategy, alive, adjacent, troops, capacity, pool, min_attack)
        if expand:
            sent = troops[bot] * strategy[EXPAND_FRACTION]
            pool[bot, NEUTRAL] += sent
            troops[bot] -= sent
        if target >= 0 and troops[bot] * strategy[ATTACK_FRACTION] >= min_attack:
            sent = troops[bot] * strategy[ATTACK_FRACTION]
            pool[bot, target] += sent
            troops[bot] -= sent


@njit(cache=True)
def scan_contacts(border_buf, border_len, owner, is_border, in_list, offsets, adjacent, density, wp):
    """One pass over the border list after a step's changes. Drops stale entries; fills
    ``adjacent[a, q]`` (a borders q's land); lists the (foreign tile, attack id ``a * p1 + q``)
    pairs the next step's attacks advance on; and finds the agent's most contested border tile: on
    the front with the most pressure (tiles facing a player times ``1 + density``; neutral land if
    no player), the tile nearest the middle of that front.

    Returns (new border length, contested tile or -1, pair tiles, pair attack ids, pair count)."""
    p1 = adjacent.shape[0]
    adjacent[:, :] = False
    contact = np.zeros((p1, 3))
    pair_tile = np.empty(4 * border_len + 1, dtype=np.int64)
    pair_attack = np.empty(4 * border_len + 1, dtype=np.int64)
    m = 0
    j = 0
    for i in range(border_len):
        t = border_buf[i]
        if not is_border[t]:
            in_list[t] = False
            continue
        border_buf[j] = t
        j += 1
        a = owner[t]
        for d in range(4):
            x = t + offsets[d]
            q = owner[x]
            if q >= NEUTRAL and q != a:
                adjacent[a, q] = True
                pair_tile[m] = x
                pair_attack[m] = a * p1 + q
                m += 1
                if a == AGENT:
                    contact[q, 0] += 1.0
                    contact[q, 1] += t // wp
                    contact[q, 2] += t % wp
    target, best = NEUTRAL, 0.0
    for q in range(AGENT + 1, p1):
        pressure = contact[q, 0] * (1.0 + density[q])
        if pressure > best:
            target, best = q, pressure
    tile = -1
    if contact[target, 0] > 0.0:
        row, col = contact[target, 1] / contact[target, 0], contact[target, 2] / contact[target, 0]
        best = np.inf
        for i in range(j):
            t = border_buf[i]
            if owner[t] != AGENT:
                continue
            for d in range(4):
                if owner[t + offsets[d]] == target:
                    dist = (t // wp - row) ** 2 + (t % wp - col) ** 2
                    if dist < best:
                        tile, best = t, dist
                    break
    return j, tile, pair_tile, pair_attack, m


@njit(cache=True)
def grow_and_eliminate(troops, tile_count, alive, pool, cap_base, cap_per_tile, growth_base, growth_rate):
    """Troops (at home and under way) grow logistically towards the cap, fastest at half of it, and decay above
    it; players without land are eliminated, their attacks cancelled and attacks on them sent home. Returns True if
    anyone was eliminated."""
    p1 = troops.shape[0]
    eliminated = False
    for p in range(AGENT, p1):
        if not alive[p]:
            continue
        if tile_count[p] == 0:
            alive[p] = False
            eliminated = True
            continue
        # Troops under way count against the cap: parking them in an attack does not speed up growth.
        total = troops[p]
        for q in range(p1):
            total += pool[p, q]
        cap = cap_base + cap_per_tile * tile_count[p]
        growth = growth_base + growth_rate * total * (1.0 - total / cap)
        troops[p] = max(troops[p] + growth, 0.0)
    if eliminated:
        for p in range(AGENT, p1):
            if alive[p]:
                continue
            troops[p] = 0.0
            for q in range(p1):
                pool[p, q] = 0.0
                if alive[q]:
                    troops[q] += pool[q, p]
                pool[q, p] = 0.0
    return eliminated


@njit(cache=True)
def density_pixels(block_count, scale, density, global_map):
    """Channel enemy_density of the global map (it changes with every player's troops, so every step)."""
    n_blocks = block_count.shape[1]
    dens = np.zeros(n_blocks)
    for q in range(AGENT + 1, block_count.shape[0]):  # player-major: contiguous reads
        if density[q] > 0.0:
            for b in range(n_blocks):
                dens[b] += block_count[q, b] * density[q]
    for b in range(n_blocks):
        global_map[5, b] = int(min(dens[b] * scale[b], 255.0) + 0.5)


@njit(cache=True)
def window_maps(owner2d, border2d, y0, x0, view, res, density, out):  # noqa: C901  (a numba kernel)
    """Channels of the ``view x view`` window at ``(y0, x0)`` (padded coordinates) on a ``res x res``
    grid: cell averages when ``view > res`` (a border line through a cell fills it), nearest tile otherwise."""
    if view <= res:
        out[:, :, :] = 0
        for cy in range(res):
            y = y0 + cy * view // res
            for cx in range(res):
                x = x0 + cx * view // res
                o = owner2d[y, x]
                if o == AGENT:
                    out[0, cy, cx] = 255
                    if border2d[y, x]:
                        out[4, cy, cx] = 255
                elif o > AGENT:
                    out[1, cy, cx] = 255
                    out[5, cy, cx] = np.uint8(min(density[o], 1.0) * 255.0 + 0.5)
                elif o == NEUTRAL:
                    out[2, cy, cx] = 255
                else:
                    out[3, cy, cx] = 255
        return
    if view % res == 0:
        f = view // res
        inv, line = 255.0 / (f * f), 255.0 / f
        for cy in range(res):
            for cx in range(res):
                own = enemy = neutral = water = border = 0
                dens = 0.0
                for y in range(y0 + cy * f, y0 + cy * f + f):
                    for x in range(x0 + cx * f, x0 + cx * f + f):
                        o = owner2d[y, x]
                        if o == AGENT:
                            own += 1
                            border += border2d[y, x]
                        elif o > AGENT:
                            enemy += 1
                            dens += density[o]
                        elif o == NEUTRAL:
                            neutral += 1
                        else:
                            water += 1
                out[0, cy, cx] = int(own * inv + 0.5)
                out[1, cy, cx] = int(enemy * inv + 0.5)
                out[2, cy, cx] = int(neutral * inv + 0.5)
                out[3, cy, cx] = int(water * inv + 0.5)
                out[4, cy, cx] = int(min(border * line, 255.0) + 0.5)
                out[5, cy, cx] = int(min(dens * inv, 255.0) + 0.5)
        return
    sums = np.zeros((6, res, res))
    counts = np.zeros((res, res))
    for y in range(view):
        cy = y * res // view
        for x in range(view):
            cx = x * res // view
            o = owner2d[y0 + y, x0 + x]
            counts[cy, cx] += 1.0
            if o == AGENT:
                sums[0, cy, cx] += 1.0
                if border2d[y0 + y, x0 + x]:
                    sums[4, cy, cx] += 1.0
            elif o > AGENT:
                sums[1, cy, cx] += 1.0
                sums[5, cy, cx] += density[o]
            elif o == NEUTRAL:
                sums[2, cy, cx] += 1.0
            else:
                sums[3, cy, cx] += 1.0
    line = view / res
    for c in range(6):
        for cy in range(res):
            for cx in range(res):
                v = sums[c, cy, cx] * 255.0 / counts[cy, cx]
                if c == 4:
                    v *= line
                out[c, cy, cx] = np.uint8(min(v, 255.0) + 0.5)
