"""TerritoryControl's rules as invariants: troops change only by the stated growth and losses, every land tile has
exactly one owner, eliminated players hold nothing; scripted levels, presets and the end of the game."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stable_baselines3.common.env_checker import check_env

import envs
from envs import territory_kernels as kernels
from envs.territory import AGENT, NEUTRAL, PRESETS, TROOP_FRACTIONS, WATER, TerritoryControlEnv
from envs.territory_policies import LEVELS, REFERENCE_POLICIES, reference_policy, strategy_row


def totals(env: TerritoryControlEnv) -> np.ndarray:
    """Troops per player, at home and under way."""
    return env._troops + env._pool.sum(axis=1)


class Ledger:
    """Spies on one step's phases: what each attack took and what growth did."""

    def __init__(self, env: TerritoryControlEnv, monkeypatch: pytest.MonkeyPatch) -> None:
        self.errors: list[str] = []
        advance, grow = env._advance_attacks, kernels.grow_and_eliminate

        def advance_spy() -> None:
            owner_before, troops, pool = env._owner.copy(), env._troops.copy(), env._pool.copy()
            tiles = env._tiles.copy()
            advance()
            density = troops / np.maximum(tiles, 1)
            p1 = env.n_players + 1
            changed = np.flatnonzero(owner_before != env._owner)
            gained = np.zeros((p1, p1))
            np.add.at(gained, (env._owner[changed], owner_before[changed]), 1)
            cost = 1.0 + env.DEFENCE * density
            cost[NEUTRAL] = env.NEUTRAL_COST
            spent = gained @ cost  # per attacker
            lost = np.minimum(gained.sum(axis=0) * density, troops)  # per defender, never below zero
            lost[NEUTRAL] = 0.0
            before = troops + pool.sum(axis=1)
            expected = before - spent - lost
            if not np.allclose(totals(env)[1:], expected[1:], atol=1e-6):
                self.errors.append(f"attacks: totals {totals(env)[1:]} != {expected[1:]}")
            # An attack only takes tiles bordering its attacker, and nobody takes water or its own land.
            if (owner_before[changed] == WATER).any() or (owner_before[changed] == env._owner[changed]).any():
                self.errors.append("water or own land taken")

        def grow_spy(troops, tile_count, alive, pool, cap_base, cap_per_tile, growth_base, growth_rate):
            home, under_way, was_alive, tiles = troops.copy(), pool.sum(axis=1), alive.copy(), tile_count.copy()
            result = grow(troops, tile_count, alive, pool, cap_base, cap_per_tile, growth_base, growth_rate)
            for p in range(AGENT, len(troops)):
                if not was_alive[p]:
                    continue
                if tiles[p] == 0:  # eliminated: everything it had is gone, attacks on it went home
                    if alive[p] or troops[p] != 0 or pool[p].any() or pool[:, p].any():
                        self.errors.append(f"player {p} eliminated but holds troops or attacks")
                    continue
                total, cap = home[p] + under_way[p], cap_base + cap_per_tile * tiles[p]
                growth = growth_base + growth_rate * total * (1 - total / cap)
                expected = max(home[p] + growth, 0.0) + under_way[p]  # returns from the eliminated keep totals
                if abs(troops[p] + pool[p].sum() - expected) > 1e-6:
                    self.errors.append(f"player {p}: {troops[p] + pool[p].sum()} after growth, expected {expected}")
            return result

        env._advance_attacks = advance_spy  # type: ignore[method-assign]
        monkeypatch.setattr(kernels, "grow_and_eliminate", grow_spy)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), preset=st.sampled_from(["small", "medium"]), level=st.sampled_from(list(LEVELS)))
def test_troops_change_only_by_growth_and_stated_losses(seed, preset, level):
    with pytest.MonkeyPatch.context() as monkeypatch:
        env = TerritoryControlEnv(preset=preset, bot_level=level, map_size=64, num_bots=3, max_steps=150)
        ledger = Ledger(env, monkeypatch)
        env.reset(seed=seed)
        policy = reference_policy("random", seed=seed)
        for _ in range(150):
            _, _, terminated, _, _ = env.step(policy(env))
            assert not ledger.errors, ledger.errors[:3]
            assert (env._troops >= 0).all() and (env._pool >= 0).all()
            if terminated:
                break


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), num_bots=st.integers(1, 6), level=st.sampled_from(list(LEVELS)))
def test_every_land_tile_has_one_owner_and_the_dead_hold_nothing(seed, num_bots, level):
    env = TerritoryControlEnv(map_name="islands", map_size=64, num_bots=num_bots, bot_level=level, max_steps=200)
    env.reset(seed=seed)
    policy = reference_policy("hard")
    land = env._land_flat
    for _ in range(200):
        _, reward, terminated, _, info = env.step(policy(env))
        owner = env._owner
        assert (owner[~land] == WATER).all() and (owner[land] >= NEUTRAL).all()
        np.testing.assert_array_equal(env._tiles, np.bincount(owner[land], minlength=env.n_players + 1))
        assert env._tiles.sum() == env._land_tiles
        dead = ~env._alive[AGENT:]
        assert (env._tiles[AGENT:][dead] == 0).all() and (env._troops[AGENT:][dead] == 0).all()
        assert (env._tiles[AGENT:][~dead] > 0).all()
        assert not env._pool[AGENT:][dead].any() and not env._pool[:, AGENT:][:, dead].any()
        assert info["players_alive"] == int(env._alive.sum())
        if not env._alive[AGENT]:
            assert terminated and reward <= -1.0 + 1e-9 and not info["is_success"]
        if terminated:
            break


def test_the_most_land_wins_at_the_end():
    for seed in range(6):
        env = TerritoryControlEnv(preset="small", max_steps=60)
        env.reset(seed=seed)
        policy, terminated, steps = reference_policy("expander"), False, 0
        while not terminated:
            _, reward, terminated, truncated, info = env.step(policy(env))
            steps += 1
            assert not truncated  # the game ends by its rules
        if env._alive[AGENT] and info["territory_share"] < env.win_share and int(env._alive[2:].sum()):
            assert env._steps == 60  # ticks
            first = env._tiles[AGENT] >= env._tiles[2:].max()
            assert info["is_success"] == first and info["rank"] == (1 if first else info["rank"])
            assert (reward >= 1.0) == first


def test_scripted_orders_follow_the_level():
    env = TerritoryControlEnv(preset="small", num_bots=2)
    env.reset(seed=0)
    cap = env._capacity()[AGENT]
    env._troops[AGENT] = 0.9 * cap
    medium = strategy_row("medium")
    # Bordering neutral land with troops above the reserve: expand with the level's fraction.
    assert env.scripted_action("medium").tolist() == [1, TROOP_FRACTIONS.index(medium[kernels.EXPAND_FRACTION])]
    env._troops[AGENT] = 0.1 * cap  # below every reserve: wait
    assert env.scripted_action("medium").tolist() == [0, 0]
    assert env.scripted_action("passive").tolist() == [0, 0]
    # An attack: pretend the agent borders bot 2 only, which is weaker.
    env._adjacent[:] = False
    env._adjacent[AGENT, 2] = True
    env._troops[AGENT], env._troops[2] = 0.9 * cap, 0.1 * cap
    assert env.scripted_action("hard").tolist() == [2, TROOP_FRACTIONS.index(strategy_row("hard")[kernels.ATTACK_FRACTION])]
    env._troops[2] = 0.9 * cap  # as strong as the agent: no level attacks
    assert all(env.scripted_action(level).tolist() == [0, 0] for level in LEVELS)
    env._troops[2] = 0.1 * cap
    env._pool[AGENT, 2] = 5.0  # an attack is under way: no second one
    assert env.scripted_action("hard").tolist() == [0, 0]
    with pytest.raises(ValueError, match="'brutal'"):
        env.scripted_action("brutal")


@pytest.mark.parametrize("name", REFERENCE_POLICIES)
def test_reference_policies_play_valid_actions(name):
    env = TerritoryControlEnv(preset="small")
    env.reset(seed=3)
    policy = reference_policy(name, seed=1)
    for _ in range(40):
        action = policy(env)
        assert env.action_space.contains(np.asarray(action, dtype=np.int64))
        _, _, terminated, _, info = env.step(action)
        assert not info["invalid_action"]
        if terminated:
            break


def test_presets_set_the_game_and_arguments_override_them():
    for preset, values in PRESETS.items():
        env = TerritoryControlEnv(preset=preset, map_size=64 if preset == "full" else None)
        assert env.num_bots == values["num_bots"] and env.bot_level == values["bot_level"]
        assert env.max_steps == values["max_steps"]
        side, tactical = values["map_resolution"], values["tactical_size"]
        assert env.observation_space["global_map"].shape == (6, side, side)
        assert env.observation_space["tactical_map"].shape == (6, tactical, tactical)
    env = TerritoryControlEnv(preset="small", num_bots=1, bot_level="hard", max_steps=50)
    assert (env.map_size, env.num_bots, env.bot_level, env.max_steps) == (64, 1, "hard", 50)


@pytest.mark.parametrize("env_id", ["sb3ma/TerritoryControl-small-v0", "sb3ma/TerritoryControl-medium-v0"])
def test_preset_ids_are_registered_and_pass_the_checker(env_id):
    env = gym.make(env_id)
    assert env.unwrapped.preset == env_id.split("-")[1]
    check_env(env.unwrapped, warn=False)
    assert set(envs.TERRITORY_IDS) >= {env_id, "sb3ma/TerritoryControl-v0"}


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"preset": "huge"}, "preset='huge'"),
        ({"bot_level": "brutal"}, "'brutal'"),
        ({"map_resolution": 8}, "map_resolution"),
        ({"map_resolution": 512}, "map_resolution=512"),
        ({"tactical_size": 4}, "tactical_size"),
        ({"map_size": 64, "tactical_size": 128}, "tactical_size=128"),
    ],
)
def test_bad_settings_are_named(kwargs, named):
    with pytest.raises(ValueError, match=named.replace("(", r"\(")):
        TerritoryControlEnv(**kwargs)


@given(seed=st.integers(0, 10_000), interval=st.integers(2, 5))
@settings(max_examples=15, deadline=None)
def test_an_action_interval_step_is_the_order_then_waiting(seed, interval):
    """One step at action_interval k = the same order, then k - 1 waits, at interval 1 (rewards summed, the same game)."""
    coarse = TerritoryControlEnv(preset="small", action_interval=interval, max_steps=60)
    fine = TerritoryControlEnv(preset="small", action_interval=1, max_steps=60)
    coarse.reset(seed=seed)
    fine.reset(seed=seed)
    rng = np.random.default_rng(seed)
    done = False
    while not done:
        targets = np.flatnonzero(coarse.action_masks()[: coarse.num_bots + 2])
        action = np.array([rng.choice(targets), rng.integers(5)])
        obs, reward, done, _, info = coarse.step(action)
        total, fine_done = 0.0, False
        for tick in range(interval):
            fine_obs, fine_reward, fine_done, _, fine_info = fine.step(action if tick == 0 else np.zeros(2, dtype=np.int64))
            total += fine_reward
            if fine_done:
                break
        assert done == fine_done and reward == pytest.approx(total, abs=1e-9)
        for key in obs:
            np.testing.assert_array_equal(obs[key], fine_obs[key])
        assert info == fine_info


@given(
    tiles=st.integers(1, 5000),
    ratio=st.floats(0.0, 3.0, allow_nan=False),
    home_share=st.floats(0.0, 1.0, allow_nan=False),
)
@settings(max_examples=200, deadline=None)
def test_troops_grow_below_the_equilibrium_and_shrink_above_it(tiles, ratio, home_share):
    """Troops (at home and under way) grow towards ``T*`` where the growth is zero, a little above the cap
    (``base + rate * T * (1 - T / cap) = 0``), and never grow above it: the bound on troops is ``T*``, not the cap
    (and a player above it after losing land only shrinks). Totals are drawn relative to ``T*``, near it too."""
    env = TerritoryControlEnv
    cap = env.CAP_BASE + env.CAP_PER_TILE * tiles
    equilibrium = cap / 2 + np.sqrt(cap**2 / 4 + cap * env.GROWTH_BASE / env.GROWTH_RATE)
    total = ratio * equilibrium
    at_home, under_way = home_share * total, (1 - home_share) * total
    troops, pool = np.array([0.0, at_home]), np.array([[0.0, 0.0], [under_way, 0.0]])
    alive, count = np.array([False, True]), np.array([0, tiles], dtype=np.int64)
    kernels.grow_and_eliminate(troops, count, alive, pool, env.CAP_BASE, env.CAP_PER_TILE, env.GROWTH_BASE, env.GROWTH_RATE)
    new_total = troops[AGENT] + under_way
    if ratio < 1 - 1e-9:
        assert new_total > total
    elif ratio > 1 + 1e-9:
        assert new_total <= total
    assert troops[AGENT] >= 0.0
