"""Hand-over of a saved transformer trunk into an SB3 model's features extractor."""

from __future__ import annotations

import pytest
import torch
from stable_baselines3 import PPO

import envs  # noqa: F401  (registers sb3ma/ ids)
from sb3_masked_attention.environments import make_history_vec_env
from sb3_masked_attention.pretrain import load_pretrained_extractor, save_extractor


def model(seed: int, **extractor_kwargs) -> PPO:
    env = make_history_vec_env("sb3ma/TMaze-v0", history_len=6, n_envs=2, env_kwargs={"corridor_length": 3})
    kwargs = {"d_model": 16, "n_heads": 4, "n_layers": 2, "head_mask_strategy": [0.0, 0.3, 0.6, 0.9], **extractor_kwargs}
    return PPO(
        "HeadMaskedTransformerPolicy",
        env,
        n_steps=32,
        batch_size=64,
        n_epochs=1,
        seed=seed,
        policy_kwargs={"features_extractor_kwargs": kwargs},
    )


def test_weights_arrive_and_freeze_keeps_them(tmp_path):
    source, target = model(0), model(1)
    path = tmp_path / "trunk.pt"
    save_extractor(source.policy.features_extractor, path)
    load_pretrained_extractor(target, path, freeze=True)
    for (name, a), b in zip(
        source.policy.features_extractor.state_dict().items(), target.policy.features_extractor.state_dict().values()
    ):
        torch.testing.assert_close(a, b, msg=name)
    before = {k: v.clone() for k, v in target.policy.features_extractor.state_dict().items()}
    head_before = target.policy.action_net.weight.clone()
    target.learn(64)
    for name, value in target.policy.features_extractor.state_dict().items():
        torch.testing.assert_close(value, before[name], msg=f"frozen {name} changed")
    assert not torch.equal(head_before, target.policy.action_net.weight), "the heads still learn"


def test_unfrozen_trunk_fine_tunes_and_other_strategy_is_allowed(tmp_path):
    path = tmp_path / "trunk.pt"
    save_extractor(model(0).policy.features_extractor, path)
    target = load_pretrained_extractor(model(1, head_mask_strategy=[0.0, 0.0, 0.0, 0.0]), path)
    assert target.policy.features_extractor.head_fractions == (0.0, 0.0, 0.0, 0.0)  # the trunk's weights, its own masks
    before = target.policy.features_extractor.embed.weight.clone()
    target.learn(64)
    assert not torch.equal(before, target.policy.features_extractor.embed.weight)


def test_mismatch_names_the_field(tmp_path):
    path = tmp_path / "trunk.pt"
    save_extractor(model(0).policy.features_extractor, path)
    with pytest.raises(ValueError, match="n_layers=2 but the model's extractor has n_layers=1"):
        load_pretrained_extractor(model(1, n_layers=1), path)
    with pytest.raises(ValueError, match="does not exist"):
        load_pretrained_extractor(model(1), tmp_path / "missing.pt")
