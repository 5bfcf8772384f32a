import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_checker import check_env

import envs
from envs import DarkKeyToDoorEnv, DarkroomEnv, DarkroomHardEnv, RepeatPreviousEnv, TMazeEnv, goal_split

#: The memory tasks; TerritoryControl (a strategy game with no exact random or optimal return) and the POPGym tasks
#: (POPGym's games, which render to text) have their own tests.
POPGYM_IDS = sorted(env_id for env_id in envs.ENV_IDS if env_id.startswith("sb3ma/popgym-"))
MEMORY_ENV_IDS = sorted(set(envs.ENV_IDS) - {*envs.TERRITORY_IDS, *POPGYM_IDS})
RENDER_SHAPES = {
    "sb3ma/Darkroom-v0": (72, 72, 3),
    "sb3ma/DarkroomHard-v0": (72, 72, 3),
    "sb3ma/DarkKeyToDoor-v0": (72, 72, 3),
    "sb3ma/TMaze-v0": (24, 22 * 8, 3),
    "sb3ma/RepeatPrevious-v0": (16, 32 * 8, 3),
}


def rollout(env, policy, seed, episodes):
    """Total reward per episode of ``policy(obs, info, t)``."""
    returns = []
    for episode in range(episodes):
        obs, info = env.reset(seed=seed + episode)
        total, done, t = 0.0, False, 0
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(env, obs, info, t))
            total, done, t = total + reward, terminated or truncated, t + 1
        returns.append(total)
    return np.array(returns)


@pytest.mark.parametrize("env_id", MEMORY_ENV_IDS)
def test_registered_env_passes_checker_renders_and_documents_returns(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    check_env(env.unwrapped, warn=False)
    env.reset(seed=0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape == RENDER_SHAPES[env_id]
    assert env.unwrapped.optimal_return > env.unwrapped.random_return


@pytest.mark.parametrize("env_id", MEMORY_ENV_IDS + POPGYM_IDS)
def test_deterministic_under_seed(env_id):
    def trajectory():
        env = gym.make(env_id)
        obs, _ = env.reset(seed=123)
        rng = np.random.default_rng(0)
        out = [obs]
        for _ in range(120):  # past the end of a POPGym episode (51 steps)
            obs, reward, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
            out += [obs, reward]
            if terminated or truncated:
                out.append(env.reset()[0])
        return np.concatenate([np.ravel(x) for x in out])

    np.testing.assert_array_equal(trajectory(), trajectory())


# ------------------------------------------------------------------ T-Maze
def test_tmaze_oracle_solves_and_memoryless_cannot():
    env = TMazeEnv(corridor_length=20)

    memory = {}

    def oracle(env, obs, info, t):
        if t == 0:
            memory["cue"] = int(obs[0] > 0)  # +1 = right = action 1
        return memory["cue"]

    assert rollout(env, oracle, seed=0, episodes=50).tolist() == [1.0] * 50
    # Memoryless: the junction looks the same whatever the cue, so any such policy is a coin flip.
    for action in (0, 1):
        memoryless = rollout(env, lambda env, obs, info, t, action=action: action, seed=0, episodes=400)
        assert abs(memoryless.mean()) < 0.15
    assert env.optimal_return == 1.0 and env.random_return == 0.0


# ------------------------------------------------------------------ Repeat Previous
def test_repeat_previous_oracle_and_memoryless():
    env = RepeatPreviousEnv(k=4, n_symbols=4, episode_length=32)
    seen = []

    def oracle(env, obs, info, t):
        if t == 0:
            seen.clear()
        seen.append(int(obs.argmax()))
        return seen[t - 4] if t >= 4 else 0

    assert rollout(env, oracle, seed=0, episodes=20).tolist() == [env.optimal_return] * 20 == [28.0] * 20
    # The best memoryless policy can only echo or guess: (32 - 4) / 4 = 7 in expectation.
    echo = rollout(env, lambda env, obs, info, t: int(obs.argmax()), seed=0, episodes=300)
    assert env.random_return == 7.0
    assert abs(echo.mean() - 7.0) < 0.5


# ------------------------------------------------------------------ Dark Room family
def walk_to(target, position):
    x, y = int(position[0]), int(position[1])
    if x < target[0]:
        return 4
    if x > target[0]:
        return 3
    if y < target[1]:
        return 2
    if y > target[1]:
        return 1
    return 0


def test_goal_splits_are_disjoint_cover_the_grid_and_are_stable():
    train, test = goal_split(9, "train"), goal_split(9, "test")
    assert not set(train) & set(test)
    assert sorted(train + test) == sorted((x, y) for x in range(9) for y in range(9))
    assert test == [
        (2, 0),
        (7, 0),
        (4, 1),
        (1, 2),
        (6, 2),
        (3, 3),
        (8, 3),
        (0, 4),
        (5, 4),
        (2, 5),
        (7, 5),
        (4, 6),
        (1, 7),
        (6, 7),
        (3, 8),
        (8, 8),
    ]
    assert DarkroomEnv(goals="test").goals == test
    rng_goals = {DarkroomEnv(goals="test").reset(seed=s)[1]["goal"] for s in range(200)}
    assert rng_goals == set(test)


@pytest.mark.parametrize("cls", [DarkroomEnv, DarkroomHardEnv])
@pytest.mark.parametrize("goal", [(4, 4), (0, 0), (8, 3), (5, 4)])
def test_darkroom_oracle_reaches_documented_optimum(cls, goal):
    env = cls(goal=goal)
    returns = rollout(env, lambda env, obs, info, t: walk_to(info["goal"], obs), seed=0, episodes=2)
    assert returns.tolist() == [env.optimal_return_for(goal)] * 2 == [env.optimal_return] * 2


@pytest.mark.parametrize("cls", [DarkroomEnv, DarkroomHardEnv])
def test_darkroom_random_return_matches_monte_carlo(cls):
    env = cls(goals="all")
    returns = rollout(env, lambda env, obs, info, t: env.np_random.integers(5), seed=0, episodes=4000)
    assert abs(returns.mean() - env.random_return) < 4 * returns.std() / np.sqrt(len(returns))


def test_key_to_door_oracle_and_random_return():
    env = DarkKeyToDoorEnv()

    def oracle(env, obs, info, t):
        return walk_to(info["door"] if env.unwrapped._has_key else info["key"], obs)

    assert rollout(env, oracle, seed=0, episodes=20).tolist() == [2.0] * 20 == [env.optimal_return] * 20
    returns = rollout(env, lambda env, obs, info, t: env.np_random.integers(5), seed=0, episodes=3000)
    assert abs(returns.mean() - env.random_return) < 4 * returns.std() / np.sqrt(len(returns))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: TMazeEnv(corridor_length=-1), "corridor_length=-1"),
        (lambda: TMazeEnv(corridor_length=0), "corridor_length=0"),
        (lambda: RepeatPreviousEnv(k=8, episode_length=8), "k=8"),
        (lambda: RepeatPreviousEnv(k=0), "k=0"),
        (lambda: RepeatPreviousEnv(n_symbols=1), "n_symbols=1"),
        (lambda: DarkroomEnv(goal=(9, 0)), r"goal=\(9, 0\)"),
        (lambda: DarkroomEnv(goal=(-1, 2)), r"goal=\(-1, 2\)"),
        (lambda: DarkroomEnv(goals="validation"), "goals='validation'"),
        (lambda: DarkKeyToDoorEnv(door=(3, 12)), r"door=\(3, 12\)"),
        (lambda: DarkroomEnv(episode_length=0), "episode_length=0"),
    ],
)
def test_bad_arguments_name_the_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ------------------------------------------------------------------ POPGym
def popgym_oracle(env, obs, info, t):
    """The right answer from the game's own state: the first suit, the queried colour's count, the suit 4 cards back,
    a push from the full CartPole state (velocities included), the recited card."""
    game = env.unwrapped
    if isinstance(game, envs.PopgymRepeatPreviousEasy):
        hand = game.deck["player"]
        return int(game.deck.suits_idx[hand[-game.k]]) if len(hand) >= game.k else 0
    if isinstance(game, envs.PopgymStatelessCartPoleEasy):
        x, x_dot, theta, theta_dot = game.state
        return int(0.1 * x + 0.5 * x_dot + 10 * theta + 2 * theta_dot > 0)
    if isinstance(game, envs.PopgymRepeatFirstEasy):
        return int(game.card)
    if isinstance(game, envs.PopgymCountRecallEasy):
        return int(game.counts[game.query])
    return int(game.deck.suits_idx[game.deck["system"][-1]]) if len(game.deck) == 0 and t >= 51 else 0


@pytest.mark.parametrize("env_id", POPGYM_IDS)
def test_popgym_task_passes_checker(env_id):
    check_env(gym.make(env_id).unwrapped, warn=False)


@pytest.mark.parametrize("env_id", POPGYM_IDS)
def test_popgym_oracle_scores_optimal_and_random_play_the_documented_random_return(env_id):
    env = gym.make(env_id)
    game = env.unwrapped
    np.testing.assert_allclose(rollout(env, popgym_oracle, seed=0, episodes=3), [game.optimal_return] * 3, atol=1e-9)
    returns = rollout(env, lambda env, obs, info, t: env.unwrapped.np_random.integers(env.action_space.n), 0, 1500)
    assert abs(returns.mean() - game.random_return) < 4 * returns.std() / np.sqrt(len(returns))


def test_popgym_observations_go_through_the_history_wrapper():
    from sb3_masked_attention import HistoryWrapper

    env = HistoryWrapper(gym.make("sb3ma/popgym-CountRecallEasy-v0"), history_len=3)  # MultiDiscrete([2, 2])
    window, _ = env.reset(seed=0)
    assert window["obs"].shape == (3, 4) and window["obs"][-1].sum() == 2
    env = HistoryWrapper(gym.make("sb3ma/popgym-AutoencodeEasy-v0"), history_len=3)  # MultiDiscrete([2, 4])
    window, _ = env.reset(seed=0)
    mode = int(env.unwrapped.mode.value)
    suit = int(env.unwrapped.deck.suits_idx[env.unwrapped.deck["system"][-1]])
    assert window["obs"].shape == (3, 6) and window["obs"][-1].tolist() == np.eye(6)[[mode, 2 + suit]].sum(0).tolist()
