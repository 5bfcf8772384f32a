"""Multi-scale extractors: sizes, attention maps, PPO safety and the SB3 / sb3-contrib plumbing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from stable_baselines3 import PPO

from envs.territory import TerritoryControlEnv
from sb3_masked_attention import (
    AttentionCNNBranch,
    MaskableMultiScaleAttentionPolicy,
    MultiScaleAttentionPolicy,
    MultiScaleExtractor,
    MultiScaleExtractorWithAttention,
    SpatialAttention,
)
from sb3_masked_attention.attention import MaskedMultiHeadAttention
from sb3_masked_attention.extractors.multiscale import count_parameters


def map_space(shapes: dict[str, tuple[int, ...]], vector: int | None = 8) -> spaces.Dict:
    subspaces = {key: spaces.Box(0, 255, shape, np.uint8) for key, shape in shapes.items()}
    if vector:
        subspaces["global"] = spaces.Box(0.0, 1.0, (vector,), np.float32)
    return spaces.Dict(subspaces)


TERRITORY = map_space({"global_map": (6, 128, 128), "local_map": (6, 128, 128), "tactical_map": (6, 64, 64)})


def sample(space: spaces.Dict, batch: int) -> dict[str, torch.Tensor]:
    space.seed(0)
    return {
        key: torch.as_tensor(np.stack([s.sample() for _ in range(batch)])).float() / 255 for key, s in space.spaces.items()
    }


def test_parameter_counts_near_the_reference_design():
    plain = count_parameters(MultiScaleExtractor(TERRITORY, features_dim=512))
    attention = count_parameters(MultiScaleExtractorWithAttention(TERRITORY, features_dim=512))
    assert 1.3e6 < plain < 1.7e6, plain
    assert 1.8e6 < attention < 2.3e6, attention


@pytest.mark.parametrize("cls", [MultiScaleExtractor, MultiScaleExtractorWithAttention])
@pytest.mark.parametrize(
    "space",
    [
        TERRITORY,
        map_space({"a": (3, 40, 40), "b": (1, 200, 100)}, vector=3),
        map_space({"only": (2, 8, 8)}, vector=None),
    ],
    ids=["territory", "odd-sizes", "no-vector"],
)
def test_any_sizes_and_batch_of_one(cls, space):
    extractor = cls(space, features_dim=32, branch_dim=16, global_dim=8, cnn_channels=(4, 8, 8))
    features = extractor(sample(space, 1))
    assert features.shape == (1, 32)
    assert extractor(sample(space, 3)).shape == (3, 32)


def test_attention_maps_shapes_and_meaning():
    extractor = MultiScaleExtractorWithAttention(TERRITORY, attention_stages=(1, 2))
    features, maps = extractor.forward_with_attention(sample(TERRITORY, 2))
    assert features.shape == (2, 512)
    assert maps["global_map/spatial_stage2"].shape == (2, 16, 16)
    assert maps["tactical_map/spatial_stage1"].shape == (2, 8, 8)
    assert maps["local_map/channel_stage1"].shape == (2, 64)
    assert "global_map/spatial_stage0" not in maps
    assert maps["scale_weights"].shape == (3,)
    torch.testing.assert_close(maps["scale_weights"], torch.full((3,), 1 / 3))
    assert maps["cross_attention"].shape == (2, 4, 3)
    torch.testing.assert_close(maps["cross_attention"].sum(-1), torch.ones(2, 4))
    assert isinstance(extractor.cross_attention, MaskedMultiHeadAttention)  # the one attention core
    assert MultiScaleExtractor(TERRITORY).forward_with_attention(sample(TERRITORY, 1))[1] == {}


def test_attention_branch_starts_as_the_plain_cnn():
    torch.manual_seed(0)
    with_attention = AttentionCNNBranch(6, 32, (8, 16, 16), attention_stages=(0, 1, 2))
    plain = AttentionCNNBranch(6, 32, (8, 16, 16), use_attention=False)
    plain.load_state_dict(with_attention.state_dict(), strict=False)
    x = torch.rand(2, 6, 64, 64)
    torch.testing.assert_close(with_attention(x), plain(x))


@pytest.mark.parametrize("size", [16, 256])
def test_spatial_attention_keeps_activation_scale_on_large_maps(size):
    torch.manual_seed(0)
    attention = SpatialAttention()
    torch.nn.init.normal_(attention.conv.weight, std=0.3)
    x = torch.rand(2, 8, size, size)
    out, weights = attention(x)
    assert weights.shape == (2, size, size) and ((weights > 0) & (weights < 1)).all()
    ratio = (out.abs().mean() / x.abs().mean()).item()
    assert 0.5 < ratio < 2.0, f"activations scaled by {ratio} on a {size}x{size} map"


def territory_env(**kwargs) -> TerritoryControlEnv:
    return TerritoryControlEnv(map_size=64, num_bots=2, max_steps=40, **kwargs)


SMALL = dict(features_extractor_kwargs=dict(branch_dim=32, global_dim=16, cnn_channels=(8, 16, 16), features_dim=64))


@pytest.mark.parametrize("extractor", ["attention", "plain"])
def test_log_probs_and_values_identical_in_train_and_eval_mode(extractor):
    model = PPO(
        "MultiScaleAttentionPolicy",
        territory_env(),
        n_steps=16,
        batch_size=16,
        seed=0,
        policy_kwargs=dict(multiscale_extractor=extractor, **SMALL),
    )
    env = territory_env()
    obs, _ = env.reset(seed=1)
    obs_tensor, _ = model.policy.obs_to_tensor({k: v[None] for k, v in obs.items()})
    actions = torch.tensor([[1, 2]])
    results = []
    for train in (True, False):
        model.policy.set_training_mode(train)
        with torch.no_grad():
            values, log_prob, entropy = model.policy.evaluate_actions(obs_tensor, actions)
        results.append((values, log_prob, entropy))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not any(isinstance(m, (torch.nn.Dropout, torch.nn.modules.batchnorm._BatchNorm)) for m in model.policy.modules())


def test_maskable_ppo_learns_with_the_alias_and_masks():
    model = MaskablePPO(
        "MultiScaleAttentionPolicy", territory_env(), n_steps=32, batch_size=16, n_epochs=1, seed=0, policy_kwargs=SMALL
    )
    assert isinstance(model.policy, MaskableMultiScaleAttentionPolicy)
    assert isinstance(model.policy.features_extractor, MultiScaleExtractorWithAttention)
    model.learn(64)
    env = territory_env()
    obs, _ = env.reset(seed=0)
    for _ in range(10):
        masks = env.action_masks()
        action, _ = model.predict(obs, action_masks=masks)
        assert masks[action[0]], "a masked target was chosen"
        obs, _, _terminated, _truncated, info = env.step(action)
        assert not info["invalid_action"]


def test_stock_multi_input_policy_takes_either_extractor_by_class():
    for cls in (MultiScaleExtractor, MultiScaleExtractorWithAttention):
        kwargs = SMALL["features_extractor_kwargs"]
        model = PPO(
            "MultiInputPolicy",
            territory_env(),
            n_steps=16,
            batch_size=16,
            policy_kwargs=dict(features_extractor_class=cls, features_extractor_kwargs=kwargs),
        )
        model.learn(16)
        assert type(model.policy.features_extractor) is cls
    assert isinstance(PPO("MultiScaleAttentionPolicy", territory_env(), policy_kwargs=SMALL).policy, MultiScaleAttentionPolicy)


def test_bad_inputs_raise_value_errors():
    with pytest.raises(ValueError, match="expected a spaces.Dict"):
        MultiScaleExtractor(spaces.Box(0, 1, (6, 64, 64)))
    with pytest.raises(ValueError, match="too small"):
        MultiScaleExtractor(map_space({"tiny": (3, 4, 4)}))
    with pytest.raises(ValueError, match="no map"):
        MultiScaleExtractor(spaces.Dict({"v": spaces.Box(0, 1, (3,))}))
    with pytest.raises(ValueError, match="features_dim=0"):
        MultiScaleExtractor(TERRITORY, features_dim=0)
    with pytest.raises(ValueError, match="attention_stages"):
        MultiScaleExtractorWithAttention(TERRITORY, attention_stages=(3,))
    with pytest.raises(ValueError, match="'transformer' is unknown"):
        PPO("MultiScaleAttentionPolicy", territory_env(), policy_kwargs=dict(multiscale_extractor="transformer"))


def test_plot_multiscale_attention_draws_every_map(tmp_path):
    from PIL import Image

    from sb3_masked_attention.analysis.multiscale_plot import plot_multiscale_attention

    extractor = MultiScaleExtractorWithAttention(TERRITORY, attention_stages=(1, 2))
    observation = {key: space.sample() for key, space in TERRITORY.spaces.items()}
    batch = {key: torch.as_tensor(value[None]).float() / (255 if value.ndim == 3 else 1) for key, value in observation.items()}
    _, maps = extractor.forward_with_attention(batch)
    plot_multiscale_attention(observation, maps, tmp_path / "maps.png", title="test")
    width, height = Image.open(tmp_path / "maps.png").size
    assert height > width  # 3 map rows + the fusion row, 3 columns (picture + two stages)
