"""rliable's bootstrap, made reproducible: every confidence interval of the evaluation package comes from here."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import numpy as np


@contextlib.contextmanager
def seeded_global_rng(seed: int) -> Iterator[None]:
    """Seed NumPy's global RNG for the block, then restore it: rliable's StratifiedIndependentBootstrap
    draws its indices from ``np.random`` whatever ``random_state`` says (rliable 1.2)."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # arch's notice about RandomState, not ours to act on
            yield
    finally:
        np.random.set_state(state)


def interval_estimates(data: dict, func, reps: int, seed: int):
    """``rliable.library.get_interval_estimates``, reproducible under ``seed``."""
    with seeded_global_rng(seed):
        from rliable import library as rly

        return rly.get_interval_estimates(data, func, reps=reps, random_state=np.random.RandomState(seed))
