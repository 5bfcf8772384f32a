"""Bad inputs, as a hostile but fair user gives them: each is refused with one line naming the file, key or value
(exit status 2 on the command line, ValueError in the API), and no crafted file runs code."""

from __future__ import annotations

import io
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sb3_masked_attention.cli import main
from sb3_masked_attention.io import save_npz

MARKER = "code-ran.marker"
UNSAFE_ADVICE = ("weights_only", "allow_pickle", "Traceback", "trust the source")


class Payload:
    """Unpickling this object touches the marker file: it must never happen."""

    def __init__(self, directory: Path) -> None:
        self.path = str(directory / MARKER)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def scores_csv(rows: list[str], header: str = "method,env,seed,score") -> str:
    return "\n".join([header, *rows]) + "\n"


GOOD_ROWS = [f"{m},sb3ma/TMaze-v0,{s},0.{s}" for m in ("a", "b") for s in range(3)]
CURVE_HEADER = "method,env,seed,timesteps,score"
CURVE_ROWS = [f"{m},e,{s},{t},0.{s}" for m in ("a", "b") for s in range(3) for t in (1, 2)]
#: an `sb3ma train` run of 2 envs: minibatches that divide its rollout of 2 x 64 steps (the entry's 256 would not)
SMALL_RUN = {"output_dir": "run", "hyperparams": {"batch_size": 64}}
PRETRAIN = ["pretrain", "--env", "sb3ma/TMaze-v0", "--out", "p.pt", "--no-progress"]
EVENTS = "session,t,event,x,y\n" + "".join(f"s{k},{i * 0.5},click,{10 + i},{20 + i}\n" for k in range(4) for i in range(12))


@pytest.fixture(scope="module")
def files(tmp_path_factory, saved_model) -> Path:
    """A folder of bad (and a few good) input files, each named for what it is."""
    from sb3_masked_attention.ad.data import collect_histories, save_histories
    from sb3_masked_attention.environments import make_history_vec_env
    from sb3_masked_attention.extractors.trunk import save_extractor
    from sb3_masked_attention.policies import features_extractors
    from sb3_masked_attention.transformer_ppo import TransformerPPO
    from sb3_masked_attention.weights import load_sb3_model

    d = tmp_path_factory.mktemp("bad")
    (d / "dup.csv").write_text(scores_csv([*GOOD_ROWS, GOOD_ROWS[2]]))
    (d / "nan_seed.csv").write_text(scores_csv([*GOOD_ROWS, "a,sb3ma/TMaze-v0,,0.5"]))
    (d / "nan_steps.csv").write_text(scores_csv([*CURVE_ROWS, "a,e,0,,9.0"], CURVE_HEADER))
    (d / "text_steps.csv").write_text(scores_csv([*CURVE_ROWS, "a,e,0,ten,9.0"], CURVE_HEADER))
    (d / "conflict.csv").write_text(scores_csv([*CURVE_ROWS, "a,e,0,2,9.0"], CURVE_HEADER))
    (d / "good.csv").write_text(scores_csv(GOOD_ROWS))
    (d / "empty.csv").write_text("")
    (d / "bounds_text.csv").write_text("env,low,high\nsb3ma/TMaze-v0,abc,1\n")
    (d / "a_file").write_text("not a folder")
    (d / "bad.yml").write_text("name: x\nenvs: {a: 1\nmethods: []\n")
    (d / "events.csv").write_text(EVENTS)
    (d / "events_1e12.csv").write_text(EVENTS.replace("s1,1.0,click,12,22", "s1,1.0,click,1e12,22"))
    (d / "events_1e39.csv").write_text(EVENTS.replace("s1,1.0,click,12,22", "s1,1.0,click,1e39,22"))
    shutil.copy(saved_model, d / "model.zip")
    data = saved_model.read_bytes()
    (d / "truncated.zip").write_bytes(data[: len(data) // 2])
    (d / "garbage.bin").write_bytes(np.random.default_rng(0).bytes(600))
    (d / "empty.pt").write_bytes(b"")
    torch.save({"a": torch.zeros(4)}, d / "whole.pt")
    (d / "truncated.pt").write_bytes((d / "whole.pt").read_bytes()[:300])
    save_histories(collect_histories(goals=[(0, 0)], episodes=2, runs_per_goal=1, progress=False), d / "ad.npz")
    tx = make_history_vec_env("sb3ma/TMaze-v0", history_len=1, n_envs=2, env_kwargs={"corridor_length": 2})
    TransformerPPO(
        "TransformerMemoryPolicy", tx, n_steps=16, batch_size=32, policy_kwargs={"memory_len": 4, "d_model": 16}
    ).save(d / "tx.zip")
    np.save(d / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    header = io.BytesIO()  # a .npy header claiming 10^12 float64 over 64 bytes of data
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
    (d / "claims_8tb.npy").write_bytes(header.getvalue() + bytes(64))
    with zipfile.ZipFile(d / "claims_8tb.npz", "w") as archive:
        archive.writestr("last_query.npy", header.getvalue() + bytes(64))
    Image.new("1", (5000, 5000)).save(d / "huge_map.png")  # 25 M pixels in 4 KB
    steps, context = 3, 4
    nan_weights = np.full((steps, 1, 2, context), 0.25, dtype=np.float16)
    nan_weights[1, 0, 1] = np.nan
    save_npz(
        d / "nan_capture.npz",
        {
            "last_query": nan_weights,
            "valid": np.ones((steps, context), bool),
            "positions": np.tile(np.arange(context), (steps, 1)),
            "rewards": np.zeros(steps, np.float32),
            "episode_starts": np.zeros(steps, bool),
            "full_steps": np.zeros(0, np.int64),
            "full_attention": np.zeros((0, 1, 2, context, context), np.float16),
            "full_valid": np.zeros((0, context), bool),
            "head_fractions": np.zeros(2, np.float32),
        },
        {"kind": "policy"},
    )
    np.savez(d / "objects.npz", last_query=np.array([{"a": 1}], dtype=object))
    model = load_sb3_model(saved_model)
    save_extractor(features_extractors(model.policy)[0], d / "trunk.pt")
    return d


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # sb3ma report: every silently wrong answer is now an error naming the file and the lines
        (["report", "dup.csv", "--out", "r"], "repeat the run method='a', env='sb3ma/TMaze-v0', seed=2 on CSV lines 4, 8"),
        (["report", "nan_seed.csv", "--out", "r"], "'seed' has 1 value(s) that are not an integer"),
        (["report", "nan_steps.csv", "--out", "r"], "'timesteps' has 1 value(s)"),
        (["report", "text_steps.csv", "--out", "r"], "'timesteps' has 1 value(s)"),
        (["report", "conflict.csv", "--out", "r"], "seed=0, timesteps=2 on CSV lines 3, 14"),
        (["report", ".", "--out", "r"], "scores file '.' is a folder"),
        (["report", "empty.csv", "--out", "r"], "scores file 'empty.csv' is empty"),
        (["report", "good.csv", "--out", "r", "--normalize", "bounds_text.csv"], "'bounds_text.csv' line 2: low='abc'"),
        (["report", "good.csv", "--out", "a_file", "--reps", "10"], "'a_file' is a file, not a folder"),
        (["study", "run", "bad.yml", "--dir", "s"], "study file 'bad.yml' is not valid YAML at line 3"),
        # training commands: keyword arguments checked against the constructor before anything is written
        (
            ["train", "--env", "sb3ma/TMaze-v0", "--env-kwargs", "corridor_lenght=5"],
            "['corridor_lenght'] not accepted by TMazeEnv",
        ),
        (["train-multiscale", "--map-size", "64", "--ppo-kwargs", "bogus=1", "--output-dir", "m"], "['bogus'] not accepted"),
        (["train", "--env", "sb3ma/TMaze-v0", "--hyperparams", "bogus=1"], "hyperparams ['bogus'] are not arguments of ppo"),
        # settings outside the ranges SB3 assumes train without a word: refused before anything is built
        (
            ["train", "--env", "sb3ma/TMaze-v0", "--hyperparams", "gamma=2"],
            "gamma=2 is outside what SB3 assumes: expected a number in [0.0, 1.0]",
        ),
        (
            ["train", "--env", "sb3ma/TMaze-v0", "--hyperparams", "learning_rate=exp_1e-3"],
            "learning_rate='exp_1e-3' is not a schedule",
        ),
        (
            ["train-multiscale", "--map-size", "64", "--ppo-kwargs", "n_steps=0", "--output-dir", "m"],
            "ppo_kwargs: n_steps=0 is outside",
        ),
        (["events", "train", "--events", "events.csv", "--out", "a_file"], "run folder 'a_file' cannot be made"),
        (["train-multiscale", "--map-size", "64", "--local-view-size", "4096", "--output-dir", "m"], "larger than the map"),
        (["train-multiscale", "--map", "objects.npy", "--output-dir", "m"], "map file 'objects.npy' is not a plain numpy"),
        (["train-multiscale", "--map", "garbage.png", "--output-dir", "m"], "does not exist"),
        # pretraining objectives that cannot be computed: refused before the first update (their loss would be NaN)
        (
            [*PRETRAIN, "--history-len", "1", "--collect-steps", "32"],
            "objective 'inverse_dynamics' has no step to learn from in the",
        ),
        (
            [*PRETRAIN, "--history-len", "3", "--inverse-horizon", "5", "--collect-steps", "32"],
            "it needs 6 consecutive real steps of one episode (horizon=5)",
        ),
        (
            [*PRETRAIN, "--objectives", "forward_dynamics", "--collect-steps", "1"],
            "objective 'forward_dynamics' has no step to learn from in the 1 training windows",
        ),
        # unbounded settings: refused before anything is allocated or looped over
        (
            ["events", "synth", "--sessions", "1", "--duration", "inf", "--out", "e.csv"],
            "duration=inf is invalid: expected seconds in (1, 86400]",
        ),
        (
            ["ad", "train", "--dataset", "ad.npz", "--batch-size", "100000000", "--context-len", "20", "--out", "big"],
            "batch_size=100000000 with 20",
        ),
        (
            [*PRETRAIN, "--batch-size", "100000000", "--collect-steps", "32"],
            "batch_size=100000000 with 16 tokens per window needs about",
        ),
        (["train", "--env", "Bad-v0"], "env 'Bad-v0' is not registered"),  # one line: nothing announced before it
        # model files
        (["evaluate", "truncated.zip", "--env", "sb3ma/TMaze-v0"], "'truncated.zip' cannot be loaded as a ppo model"),
        (["evaluate", "model.zip", "--env", "sb3ma/TMaze-v0", "--algo", "ppo_lstm"], "as a ppo_lstm model (AttributeError: "),
        (
            ["evaluate", "model.zip", "--env", "sb3ma/TMaze-v0", "--algo", "ppo_lstm"],
            "it is a ppo model, load it with --algo ppo",
        ),
        (
            ["evaluate", "model.zip", "--env", "sb3ma/TMaze-v0", "--vecnormalize", "garbage.bin"],
            "'garbage.bin' is not readable",
        ),
        (["evaluate", "model.zip"], "env_id is needed"),
        (
            ["evaluate", "tx.zip", "--env", "sb3ma/TMaze-v0"],
            "holds a TransformerMemoryPolicy, not a ppo policy: load it with --algo ppo_tx",
        ),
        (["ad", "eval", "empty.pt", "--out", "e"], "'empty.pt' is not a readable AD model: the file is empty"),
        (["ad", "eval", "truncated.pt", "--out", "e"], "'truncated.pt' is not a readable AD model: the file is cut short"),
        (["ad", "eval", "garbage.bin", "--out", "e"], "nothing in it ran"),
        (["ad", "eval", "trunk.pt", "--out", "e"], "is a pretrained trunk (written by `sb3ma pretrain`), not an AD model"),
        (["attention", "analyze", "objects.npy", "--out", "a"], "'objects.npy' is not a plain numpy archive"),
        (["attention", "analyze", "garbage.bin", "--out", "a"], "'garbage.bin' is not a plain numpy archive"),
        # oversized or impossible contents: refused by their headers before anything is allocated or advised
        (["attention", "analyze", "claims_8tb.npz", "--out", "a"], "array 'last_query' claims shape (1000000, 1000000)"),
        (["train-multiscale", "--map", "claims_8tb.npy", "--output-dir", "m"], "(8e+12 bytes) but the file holds 64 bytes"),
        (["train-multiscale", "--map", "huge_map.png", "--output-dir", "m"], "is 5000x5000 pixels: at most 16777216 are read"),
        (
            ["attention", "analyze", "nan_capture.npz", "--out", "a"],
            "last_query has 4 value(s) that are NaN, infinite or outside [0, 1] (first nan)",
        ),
        # event logs: off-screen coordinates are refused with their row, not clamped and scored
        (["events", "train", "--events", "events_1e12.csv", "--out", "ev"], "row 16: x=1e+12 is off the screen [0, 1920]"),
        (["events", "train", "--events", "events_1e39.csv", "--out", "ev"], "row 16: x=1e+39 is off the screen"),
    ],
)
def test_cli_refuses_with_one_line(files, monkeypatch, capsys, args, message):
    monkeypatch.chdir(files)
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert not any(advice in lines[0] for advice in UNSAFE_ADVICE), lines[0]
    assert not (files / "m").exists() and not (files / "s" / "runs").exists(), "a refused command wrote its output"


@pytest.mark.parametrize(
    ("args", "folder"),
    [
        (["train", "--env", "sb3ma/TMaze-v0", "--total-timesteps", "64", "--output-dir", "locked_t"], "locked_t"),
        (["train-multiscale", "--map-size", "64", "--total-timesteps", "64", "--output-dir", "locked_m"], "locked_m"),
        (["events", "train", "--events", "events.csv", "--epochs", "1", "--out", "locked_e"], "locked_e"),
        (["pretrain", "--env", "sb3ma/TMaze-v0", "--steps", "1", "--collect-steps", "32", "--out", "pl.pt"], "pl.run"),
        (["ad", "train", "--dataset", "ad.npz", "--updates", "1", "--out", "locked_a"], "locked_a"),
    ],
)
def test_every_trainer_refuses_a_folder_another_process_writes(files, monkeypatch, capsys, lock_held_elsewhere, args, folder):
    monkeypatch.chdir(files)
    with lock_held_elsewhere(files / folder):
        assert main([*args, "--no-progress"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"{folder}' is being written by another process: wait for it or stop it" in lines[0], lines
    assert [path.name for path in (files / folder).iterdir()] == [".lock"], "the refused trainer wrote into the folder"


def test_an_error_quoting_a_huge_value_is_one_bounded_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    seeds = "[" + ", ".join(["-1"] * 5000) + "]"  # 5,000 values, each refused, all quoted by the message
    Path("study.yml").write_text(f"name: x\nseeds: {seeds}\nenvs: {{}}\nmethods: {{}}\n")
    assert main(["study", "run", "study.yml", "--dir", "s", "--no-progress"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and len(lines[0]) < 2100 and lines[0].endswith("more characters)"), lines[0][-200:]


def test_a_refused_train_leaves_its_folder_empty_for_the_corrected_rerun(files, monkeypatch, capsys):
    monkeypatch.chdir(files)
    bad = ["train", "--env", "sb3ma/TMaze-v0", "--total-timesteps", "64", "--output-dir", "fixed_run", "--no-progress"]
    assert main([*bad, "--hyperparams", "policy_kwargs=dict(no_such_argument=1)"]) == 2  # refused by the policy
    assert [path.name for path in (files / "fixed_run").iterdir()] == [".lock"]
    assert main([*bad, "--hyperparams", "batch_size=64", "--n-envs", "2"]) == 0  # not refused as "not empty"
    assert (files / "fixed_run" / "model.zip").exists()


def test_train_refuses_a_folder_that_holds_a_run(files, monkeypatch, capsys):
    monkeypatch.chdir(files)
    (files / "old_run").mkdir()
    (files / "old_run" / "model.zip").write_bytes(b"a killed or finished run")
    assert main(["train", "--env", "sb3ma/TMaze-v0", "--total-timesteps", "64", "--output-dir", "old_run"]) == 2
    line = capsys.readouterr().err.strip()
    assert "--output-dir 'old_run' is not empty: `sb3ma train` does not resume a run" in line and "\n" not in line
    assert (files / "old_run" / "model.zip").read_bytes() == b"a killed or finished run"


# ---------------------------------------------------------------- crafted files: nothing in them may run
def _crafted_pt(directory: Path) -> Path:
    path = directory / "crafted.pt"
    with open(path, "wb") as handle:
        pickle.dump({"kind": "ad_model", "format": 2, "config": Payload(directory)}, handle)
    return path


def _crafted_npz(directory: Path) -> Path:
    path = directory / "crafted.npz"
    np.savez(path, last_query=np.array([Payload(directory)], dtype=object), meta=np.array("{}"))
    return path


def _crafted_npy(directory: Path) -> Path:
    path = directory / "crafted.npy"
    np.save(path, np.array([Payload(directory)], dtype=object), allow_pickle=True)
    return path


def _load_checkpoint(path: Path) -> None:
    from sb3_masked_attention.runs import RunDir

    run = RunDir(path.parent / "run", {"a": 1})
    shutil.copy(path, run.checkpoint)
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    run.load_state(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1.0))


def _trunk(path: Path) -> None:
    from sb3_masked_attention.extractors.trunk import load_into_extractor

    load_into_extractor(None, path)  # type: ignore[arg-type]  # refused before the extractor is touched


LOADERS = {
    "ad model": lambda p: __import__("sb3_masked_attention.ad.train", fromlist=["x"]).load_ad_model(p),
    "sequence model": lambda p: __import__("sb3_masked_attention.sequence.train", fromlist=["x"]).load_sequence_model(p),
    "pretrained trunk": _trunk,
    "run checkpoint": _load_checkpoint,
}


@pytest.mark.parametrize("loader", list(LOADERS))
def test_crafted_torch_file_runs_nothing(tmp_path, loader):
    path = _crafted_pt(tmp_path)
    with pytest.raises(ValueError, match="nothing in it ran|older version") as error:
        LOADERS[loader](path)
    assert not any(advice in str(error.value) for advice in UNSAFE_ADVICE)
    assert not (tmp_path / MARKER).exists(), "code in a crafted file ran"


@pytest.mark.parametrize("craft", [_crafted_npz, _crafted_npy])
def test_crafted_numpy_file_runs_nothing(tmp_path, craft):
    from envs.territory_maps import load_map
    from sb3_masked_attention.io import load_npz

    path = craft(tmp_path)
    with pytest.raises(ValueError, match="nothing in it ran") as error:
        load_npz(path, ("last_query",), "capture file", "sb3ma attention capture") if path.suffix == ".npz" else load_map(path)
    assert "allow_pickle" not in str(error.value)
    assert not (tmp_path / MARKER).exists(), "code in a crafted file ran"


def _rewrite_zip(source: Path, target: Path, **members: bytes) -> Path:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.namelist():
            new.writestr(item, members.get(item.replace(".", "_"), old.read(item)))
    return target


def test_weights_only_load_ignores_code_in_an_sb3_zip(tmp_path, saved_model):
    """An SB3 zip whose ``data`` carries a pickled payload: SB3's loader runs it, load_weights never reads it."""
    import base64
    import json

    from stable_baselines3 import PPO

    from sb3_masked_attention.environments import make_history_vec_env
    from sb3_masked_attention.weights import load_sb3_model, load_weights

    with zipfile.ZipFile(saved_model) as archive:
        data = json.loads(archive.read("data"))
    data["lr_schedule"][":serialized:"] = base64.b64encode(pickle.dumps(Payload(tmp_path))).decode()
    crafted = _rewrite_zip(saved_model, tmp_path / "crafted.zip", data=json.dumps(data).encode())

    honest = load_sb3_model(saved_model)
    env = make_history_vec_env("sb3ma/TMaze-v0", history_len=6, n_envs=2, env_kwargs={"corridor_length": 3})
    rebuilt = PPO("HeadMaskedTransformerPolicy", env, n_steps=32, batch_size=64, policy_kwargs=honest.policy_kwargs)
    model = load_weights(rebuilt, crafted)
    assert not (tmp_path / MARKER).exists(), "load_weights unpickled the data"
    obs = honest.observation_space.sample()
    assert honest.predict(obs, deterministic=True)[0] == model.predict(obs, deterministic=True)[0]
    assert model.num_timesteps == honest.num_timesteps
    for name, tensor in honest.policy.state_dict().items():
        torch.testing.assert_close(model.policy.state_dict()[name], tensor)

    PPO.load(crafted)  # SB3's own format: the reason the README calls SB3 zips code
    assert (tmp_path / MARKER).exists()

    poisoned = _rewrite_zip(saved_model, tmp_path / "poisoned.zip", policy_pth=pickle.dumps(Payload(tmp_path / "x")))
    (tmp_path / "x").mkdir()
    with pytest.raises(ValueError, match="nothing in it was run"):
        load_weights(model, poisoned)
    assert not (tmp_path / "x" / MARKER).exists()


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("env_wrapper", ["os.system"], "env_wrapper \\['os.system'\\] is not read: only"),
        ("policy_kwargs", f"dict(x=__import__('pathlib').Path('{MARKER}').touch())", "is not read: expected dict"),
        ("callback", "os.system", "'callback' is not read from a received file"),
        # rl-zoo evals replay_buffer_kwargs and imports a dotted policy (here the evil.py beside the folder)
        ("replay_buffer_kwargs", f"__import__('pathlib').Path('{MARKER}').touch()", "'replay_buffer_kwargs' is not read"),
        ("policy", "evil.Policy", "policy 'evil.Policy' is not a policy name of ppo"),
    ],
)
def test_run_folder_settings_that_name_code_are_refused(tmp_path, monkeypatch, key, value, message):
    import json

    from sb3_masked_attention.training import load_trained, train

    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(tmp_path)
    (tmp_path / "evil.py").write_text(f"import pathlib\npathlib.Path({MARKER!r}).touch()\nPolicy = None\n")
    train("sb3ma/TMaze-v0", history_len=4, n_envs=2, total_timesteps=64, env_kwargs={"corridor_length": 2}, **SMALL_RUN)
    settings = json.loads(Path("run/train_config.json").read_text())
    settings["hyperparams"][key] = value
    Path("run/train_config.json").write_text(json.dumps(settings))
    with pytest.raises(ValueError, match=message):
        load_trained("run")
    assert not (tmp_path / MARKER).exists()


def test_a_train_run_folder_loads_weights_only_and_evaluates_like_the_zip(tmp_path, monkeypatch):
    from sb3_masked_attention.evaluation.model_eval import evaluate_model
    from sb3_masked_attention.training import load_trained, train

    monkeypatch.chdir(tmp_path)
    run = train("sb3ma/TMaze-v0", history_len=4, n_envs=2, total_timesteps=256, env_kwargs={"corridor_length": 2}, **SMALL_RUN)
    rebuilt = load_trained("run").model
    for name, tensor in run.model.policy.state_dict().items():
        torch.testing.assert_close(rebuilt.policy.state_dict()[name], tensor)
    from_folder = evaluate_model("run", episodes=3, seeds=[0, 1])
    from_zip = evaluate_model("run/model.zip", "sb3ma/TMaze-v0", episodes=3, seeds=[0, 1], env_kwargs={"corridor_length": 2})
    np.testing.assert_array_equal(from_folder["mean_return"], from_zip["mean_return"])


# ---------------------------------------------------------------- API: exception type and message
def _api_cases():
    import gymnasium as gym

    from envs.territory import TerritoryControlEnv
    from sb3_masked_attention import HistoryWrapper, resolve_head_mask_strategy
    from sb3_masked_attention.environments import check_env_kwargs
    from sb3_masked_attention.masks import head_window_mask

    def step(action):
        env = HistoryWrapper(gym.make("CartPole-v1"), 4)
        env.reset(seed=0)
        env.step(action)

    return {
        "action -1 on Discrete(2)": (lambda: step(-1), r"action -1 is not in the action space Discrete\(2\)"),
        "action 5 on Discrete(2)": (lambda: step(5), r"action 5 is not in the action space"),
        "set of fractions": (lambda: resolve_head_mask_strategy({0.0, 0.5}, 2), "ordered list/tuple"),
        "NaN validity flag": (lambda: head_window_mask(torch.tensor([[np.nan, 1.0]]), [0.0]), "valid has NaN"),
        "unknown env kwarg": (lambda: check_env_kwargs("sb3ma/TMaze-v0", {"corridor_lenght": 5}), "corridor_lenght"),
        "local view > map": (lambda: TerritoryControlEnv(map_size=64, local_view_size=4096), "local_view_size=4096"),
    }


@pytest.mark.parametrize("case", list(_api_cases()))
def test_api_refuses_with_value_error(case):
    call, message = _api_cases()[case]
    with pytest.raises(ValueError, match=message):
        call()
