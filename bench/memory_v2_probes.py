"""Issue 35's supervised probes: can a memory model learn a POPGym task's lookup apart from RL, and how much gradient
reaches the cue through sb3-contrib's LSTM. Run from ``bench/memory_v2.py`` (its ``count-probe``, ``previous-probe``
and ``lstm-gradients`` parts), which names the output file.

- count probe: CountRecall's stream (how many cards of the queried colour so far) as supervised learning;
- previous probe: RepeatPreviousEasy's (name the suit dealt 4 steps before) as supervised learning, at checkpoints;
- LSTM gradients: the norm of the gradient from a step's output back to the first step's input, at initialisation,
  by forget-gate bias and lag.

Each writes one CSV atomically; the probes skip the models and seeds a CSV already holds (resumable).
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

#: CountRecall as supervised learning: the models of the count probe.
COUNT_MODELS = ("transformer", "transformer_sink", "lstm64", "lstm256_bias2")


def count_batch(rng: np.random.Generator, batch: int, length: int = 51) -> tuple[np.ndarray, np.ndarray]:
    """POPGym CountRecall's stream without the RL: at each step a card of one of two colours is dealt (a shuffled deck
    of 26 of each) and a colour is queried (an independently shuffled deck); the answer is how many cards of the
    queried colour have been dealt so far, this one included (0-26). Tokens: one-hot dealt colour, one-hot queried
    colour, and a first-step flag (TransformerPPO's first token has no previous action: the same mark)."""
    dealt = np.stack([rng.permutation(np.repeat([0, 1], 26))[:length] for _ in range(batch)])
    query = np.stack([rng.permutation(np.repeat([0, 1], 26))[:length] for _ in range(batch)])
    counts = np.stack([np.cumsum(dealt == 0, axis=1), np.cumsum(dealt == 1, axis=1)], axis=-1)
    answer = np.take_along_axis(counts, query[..., None], axis=-1)[..., 0]
    first = np.zeros((batch, length, 1))
    first[:, 0] = 1.0
    tokens = np.concatenate([np.eye(2)[dealt], np.eye(2)[query], first], axis=-1).astype(np.float32)
    return tokens, answer


def probe_model(kind: str, n_in: int = 5, n_out: int = 27):
    """A sequence model from ``n_in`` token features to ``n_out`` logits per step. ``transformer*``: TransformerPPO's
    memory as a causal pass over the episode (its tests show the memory equals one when it holds the whole episode),
    64 wide, 8 heads, 2 blocks; ``_sink``: a learned token every step can read; ``_rotary100``: rotary base 100, not
    10,000; ``_window16``: each step reads only the last 16 (a memory of 15 slots and itself); ``_ortho``: initialised as
    SB3's ActorCriticPolicy initialises a features extractor (orthogonal, gain sqrt 2). ``lstm64``, ``lstm256_bias2``:
    an LSTM (width, forget-gate bias 2)."""
    import torch
    from stable_baselines3.common.policies import ActorCriticPolicy
    from torch import nn

    from sb3_masked_attention.attention import TransformerBlock
    from sb3_masked_attention.masks import causal_mask
    from sb3_masked_attention.policies import set_lstm_forget_bias

    class Transformer(nn.Module):
        def __init__(self, sink: bool = False, rotary_base: float = 10_000.0, window: int | None = None) -> None:
            super().__init__()
            self.embed = nn.Linear(n_in, 64)
            self.blocks = nn.ModuleList(TransformerBlock(64, 8, 256, rotary=True, rotary_base=rotary_base) for _ in range(2))
            self.sink = nn.Parameter(torch.zeros(1, 1, 64)) if sink else None
            self.window = window
            self.head = nn.Sequential(nn.LayerNorm(64), nn.Linear(64, n_out))

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            x = self.embed(tokens)
            if self.sink is not None:
                x = torch.cat([self.sink.expand(len(x), 1, 64), x], dim=1)
            mask = causal_mask(x.shape[1])
            if self.window is not None:
                mask = mask & ~causal_mask(x.shape[1]).tril(-self.window)  # keys older than window - 1 steps: hidden
            for block in self.blocks:
                x, _ = block(x, mask=mask)
            return self.head(x[:, 1:] if self.sink is not None else x)

    class Recurrent(nn.Module):
        def __init__(self, hidden: int, forget_bias: float | None) -> None:
            super().__init__()
            self.lstm = nn.LSTM(n_in, hidden, batch_first=True)
            if forget_bias is not None:
                set_lstm_forget_bias(self.lstm, forget_bias)
            self.head = nn.Linear(hidden, n_out)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.head(self.lstm(tokens)[0])

    def sb3_orthogonal(model: Transformer) -> Transformer:
        # what SB3's ActorCriticPolicy (ortho_init=True) does to a features extractor: every linear layer orthogonal
        # with gain sqrt(2), biases 0; the head keeps PyTorch's initialisation here (SB3 gives its own gains to heads)
        for module in (model.embed, model.blocks):
            module.apply(partial(ActorCriticPolicy.init_weights, gain=np.sqrt(2)))
        return model

    return {
        "transformer": lambda: Transformer(),
        "transformer_sink": lambda: Transformer(sink=True),
        "transformer_rotary100": lambda: Transformer(rotary_base=100.0),
        "transformer_window16": lambda: Transformer(window=16),
        "transformer_ortho": lambda: sb3_orthogonal(Transformer()),
        "lstm64": lambda: Recurrent(64, None),
        "lstm256_bias2": lambda: Recurrent(256, 2.0),
    }[kind]()


def supervised_step(model, optimizer, tokens: np.ndarray, answer: np.ndarray):
    """One Adam step of cross-entropy between ``model(tokens)`` and the class ``answer`` of every step (-1: unscored);
    returns the loss."""
    import torch

    logits = model(torch.as_tensor(tokens))
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), torch.as_tensor(answer).reshape(-1), ignore_index=-1
    )
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


def probes_to_run(out: Path, models: tuple[str, ...], seeds: tuple[int, ...]):
    """The (model, seed) pairs of a probe that have no row in ``out`` yet (saying which are skipped), each with torch
    seeded and on one thread."""
    import torch

    from sb3_masked_attention.io import read_rows

    torch.set_num_threads(1)
    for kind in models:
        for seed in seeds:
            done = read_rows(out)
            if len(done) and ((done["model"] == kind) & (done["seed"] == seed)).any():
                print(f"{kind}, seed {seed}: already in {out}, skipped", flush=True)
                continue
            torch.manual_seed(seed)
            yield kind, seed


def count_probe(out: Path, seeds: tuple[int, ...] = (0,), steps: int = 1500) -> None:
    """Train each model to answer CountRecall supervised (Adam 1e-3, batches of 64 episodes, ``steps`` updates), then
    score exact answers on 1000 fresh episodes: can the architecture learn to count at all, apart from RL? One row per
    model and seed, appended as each finishes (a rerun skips the rows already in ``out``)."""
    import torch

    from sb3_masked_attention.io import append_row

    for kind, seed in probes_to_run(out, COUNT_MODELS, seeds):
        rng = np.random.default_rng(seed)
        model = probe_model(kind)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        start = time.perf_counter()
        for _ in range(steps):
            tokens, answer = count_batch(rng, 64)
            loss = supervised_step(model, optimizer, tokens, answer)
        tokens, answer = count_batch(np.random.default_rng(10_000 + seed), 1000)
        with torch.no_grad():
            guess = model(torch.as_tensor(tokens)).argmax(-1).numpy()
        row = {"model": kind, "seed": seed, "updates": steps, "train_loss": round(float(loss.detach()), 4),
               "exact": round(float((guess == answer).mean()), 4),
               "exact_last_10_steps": round(float((guess[:, -10:] == answer[:, -10:]).mean()), 4),
               "mean_abs_error": round(float(np.abs(guess - answer).mean()), 3),
               "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
        append_row(out, row)
        print(row, flush=True)


#: RepeatPrevious as supervised learning: the models of the lag probe, and when their accuracy is measured.
PREVIOUS_MODELS = ("transformer", "transformer_rotary100", "transformer_window16", "lstm64", "transformer_ortho")
PREVIOUS_CHECKPOINTS = (25, 50, 100, 200, 400, 800)
PREVIOUS_LAG = 4


def previous_batch(rng: np.random.Generator, batch: int, length: int = 51) -> tuple[np.ndarray, np.ndarray]:
    """POPGym RepeatPreviousEasy's stream without the RL: the suits of a shuffled 52-card deck, one a step; the answer
    at step ``t >= 4`` is the suit dealt at ``t - 4`` (-1 before: not scored). Tokens: one-hot suit and a first-step
    flag."""
    suits = np.stack([rng.permutation(np.repeat(np.arange(4), 13))[:length] for _ in range(batch)])
    answer = np.full_like(suits, -1)
    answer[:, PREVIOUS_LAG:] = suits[:, :-PREVIOUS_LAG]
    first = np.zeros((batch, length, 1))
    first[:, 0] = 1.0
    return np.concatenate([np.eye(4)[suits], first], axis=-1).astype(np.float32), answer


def previous_probe(out: Path, seeds: tuple[int, ...] = (0, 1), lr: float = 3e-4) -> None:
    """Train each model to name the suit dealt 4 steps before (Adam at TransformerPPO's default learning rate, batches
    of 64 episodes) and score it on 1,000 fresh episodes after each of :data:`PREVIOUS_CHECKPOINTS` updates: how fast
    does each architecture learn a fixed-lag lookup, apart from RL? One row per model, seed and checkpoint, appended
    as each model finishes (a rerun skips the models and seeds already in ``out``)."""
    import torch

    from sb3_masked_attention.io import append_row

    for kind, seed in probes_to_run(out, PREVIOUS_MODELS, seeds):
        rng = np.random.default_rng(seed)
        model = probe_model(kind, n_in=5, n_out=4)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        test_tokens, test_answer = previous_batch(np.random.default_rng(10_000 + seed), 1000)
        scored = test_answer >= 0
        rows, start = [], time.perf_counter()
        for update in range(1, PREVIOUS_CHECKPOINTS[-1] + 1):
            tokens, answer = previous_batch(rng, 64)
            loss = supervised_step(model, optimizer, tokens, answer)
            if update in PREVIOUS_CHECKPOINTS:
                with torch.no_grad():
                    guess = model(torch.as_tensor(test_tokens)).argmax(-1).numpy()
                rows.append({"model": kind, "seed": seed, "lr": lr, "updates": update,
                             "train_loss": round(float(loss.detach()), 4),
                             "accuracy": round(float((guess == test_answer)[scored].mean()), 4),
                             "seconds": round(time.perf_counter() - start, 1)})  # fmt: skip
        for row in rows:  # appended once the model has finished: a run killed while training leaves no row
            append_row(out, row)
        print(rows[-1], flush=True)


#: sb3-contrib's LSTM (RecurrentPPO's default width) at the forget-gate biases compared, over T-Maze-like inputs.
FORGET_BIASES = (None, 1.0, 2.0)  # None: PyTorch's initialisation (uniform in +-1/sqrt(hidden), ~0 on average)
LAGS = (5, 20, 50, 200)


def lstm_gradients(out: Path, inits: int = 20, hidden: int = 256) -> None:
    """How much of the first input's gradient reaches the LSTM's state ``lag`` steps later, at initialisation: the
    norm of d(sum h_T)/d x_0 over T-Maze observations (cue at step 0, then corridor steps), mean over ``inits`` random
    LSTMs, for each forget-gate bias. An LSTM whose gates keep a fraction f of its cell per step passes ~f^lag back."""
    import torch

    from sb3_masked_attention.io import write_text_atomic
    from sb3_masked_attention.policies import set_lstm_forget_bias

    torch.set_num_threads(1)
    rows = []
    for bias in FORGET_BIASES:
        for lag in LAGS:
            norms = []
            for init in range(inits):
                torch.manual_seed(init)
                lstm = torch.nn.LSTM(3, hidden)
                if bias is not None:
                    set_lstm_forget_bias(lstm, bias)
                position = torch.arange(lag + 1, dtype=torch.float32) / lag
                inputs = torch.stack([torch.zeros(lag + 1), torch.zeros(lag + 1), position], dim=-1)
                inputs[0, 0] = 1.0  # the cue
                inputs[lag, 1] = 1.0  # the junction
                inputs = inputs[:, None].requires_grad_(True)
                output, _ = lstm(inputs)
                (grad,) = torch.autograd.grad(output[-1].sum(), inputs)
                norms.append(float(grad[0].norm()))
            rows.append({"forget_bias": "pytorch" if bias is None else bias, "lag": lag, "inits": inits,
                         "grad_norm_mean": float(np.mean(norms)), "grad_norm_max": float(np.max(norms))})  # fmt: skip
            print(rows[-1], flush=True)
    write_text_atomic(out, pd.DataFrame(rows).to_csv(index=False))
    print(f"wrote {out}")
