import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

from sb3_masked_attention import HeadMaskedTransformerExtractor, HistoryWrapper
from sb3_masked_attention.masks import head_window_mask
from sb3_masked_attention.strategies import resolve_head_mask_strategy


def history_space(history_len=8, obs_dim=3, n_actions=2, across_episodes=False):
    env = gym.make("CartPole-v1")
    env.observation_space = spaces.Box(-1, 1, (obs_dim,), np.float32)
    env.action_space = spaces.Discrete(n_actions)
    return HistoryWrapper(env, history_len, across_episodes=across_episodes).observation_space


def random_batch(space, batch, n_valid=None):
    obs = {key: torch.as_tensor(np.stack([s.sample() for _ in range(batch)])).float() for key, s in space.spaces.items()}
    length = space["valid"].shape[0]
    n_valid = length if n_valid is None else n_valid
    obs["valid"] = torch.zeros(batch, length)
    obs["valid"][:, length - n_valid :] = 1
    return obs


@pytest.mark.parametrize("positional", ["learned", "rotary"])
@pytest.mark.parametrize("batch", [1, 5])
def test_output_shape(positional, batch):
    space = history_space()
    extractor = HeadMaskedTransformerExtractor(space, d_model=32, n_heads=8, positional=positional)
    assert extractor.features_dim == 32
    assert extractor(random_batch(space, batch)).shape == (batch, 32)


def test_across_episode_window_is_accepted():
    space = history_space(across_episodes=True)
    extractor = HeadMaskedTransformerExtractor(space, d_model=16, n_heads=8)
    assert "episode_start" in extractor.token_keys
    assert extractor(random_batch(space, 2)).shape == (2, 16)


def test_padding_content_does_not_change_features():
    space = history_space(history_len=8)
    extractor = HeadMaskedTransformerExtractor(space, d_model=32, n_heads=8).eval()
    obs = random_batch(space, 3, n_valid=5)
    changed = {key: value.clone() for key, value in obs.items()}
    changed["obs"][:, :3] = 100.0
    changed["prev_reward"][:, :3] = -7.0
    torch.testing.assert_close(extractor(obs), extractor(changed))


def test_head_mask_hides_old_steps_from_a_single_layer():
    space = history_space(history_len=8)
    extractor = HeadMaskedTransformerExtractor(space, d_model=16, n_heads=2, n_layers=1, head_mask_strategy=[0.5, 0.5]).eval()
    obs = random_batch(space, 2)
    old_changed = {key: value.clone() for key, value in obs.items()}
    old_changed["obs"][:, :4] += 5.0  # the oldest half: invisible to both heads
    recent_changed = {key: value.clone() for key, value in obs.items()}
    recent_changed["obs"][:, 4] += 5.0
    torch.testing.assert_close(extractor(obs), extractor(old_changed))
    assert not torch.allclose(extractor(obs), extractor(recent_changed))


def test_returns_attention_weights_that_respect_the_mask():
    space = history_space(history_len=8)
    extractor = HeadMaskedTransformerExtractor(space, d_model=32, n_heads=8, n_layers=3, head_mask_strategy="diversified")
    obs = random_batch(space, 4, n_valid=6)
    features, weights = extractor.forward_with_attention(obs)
    torch.testing.assert_close(features, extractor(obs), atol=1e-5, rtol=1e-5)
    assert len(weights) == 3 and weights[0].shape == (4, 8, 8, 8)
    mask = head_window_mask(obs["valid"] > 0, extractor.head_fractions)
    assert all(torch.all(w[~mask] == 0) for w in weights)


@pytest.mark.parametrize(
    "space, kwargs, match",
    [
        (spaces.Box(-1, 1, (4,)), {}, "not a HistoryWrapper window"),
        (spaces.Dict({"obs": spaces.Box(-1, 1, (4, 2))}), {}, "not a HistoryWrapper window"),
        (None, dict(n_heads=3, d_model=32, head_mask_strategy="none"), "does not divide"),
        (None, dict(n_heads=4, head_mask_strategy="specialized"), "defines 8 heads but n_heads=4"),
        (None, dict(positional="sinusoidal"), "positional='sinusoidal'"),
        (None, dict(n_layers=0), "n_layers=0"),
    ],
)
def test_clear_errors(space, kwargs, match):
    with pytest.raises(ValueError, match=match):
        HeadMaskedTransformerExtractor(space or history_space(), **kwargs)


def test_the_default_is_no_mask_and_any_head_count_takes_it():
    extractor = HeadMaskedTransformerExtractor(history_space(), n_heads=4, d_model=32)
    assert extractor.head_fractions == (0.0, 0.0, 0.0, 0.0)
    assert extractor.state_dict()["head_fractions_saved"].tolist() == [0.0] * 4


def test_a_loaded_model_keeps_its_saved_head_fractions_whatever_the_default():
    trained = HeadMaskedTransformerExtractor(history_space(), head_mask_strategy="diversified")
    rebuilt = HeadMaskedTransformerExtractor(history_space())  # built with today's default
    rebuilt.load_state_dict(trained.state_dict())
    assert rebuilt.head_fractions == trained.head_fractions == resolve_head_mask_strategy("diversified", 8)
    obs = {key: torch.as_tensor(value) for key, value in history_space().sample().items()}
    obs = {key: value[None].float() for key, value in obs.items()}
    obs["valid"] = torch.ones_like(obs["valid"])
    torch.testing.assert_close(rebuilt(obs), trained(obs))


def test_a_model_saved_before_fractions_were_saved_gets_the_default_it_was_built_with():
    legacy = HeadMaskedTransformerExtractor(history_space(), head_mask_strategy="specialized").state_dict()
    del legacy["head_fractions_saved"]  # 0.1.0 did not save them; its default was "specialized"
    defaulted = HeadMaskedTransformerExtractor(history_space())
    defaulted.load_state_dict(legacy)  # strict: the missing entry is not an error
    assert defaulted.head_fractions == resolve_head_mask_strategy("specialized", 8)
    explicit = HeadMaskedTransformerExtractor(history_space(), head_mask_strategy="monotonic")
    explicit.load_state_dict(legacy)  # built with an explicit strategy: 0.1.0 built it the same way
    assert explicit.head_fractions == resolve_head_mask_strategy("monotonic", 8)


def test_mismatched_window_lengths_are_rejected():
    space = history_space(history_len=8)
    space.spaces["prev_reward"] = spaces.Box(-np.inf, np.inf, (5, 1))
    with pytest.raises(ValueError, match="'prev_reward'"):
        HeadMaskedTransformerExtractor(space)


def test_vec_normalize_does_not_change_the_mask():
    venv = make_vec_env("CartPole-v1", n_envs=4, seed=0, wrapper_class=HistoryWrapper, wrapper_kwargs=dict(history_len=12))
    normalized = VecNormalize(venv)  # default: every key of the Dict is normalised
    extractor = HeadMaskedTransformerExtractor(normalized.observation_space, d_model=16, n_heads=8)
    normalized.reset()
    rng = np.random.default_rng(0)
    for _ in range(60):
        obs, *_ = normalized.step(rng.integers(2, size=4))
        raw = normalized.get_original_obs()
        assert set(np.unique(raw["valid"])) <= {0.0, 1.0}
        got = extractor.attention_mask({"valid": torch.as_tensor(obs["valid"])})
        expected = head_window_mask(torch.as_tensor(raw["valid"]) > 0, extractor.head_fractions)
        assert torch.equal(got, expected)


def test_plugs_into_stock_multi_input_policy():
    env = HistoryWrapper(gym.make("CartPole-v1"), history_len=6)
    model = PPO(
        "MultiInputPolicy",
        env,
        n_steps=32,
        batch_size=16,
        n_epochs=1,
        policy_kwargs=dict(
            features_extractor_class=HeadMaskedTransformerExtractor,
            features_extractor_kwargs=dict(d_model=16, n_heads=8, head_mask_strategy="diversified"),
        ),
    )
    assert isinstance(model.policy.features_extractor, HeadMaskedTransformerExtractor)
    assert model.policy.features_extractor.head_fractions[-1] == 0.95
    model.learn(64)


@pytest.mark.parametrize("fill", [np.nan, np.inf, -np.inf, 1e30])
def test_padding_contents_never_reach_the_features(fill):
    space = history_space(history_len=8)
    extractor = HeadMaskedTransformerExtractor(space, d_model=16, n_heads=4, head_mask_strategy=[0.0, 0.3, 0.6, 0.9]).eval()
    batch = random_batch(space, 3, n_valid=5)
    spoiled = {key: value.clone() for key, value in batch.items()}
    for key in ("obs", "prev_action", "prev_reward"):
        spoiled[key][:, :3] = fill  # the three padding steps
    with torch.no_grad():
        expected, got = extractor(batch), extractor(spoiled)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("key", ["obs", "prev_action", "prev_reward"])
def test_non_finite_real_step_is_refused_naming_the_key(key):
    space = history_space(history_len=8)
    extractor = HeadMaskedTransformerExtractor(space, d_model=16, n_heads=4, head_mask_strategy=[0.0] * 4)
    batch = random_batch(space, 2, n_valid=5)
    batch[key][1, 6] = np.nan
    with pytest.raises(ValueError, match=f"observation key '{key}' has NaN or infinite entries in real"):
        extractor(batch)


def test_nan_validity_flags_are_refused_by_every_reader():
    space = history_space(history_len=8)
    extractor = HeadMaskedTransformerExtractor(space, d_model=16, n_heads=4, head_mask_strategy=[0.0] * 4)
    batch = random_batch(space, 2, n_valid=5)
    batch["valid"][0, 0] = np.nan
    with pytest.raises(ValueError, match="valid has NaN or infinite entries"):
        extractor(batch)
    with pytest.raises(ValueError, match="valid has NaN or infinite entries"):
        head_window_mask(batch["valid"], [0.0, 0.5])


def test_normalised_validity_flags_read_as_greater_than_zero_everywhere():
    valid = torch.tensor([[-1.2, -0.3, 0.4, 1.1], [-0.5, 0.2, 0.7, 0.9]])  # what VecNormalize makes of 0/1 flags
    torch.testing.assert_close(head_window_mask(valid, [0.0, 0.5]), head_window_mask(valid > 0, [0.0, 0.5]))
