import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory):
    """A tiny PPO + HeadMaskedTransformerPolicy on a 3-step T-maze (history 6, 2 layers, heads hiding 0/30/60/90%)."""
    from stable_baselines3 import PPO

    from sb3_masked_attention.environments import make_history_vec_env

    env = make_history_vec_env("sb3ma/TMaze-v0", history_len=6, n_envs=2, env_kwargs={"corridor_length": 3})
    model = PPO(
        "HeadMaskedTransformerPolicy",
        env,
        n_steps=32,
        batch_size=64,
        n_epochs=1,
        seed=0,
        policy_kwargs={
            "features_extractor_kwargs": {
                "d_model": 16,
                "n_heads": 4,
                "n_layers": 2,
                "head_mask_strategy": [0.0, 0.3, 0.6, 0.9],
            }
        },
    )
    model.learn(64)
    path = tmp_path_factory.mktemp("model") / "model.zip"
    model.save(path)
    return path


@pytest.fixture
def lock_held_elsewhere():
    """A context manager: another process holds the folder lock of a run or study folder for the block."""
    import contextlib
    import subprocess
    import sys

    @contextlib.contextmanager
    def hold(directory):
        code = (
            "import sys; from sb3_masked_attention.io import hold_folder_lock; "
            "hold_folder_lock(sys.argv[1]); print('held', flush=True); sys.stdin.read()"
        )
        process = subprocess.Popen(
            [sys.executable, "-c", code, str(directory)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert process.stdout.readline().strip() == "held"
            yield
        finally:
            process.kill()
            process.wait()

    return hold
