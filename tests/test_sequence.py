"""Event logs, windows, the action-sequence decoder, its baselines, training, metrics and the `sb3ma events` commands."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sb3_masked_attention.attention import MaskedMultiHeadAttention
from sb3_masked_attention.cli import main
from sb3_masked_attention.sequence import (
    AdvancedAttentionDecoder,
    ContextAwareActionGenerator,
    EventLog,
    GRUDecoder,
    MultiScaleTimingProcessor,
    WindowConfig,
    load_events,
    make_windows,
    repeat_last,
    save_events,
    synthesize_sessions,
)
from sb3_masked_attention.sequence.data import timing_scale
from sb3_masked_attention.sequence.evaluate import generate_after, sequence_metrics, session_bootstrap
from sb3_masked_attention.sequence.events import Session
from sb3_masked_attention.sequence.train import load_sequence_model, train_sequence_model

WINDOW = WindowConfig(max_actions=5, max_history=12)


@pytest.fixture(scope="module")
def log():
    return synthesize_sessions(6, seed=3, duration=20.0)


@pytest.fixture(scope="module")
def csv_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("events")
    save_events(synthesize_sessions(8, seed=0, duration=15.0), folder / "train.csv")
    save_events(synthesize_sessions(3, seed=1, duration=15.0, prefix="t"), folder / "test.csv")
    return folder


def tiny(cls, log, **kwargs):
    torch.manual_seed(0)
    extra = {"n_heads": 4, "head_mask_strategy": [0.0, 0.0, 0.5, 0.75]} if cls is AdvancedAttentionDecoder else {}
    model = cls(16, WINDOW.max_actions, log.enum_sizes, log.event_types, window=WINDOW.to_dict(), **{**extra, **kwargs})
    return model.eval()


# ---------------------------------------------------------------- event files
def test_synthetic_sessions_round_trip_through_csv(log, tmp_path):
    save_events(log, tmp_path / "events.csv")
    loaded = load_events(tmp_path / "events.csv")
    assert [s.name for s in loaded.sessions] == [s.name for s in log.sessions]
    for a, b in zip(log.sessions, loaded.sessions):
        np.testing.assert_allclose(a.t, b.t)
        np.testing.assert_allclose(a.xy, b.xy)
        assert [log.event_types[e] for e in a.event] == [loaded.event_types[e] for e in b.event]
        for k, column in enumerate(log.enum_values):
            names = [log.enum_values[column][v] for v in a.enums[:, k]]
            assert names == [loaded.enum_values[column][v] for v in b.enums[:, list(loaded.enum_values).index(column)]]


def test_synthetic_sessions_look_human(log):
    assert synthesize_sessions(2, seed=3, duration=20.0).sessions[0].t.tolist() == log.sessions[0].t.tolist()  # seeded
    gaps = np.concatenate([np.diff(s.t) for s in log.sessions])
    shares = np.bincount(timing_scale(gaps).numpy(), minlength=3) / len(gaps)
    assert shares.min() > 0.15, shares  # fast bursts, medium interactions and slow pauses all occur
    # Fitts' law: between two pointer events, a longer move takes longer
    distance, time = [], []
    for s in log.sessions:
        pointer = s.event < 2
        for i in np.flatnonzero(pointer[1:] & pointer[:-1]) + 1:
            if s.t[i] - s.t[i - 1] < 1.0:  # within one activity
                distance.append(np.linalg.norm(s.xy[i] - s.xy[i - 1]))
                time.append(s.t[i] - s.t[i - 1])
    assert np.corrcoef(distance, time)[0, 1] > 0.7


@pytest.mark.parametrize(
    "text, message",
    [
        ("session,t,event,x\ns,0,click,1\n", "missing column.s. y"),
        ("session,t,event,x,y\ns,0.0,click,1,2\ns,0.5,key,1,2\ns,0.2,key,1,2\n", "row 4: t=0.2 is earlier than row 3"),
        ("session,t,event,x,y\ns,-1,click,1,2\ns,0.5,key,1,2\n", "row 2: t=-1.0 is negative"),
        ("session,t,event,x,y\ns,0,click,1,2\n,0.5,key,1,2\n", "row 3: empty session id"),
        ("session,t,event,x,y\ns,0,click,1,2\ns,0.5,key,1,2\nu,1,key,3,4\n", "row 4: session 'u' has 1 event"),
        ("session,t,event,x,y\ns,0,click,abc,2\n", "row 2: x='abc' is not a number"),
        ("session,t,event,x,y\n", "no events"),
        ("session,t,event,x,y\ns,0,click,1,2\ns,0.5,scroll,1,2\n", "row 3: unknown event 'scroll'"),
    ],
)
def test_bad_event_files_are_refused_naming_the_row(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_events(path, event_types=["click", "key"] if "scroll" in text else None)


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        ("1e12", "5", r"row 3: x=1e\+12 is off the screen \[0, 1920\] of 1920x1080"),  # once clamped and scored
        ("1e39", "5", r"row 3: x=1e\+39 is off the screen"),  # once inf in float32: an empty field
        ("5", "-1", r"row 3: y=-1 is off the screen \[0, 1080\]"),
    ],
)
def test_off_screen_coordinates_are_refused_naming_the_row(tmp_path, x, y, message):
    path = tmp_path / "events.csv"
    path.write_text(f"session,t,event,x,y\ns,0,click,1,2\ns,0.5,click,{x},{y}\n")
    with pytest.raises(ValueError, match=message):
        load_events(path, screen=(1920.0, 1080.0))
    if x == "1e39":
        with pytest.raises(ValueError, match="do not fit a float32"):
            load_events(path)


def test_unknown_enumerated_values_are_refused(tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("session,t,event,x,y,key\ns,0,key,1,2,q\ns,0.5,key,1,2,z\n")
    with pytest.raises(ValueError, match="row 3: unknown key 'z'"):
        load_events(path, enum_values={"key": ["q", "w"]})
    with pytest.raises(ValueError, match="missing enumerated column.s. button"):
        load_events(path, enum_values={"button": ["left"]})


# ---------------------------------------------------------------- windows
@st.composite
def sessions(draw):
    n = draw(st.integers(2, 40))
    gaps = draw(st.lists(st.floats(0.001, 3.0), min_size=n, max_size=n))
    events = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    return Session(
        "s", np.cumsum(gaps), np.array(events), np.zeros((n, 2), np.float32), np.zeros((n, 0), np.int64), np.arange(n)
    )


@settings(max_examples=60, deadline=None)
@given(session=sessions(), max_actions=st.integers(1, 6), max_history=st.integers(1, 10), pause=st.floats(0.05, 2.0))
def test_windows_cover_every_event_once_and_respect_the_limits(session, max_actions, max_history, pause):
    config = WindowConfig(max_actions=max_actions, max_history=max_history, pause=pause, history_seconds=4.0)
    a = make_windows(EventLog([session], ["a", "b", "c"]), config).arrays
    valid_y = a["y_valid"]
    assert (valid_y.sum(1) == a["length"]).all() and (a["length"] >= 1).all() and (a["length"] <= max_actions).all()
    assert (valid_y[:, :-1] | ~valid_y[:, 1:]).all()  # right-padded targets
    assert (a["h_valid"][:, 1:] | ~a["h_valid"][:, :-1]).all() and a["h_valid"][:, -1].all()  # left-padded, newest valid
    assert (a["h_time"][a["h_valid"]] <= 0).all() and (a["h_time"][a["h_valid"]] >= -4.0 - 1e-6).all()
    assert (a["h_time"][:, -1] == 0).all()  # the newest history event is now
    # every event after the first is predicted exactly once, in order (checked through the gaps below)
    assert valid_y.sum() == len(session) - 1
    inner = valid_y[:, 1:]
    np.testing.assert_array_less(a["y_gap"][:, 1:][inner], pause * (1 + 1e-6))  # a pause never falls inside a target
    np.testing.assert_allclose(a["y_gap"][valid_y], np.clip(np.diff(session.t), config.min_gap, config.max_gap), rtol=1e-5)


# ---------------------------------------------------------------- model parts
def test_timing_processor_stays_in_its_scales_and_learns_a_scale():
    torch.manual_seed(0)
    timing = MultiScaleTimingProcessor(8)
    out = timing(torch.randn(50, 8))
    assert out.timing.shape == (50,) and out.scale_weights.shape == (50, 3)
    torch.testing.assert_close(out.scale_weights.sum(-1), torch.ones(50))
    lows, highs = np.array([0.005, 0.1, 0.3]), np.array([0.1, 0.3, 10.0])
    assert ((out.mu.exp().detach().numpy() >= lows - 1e-6) & (out.mu.exp().detach().numpy() <= highs + 1e-6)).all()
    sample = timing.sample(out, torch.Generator().manual_seed(0))
    assert ((sample >= 0.005 - 1e-6) & (sample <= 10.0 + 1e-6)).all()
    x = torch.randn(64, 8)
    optimizer = torch.optim.Adam(timing.parameters(), lr=0.01)
    for _ in range(300):
        loss = timing.loss(timing(x), torch.full((64,), 0.06)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    out = timing(x)
    assert (out.scale_weights[:, 0] > 0.9).all() and torch.allclose(out.timing, torch.tensor(0.06), rtol=0.1)


def test_action_generator_heads_have_documented_shapes():
    generator = ContextAwareActionGenerator(16, {"button": 3, "key": 5}, ["click", "key"])
    out = generator(*(torch.randn(2, 4, 16) for _ in range(3)), torch.randn(2, 1, 16))
    assert out.event_logits.shape == (2, 4, 2) and out.xy.shape == (2, 4, 2) and out.timing.timing.shape == (2, 4)
    assert {k: v.shape for k, v in out.enum_logits.items()} == {"button": (2, 4, 3), "key": (2, 4, 5)}
    with pytest.raises(ValueError, match="event_types is empty"):
        ContextAwareActionGenerator(16, {}, [])


@pytest.mark.parametrize("cls", [AdvancedAttentionDecoder, GRUDecoder])
def test_decoders_are_causal_ignore_padding_and_work_for_one_window(cls, log):
    model = tiny(cls, log)
    batch = make_windows(log, WINDOW).batch(np.arange(6))
    out, length_logits = model(batch)
    assert out.event_logits.shape == (6, 5, 3) and length_logits.shape == (6, 5) and out.xy.shape == (6, 5, 2)
    # changing action 2 of the target changes nothing at positions 0..2 (they see actions < k only)
    changed = {**batch, "y_event": batch["y_event"].clone(), "y_xy": batch["y_xy"].clone()}
    changed["y_event"][:, 2] = (changed["y_event"][:, 2] + 1) % 3
    changed["y_xy"][:, 2] += 500.0
    after, _ = model(changed)
    torch.testing.assert_close(after.event_logits[:, :3], out.event_logits[:, :3])
    assert not torch.allclose(after.event_logits[:, 3:], out.event_logits[:, 3:])
    # whatever sits in the padding of the history is ignored
    padded = {k: v.clone() for k, v in batch.items()}
    pad = ~padded["h_valid"]
    assert pad.any()
    padded["h_xy"][pad], padded["h_gap"][pad], padded["h_event"][pad] = 777.0, 5.0, 2
    if cls is AdvancedAttentionDecoder:
        torch.testing.assert_close(model(padded)[0].event_logits, out.event_logits)
    # batch size 1 gives the same numbers as inside a batch
    one, _ = model({k: v[3:4] for k, v in batch.items()})
    torch.testing.assert_close(one.event_logits, out.event_logits[3:4], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cls", [AdvancedAttentionDecoder, GRUDecoder])
def test_greedy_generation_is_the_teacher_forced_prediction_of_its_own_actions(cls, log):
    model = tiny(cls, log)
    batch = make_windows(log, WINDOW).batch(np.arange(8))
    generated = model.generate(batch, greedy=True)
    assert generated["event"].shape[0] == 8 and (generated["valid"].sum(1) == generated["length"]).all()
    steps = generated["event"].shape[1]
    forced = {
        **batch,
        **{
            f"y_{k}": torch.nn.functional.pad(generated[k], (0, 0) * (generated[k].dim() - 2) + (0, 5 - steps))
            for k in ("event", "enums", "xy", "gap")
        },
    }
    predicted = model.predict(forced)
    valid = generated["valid"]
    assert torch.equal(predicted["event"][:, :steps][valid], generated["event"][valid])
    torch.testing.assert_close(predicted["gap"][:, :steps][valid], generated["gap"][valid])
    assert torch.equal(predicted["length"], generated["length"])
    sampled = model.generate(batch, generator=torch.Generator().manual_seed(0))
    again = model.generate(batch, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sampled["gap"], again["gap"]) and (sampled["xy"] >= 0).all()


def test_decoder_uses_the_core_attention_and_is_the_same_in_train_and_eval_mode(log):
    model = tiny(AdvancedAttentionDecoder, log)
    attention = [m for m in model.modules() if isinstance(m, MaskedMultiHeadAttention)]
    assert len(attention) == 2 + 2 * 2 + 2  # history blocks, self + cross in each decoder layer, pooling, pointer
    assert not any(isinstance(m, torch.nn.MultiheadAttention) for m in model.modules())
    assert all(m.p == 0 for m in model.modules() if isinstance(m, torch.nn.Dropout))
    batch = make_windows(log, WINDOW).batch(np.arange(4))
    eval_out = model.loss(batch)["total"]
    assert torch.equal(model.train().loss(batch)["total"], eval_out)


def test_decoder_rejects_bad_arguments(log):
    with pytest.raises(ValueError, match="n_heads=3 must be >= 1 and divide d_model=16|defines 8 heads but n_heads=3"):
        AdvancedAttentionDecoder(16, 4, {}, ["a"], n_heads=3)
    with pytest.raises(ValueError, match="max_actions=0"):
        AdvancedAttentionDecoder(16, 0, {}, ["a"])
    batch = make_windows(log, WINDOW).batch(np.arange(2))
    with pytest.raises(ValueError, match="2 enumerated fields, the model has 0"):
        AdvancedAttentionDecoder(16, 5, {}, log.event_types, n_heads=4, head_mask_strategy=[0.0] * 4, window=WINDOW.to_dict())(
            batch
        )


# ---------------------------------------------------------------- baselines and metrics
def test_repeat_last_copies_the_previous_action_and_the_last_run_length():
    batch = {
        "h_event": torch.tensor([[0, 1, 2, 2]]),
        "h_enums": torch.zeros(1, 4, 0, dtype=torch.long),
        "h_xy": torch.tensor([[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [4.0, 4.0]]]),
        "h_gap": torch.tensor([[0.5, 2.0, 0.2, 0.05]]),
        "h_valid": torch.tensor([[False, True, True, True]]),
        "y_event": torch.tensor([[1, 0, 0]]),
        "y_enums": torch.zeros(1, 3, 0, dtype=torch.long),
        "y_xy": torch.tensor([[[7.0, 7.0], [8.0, 8.0], [0.0, 0.0]]]),
        "y_gap": torch.tensor([[1.5, 0.3, 0.0]]),
    }
    predicted = repeat_last(batch, pause=1.0, max_actions=8)
    assert predicted["event"].tolist() == [[2, 1, 0]] and predicted["gap"][0].tolist() == pytest.approx([0.05, 1.5, 0.3])
    assert predicted["xy"][0, :, 0].tolist() == [4.0, 7.0, 8.0]
    assert predicted["length"].tolist() == [3]  # the last three history events are one run (gaps 0.2, 0.05)
    assert repeat_last(batch, pause=1.0, max_actions=2)["length"].tolist() == [2]


def test_metrics_of_known_predictions(log):
    batch = make_windows(log, WINDOW).batch()
    perfect = {"event": batch["y_event"], "gap": batch["y_gap"], "xy": batch["y_xy"], "length": batch["length"]}
    table = sequence_metrics(perfect, batch).set_index("scale")
    assert (table[["timing_mae_ms", "coord_mae_px"]].fillna(0) == 0).all().all()
    assert (table["event_accuracy"].dropna() == 1).all() and table.loc["all", "length_accuracy"] == 1
    off = {
        **perfect,
        "gap": batch["y_gap"] + 0.01,
        "xy": batch["y_xy"] + torch.tensor([3.0, 5.0]),
        "length": batch["length"] * 0,
    }
    table = sequence_metrics(off, batch).set_index("scale")
    assert table.loc["all", "timing_mae_ms"] == pytest.approx(10.0, rel=1e-4)
    assert table.loc["all", "coord_mae_px"] == pytest.approx(4.0) and table.loc["all", "length_accuracy"] == 0
    assert table.loc["all", "actions"] == int(batch["y_valid"].sum()) == table.loc[["fast", "medium", "slow"], "actions"].sum()


def test_session_bootstrap_of_known_differences(log):
    windows = make_windows(log, WINDOW)
    batch = windows.batch()
    perfect = {"event": batch["y_event"], "gap": batch["y_gap"], "xy": batch["y_xy"], "length": batch["length"]}
    worse = {**perfect, "gap": batch["y_gap"] + 0.02, "xy": batch["y_xy"] + 6.0, "event": batch["y_event"] * 0 + 99}
    table = session_bootstrap({"perfect": perfect, "worse": worse}, windows, "perfect", reps=200).set_index("metric")
    assert table.loc["timing_mae_ms", ["difference", "low", "high"]].tolist() == pytest.approx([-20.0] * 3, rel=1e-4)
    assert table.loc["coord_mae_px", "difference"] == pytest.approx(-6.0) and table.loc["event_accuracy", "difference"] == 1.0
    assert table.loc["length_accuracy", "difference"] == 0 and not table.loc["length_accuracy", "better"]
    assert table.loc[["timing_mae_ms", "coord_mae_px", "event_accuracy"], "better"].all()
    with pytest.raises(ValueError, match="reference='nope'"):
        session_bootstrap({"perfect": perfect}, windows, "nope")


# ---------------------------------------------------------------- training and commands
def test_training_resumes_to_the_same_weights_and_refuses_changed_settings(csv_files, tmp_path, monkeypatch):
    kwargs = {
        "epochs": 2,
        "batch_size": 32,
        "input_dim": 16,
        "n_heads": 4,
        "head_mask_strategy": [0.0, 0.0, 0.5, 0.75],
        "window": WINDOW,
        "progress": False,
    }
    straight = train_sequence_model(csv_files / "train.csv", tmp_path / "straight", **kwargs)
    losses = np.loadtxt(tmp_path / "straight" / "training.csv", delimiter=",", skiprows=1, usecols=1)
    assert len(losses) == 2 and losses[1] < losses[0]
    from sb3_masked_attention.sequence import train as seq_train

    real = seq_train.validation_losses
    monkeypatch.setattr(
        seq_train,
        "validation_losses",
        lambda model, windows: (
            (_ for _ in ()).throw(KeyboardInterrupt)
            if len(list((tmp_path / "resumed").glob("checkpoint.pt")))
            else real(model, windows)
        ),
    )
    with pytest.raises(KeyboardInterrupt):  # killed at the end of epoch 2, after epoch 1's checkpoint
        train_sequence_model(csv_files / "train.csv", tmp_path / "resumed", **kwargs)
    monkeypatch.setattr(seq_train, "validation_losses", real)
    resumed = train_sequence_model(csv_files / "train.csv", tmp_path / "resumed", **kwargs)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="batch_size=32, not 16"):
        train_sequence_model(csv_files / "train.csv", tmp_path / "resumed", **{**kwargs, "batch_size": 16})
    loaded, arch = load_sequence_model(tmp_path / "resumed")
    assert arch == "attention" and loaded.enum_values == load_events(csv_files / "train.csv").enum_values


def test_events_commands_end_to_end(csv_files, tmp_path, capsys):
    data = tmp_path / "data.csv"
    assert main(["events", "synth", "--sessions", "3", "--duration", "10", "--out", str(data)]) == 0
    assert load_events(data).n_events > 20
    common = [
        "--events",
        str(csv_files / "train.csv"),
        "--epochs",
        "1",
        "--width",
        "16",
        "--max-actions",
        "4",
        "--no-progress",
    ]
    assert (
        main(["events", "train", "--out", str(tmp_path / "att"), "--n-heads", "4", "--strategy", "0,0,0.5,0.75", *common]) == 0
    )
    assert main(["events", "train", "--out", str(tmp_path / "gru"), "--arch", "gru", *common]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "events",
                "eval",
                "--model",
                str(tmp_path / "att"),
                "--compare",
                str(tmp_path / "gru"),
                "--events",
                str(csv_files / "test.csv"),
                "--out",
                str(tmp_path / "eval"),
            ]
        )
        == 0
    )
    table = capsys.readouterr().out
    assert "| repeat_last | all |" in table and "| attention | slow |" in table and "| gru | fast |" in table
    assert (tmp_path / "eval" / "timing_distribution.png").stat().st_size > 10_000
    assert set(np.loadtxt(tmp_path / "eval" / "differences.csv", delimiter=",", skiprows=1, usecols=1, dtype=str)) == {
        "repeat_last",
        "gru",
    }
    assert (
        main(
            [
                "events",
                "generate",
                "--model",
                str(tmp_path / "att"),
                "--history",
                str(data),
                "--out",
                str(tmp_path / "gen.csv"),
            ]
        )
        == 0
    )
    generated = load_events(tmp_path / "gen.csv", min_events=1)
    assert {s.name for s in generated.sessions} == {s.name for s in load_events(data).sessions}
    last = {s.name: s.t[-1] for s in load_events(data).sessions}
    assert all(s.t[0] > last[s.name] and len(s) <= 4 for s in generated.sessions)
    model, _ = load_sequence_model(tmp_path / "att")
    assert generate_after(model, data, greedy=True).equals(generate_after(model, data, greedy=True))


def test_events_commands_report_user_errors(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("session,t,event,x\n")
    assert main(["events", "train", "--events", str(bad), "--out", str(tmp_path / "run")]) == 2
    assert main(["events", "eval", "--model", str(tmp_path / "none"), "--events", str(bad)]) == 2
    assert main(["events", "synth", "--sessions", "0", "--out", str(bad)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and "missing column(s) y" in lines[0] and "does not exist" in lines[1] and "--sessions" in lines[2]
