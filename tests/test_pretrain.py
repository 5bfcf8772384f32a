"""Self-supervised objectives, pretraining and the hand-over to PPO through the policy keyword."""

from __future__ import annotations

import pytest
import torch
from stable_baselines3 import PPO

from sb3_masked_attention.environments import make_history_vec_env
from sb3_masked_attention.pretrain.objectives import (
    ForwardDynamics,
    InverseDynamics,
    MaskedReconstruction,
    TokenLayout,
    make_objectives,
)
from sb3_masked_attention.pretrain.train import load_windows, pretrain

LAYOUT = TokenLayout(obs=slice(0, 3), action=slice(3, 5), discrete_action=True)


def batch(b=4, t=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.rand(b, t, 3, generator=g) + 1.0  # never equal to the mask value 0
    action = torch.nn.functional.one_hot(torch.randint(2, (b, t), generator=g), 2).float()
    tokens = torch.cat([obs, action, torch.ones(b, t, 1)], dim=-1)
    return tokens, torch.ones(b, t)


class Spy:
    """An encoder that records what it was given and returns features that carry the input."""

    def __init__(self, d_model=8):
        self.seen, self.proj = [], torch.nn.Linear(6, d_model)

    def __call__(self, tokens, valid):
        self.seen.append(tokens.clone())
        return self.proj(tokens)


def test_inverse_dynamics_hides_exactly_the_predicted_actions():
    tokens, valid = batch()
    valid[0, :2] = 0  # padding: never hidden, never predicted
    starts = torch.zeros_like(valid)
    starts[1, 3] = 1  # an episode start: its previous action belongs to another episode
    spy, objective = Spy(), InverseDynamics(8, LAYOUT, ratio=0.5)
    loss = objective(spy, tokens, valid, starts, torch.Generator().manual_seed(0))
    seen = spy.seen[0]
    hidden = (seen[..., 3:5] == 0).all(-1)
    assert torch.equal(seen[..., :3], tokens[..., :3])  # observations untouched
    assert not hidden[:, 0].any() and not hidden[0, :3].any() and not hidden[1, 3]
    assert hidden.sum(1).tolist() == [2, 2, 3, 3]  # ceil(ratio x eligible) per row: 3, 4, 4, 5 eligible
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_inverse_dynamics_with_a_horizon_reads_later_steps():
    tokens, valid = batch(b=2, t=6)
    starts = torch.zeros_like(valid)
    starts[1, 4] = 1
    read_at = []

    def encode(masked, v):
        read_at.append(masked)
        return torch.zeros(2, 6, 8, requires_grad=True)

    objective = InverseDynamics(8, LAYOUT, ratio=1.0, horizon=2)
    objective(encode, tokens, valid, starts)
    hidden = (read_at[0][..., 3:5] == 0).all(-1)
    # token p holds a_{p-1}, read at p+1: p in 1..4; row 1 loses p=3 and p=4 (an episode starts at 4)
    assert hidden[0].tolist() == [False, True, True, True, True, False]
    assert hidden[1].tolist() == [False, True, True, False, False, False]


def test_masked_reconstruction_targets_the_hidden_steps():
    tokens, valid = batch()
    spy = Spy()
    objective = MaskedReconstruction(8, LAYOUT, ratio=0.34)
    objective(spy, tokens, valid, None, torch.Generator().manual_seed(1))
    seen = spy.seen[0]
    hidden = (seen[..., :3] == 0).all(-1)
    assert hidden.sum(1).tolist() == [3, 3, 3, 3]  # ceil(0.34 x 6)
    assert torch.equal((seen[..., 3:5] == 0).all(-1), hidden)  # the previous action goes with the observation
    assert torch.equal(seen[~hidden], tokens[~hidden])


def test_forward_dynamics_learns_a_known_transition():
    """o_{t+1} = o_t + (1 if a_t else -1) / 8: a trunk that sees o_t and a head that sees a_t can fit it."""
    g = torch.Generator().manual_seed(0)
    steps = torch.randint(2, (64, 8), generator=g)  # steps[:, t] made obs[:, t], so token t holds it as previous action
    obs = torch.cumsum(steps.float() * 2 - 1, dim=1)[..., None] / 8
    action = torch.nn.functional.one_hot(steps, 2).float()
    tokens = torch.cat([obs, action], dim=-1)
    layout = TokenLayout(obs=slice(0, 1), action=slice(1, 3), discrete_action=True)
    trunk = torch.nn.Linear(3, 16)
    objective = ForwardDynamics(16, layout)
    optimizer = torch.optim.Adam(list(trunk.parameters()) + list(objective.parameters()), lr=1e-2)
    encode = lambda t, v: trunk(t)  # noqa: E731
    first = objective(encode, tokens, torch.ones(64, 8)).item()
    for _ in range(300):
        loss = objective(encode, tokens, torch.ones(64, 8))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.02 * first


@pytest.mark.parametrize("names, message", [([], "empty"), (["bert"], "'bert' is unknown")])
def test_make_objectives_rejects_bad_names(names, message):
    with pytest.raises(ValueError, match=message):
        make_objectives(names, 8, LAYOUT)
    with pytest.raises(ValueError, match="ratio=1.5"):
        InverseDynamics(8, LAYOUT, ratio=1.5)


EXTRACTOR = {"d_model": 16, "n_heads": 4, "n_layers": 1, "head_mask_strategy": [0.0, 0.2, 0.4, 0.6]}


@pytest.fixture(scope="module")
def trunk(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    pretrain(
        root / "trunk.pt",
        env_id="sb3ma/TMaze-v0",
        updates=5,
        collect_steps=64,
        history_len=6,
        env_kwargs={"corridor_length": 3},
        save_data=root / "windows.npz",
        extractor_kwargs=EXTRACTOR,
        batch_size=8,
        val_fraction=0.25,  # 16 validation windows: 2 steps in each of 8 envs (one step has no pair to learn from)
        progress=False,
    )
    return root


def test_pretraining_saves_the_trunk_and_the_windows(trunk):
    windows, discrete = load_windows(trunk / "windows.npz")
    assert discrete and windows["obs"].shape[:2] == (64, 6) and set(windows) == {"obs", "prev_action", "prev_reward", "valid"}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(trunk / "trunk.run" / "tensorboard")).Reload().Tags()["scalars"]
    assert {
        "pretrain/inverse_dynamics",
        "pretrain/masked_reconstruction",
        "pretrain/forward_dynamics",
        "pretrain/total",
    } <= set(tags)
    again = pretrain(
        trunk / "again.pt",
        dataset=trunk / "windows.npz",
        objectives=("forward_dynamics",),
        updates=2,
        extractor_kwargs=EXTRACTOR,
        batch_size=8,
        progress=False,
    )
    assert again.config["history_len"] == 6
    with pytest.raises(ValueError, match="'observation' is not a window key"):
        pretrain(trunk / "x.pt", dataset=trunk / "windows.npz", updates=1, normalize_keys=("observation",), progress=False)


def test_policy_keyword_hands_the_trunk_to_ppo_and_survives_save_load(trunk, tmp_path):
    saved = torch.load(trunk / "trunk.pt", weights_only=True)["state_dict"]
    env = make_history_vec_env("sb3ma/TMaze-v0", history_len=6, n_envs=2, env_kwargs={"corridor_length": 3})
    kwargs = {
        "features_extractor_kwargs": EXTRACTOR,
        "pretrained_extractor": str(trunk / "trunk.pt"),
        "freeze_extractor": True,
    }
    model = PPO("HeadMaskedTransformerPolicy", env, n_steps=16, batch_size=32, n_epochs=1, policy_kwargs=kwargs, seed=0)
    extractor = model.policy.features_extractor
    for name, value in extractor.state_dict().items():
        assert torch.equal(value, saved[name]), name
    model.learn(32)
    for name, value in extractor.state_dict().items():
        assert torch.equal(value, saved[name]), f"{name} moved although frozen"
    model.save(tmp_path / "model.zip")
    (trunk / "copy.pt").write_bytes((trunk / "trunk.pt").read_bytes())
    with pytest.warns(UserWarning, match="not found"):
        PPO("HeadMaskedTransformerPolicy", env, policy_kwargs={**kwargs, "pretrained_extractor": str(tmp_path / "gone.pt")})
    loaded = PPO.load(tmp_path / "model.zip")
    assert all(torch.equal(a, b) for a, b in zip(loaded.policy.state_dict().values(), model.policy.state_dict().values()))


def test_policy_keyword_names_the_mismatching_field(trunk):
    env = make_history_vec_env("sb3ma/TMaze-v0", history_len=6, n_envs=1, env_kwargs={"corridor_length": 3})
    with pytest.raises(ValueError, match="d_model=16 but the model's extractor has d_model=32"):
        PPO(
            "HeadMaskedTransformerPolicy",
            env,
            policy_kwargs={
                "features_extractor_kwargs": {**EXTRACTOR, "d_model": 32},
                "pretrained_extractor": str(trunk / "trunk.pt"),
            },
        )


def test_pretrain_command_errors_exit_2(tmp_path):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "sb3_masked_attention.cli", "pretrain", "--out", str(tmp_path / "x.pt")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "--env" in result.stderr and "Traceback" not in result.stderr


def test_pretraining_resumes_after_a_kill_as_if_it_never_stopped(tmp_path, monkeypatch):
    from sb3_masked_attention.pretrain import train as pretrain_module

    kwargs = dict(env_id="sb3ma/TMaze-v0", updates=6, collect_steps=48, history_len=5, env_kwargs={"corridor_length": 2},
                  val_fraction=0.5, extractor_kwargs=EXTRACTOR, batch_size=4, eval_every=3, schedule="cosine",
                  progress=False)  # fmt: skip
    straight = pretrain(tmp_path / "straight.pt", **kwargs)
    real, calls = pretrain_module.validation_losses, []

    def killed(*args, **kw):  # the process dies at the second validation (update 6), after the checkpoint of update 3
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(pretrain_module, "validation_losses", killed)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tmp_path / "resumed.pt", **kwargs)
    monkeypatch.setattr(pretrain_module, "validation_losses", real)
    assert not (tmp_path / "resumed.pt").exists() and (tmp_path / "resumed.run" / "checkpoint.pt").exists()
    with pytest.raises(ValueError, match="batch_size=4, not 8"):
        pretrain(tmp_path / "resumed.pt", **{**kwargs, "batch_size": 8})
    resumed = pretrain(tmp_path / "resumed.pt", **kwargs)  # resumes at update 3
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(tmp_path / "straight.run" / "tensorboard")).Reload().Tags()["scalars"]
    assert {"val/inverse_dynamics", "val/masked_reconstruction", "val/forward_dynamics"} <= set(tags)
