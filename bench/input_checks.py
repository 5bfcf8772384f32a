"""What the extractor's input checks cost: a forward pass with :meth:`HeadMaskedTransformerExtractor.tokens` (padding
zeroed, one finiteness check per batch) against the same forward with tokens concatenated unchecked.

    python bench/input_checks.py

One torch thread, the default extractor (d_model 64, 8 heads, 2 layers) on CartPole windows of 16 steps, batch 1
(a rollout step) and 64 (a PPO minibatch); the best of 3 timings of each. Prints the ratio; noisy on a busy machine.
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import torch

from sb3_masked_attention import HeadMaskedTransformerExtractor, HistoryWrapper
from sb3_masked_attention.wrappers import VALID_KEY


def unchecked_tokens(self: HeadMaskedTransformerExtractor, observations: dict[str, torch.Tensor]) -> torch.Tensor:
    batch = observations[VALID_KEY].shape[0]
    return torch.cat([observations[key].reshape(batch, self.history_len, -1).float() for key in self.token_keys], dim=-1)


def milliseconds(extractor: HeadMaskedTransformerExtractor, observations: dict[str, torch.Tensor], reps: int) -> float:
    with torch.no_grad():
        for _ in range(20):
            extractor(observations)
        start = time.perf_counter()
        for _ in range(reps):
            extractor(observations)
    return (time.perf_counter() - start) / reps * 1e3


def main() -> None:
    torch.set_num_threads(1)
    space = HistoryWrapper(gym.make("CartPole-v1"), 16).observation_space
    assert isinstance(space, gym.spaces.Dict)
    extractor = HeadMaskedTransformerExtractor(space).eval()
    checked = HeadMaskedTransformerExtractor.tokens
    for batch, reps in ((1, 2000), (64, 300)):
        observations = {key: torch.as_tensor(np.stack([s.sample() for _ in range(batch)])).float() for key, s in space.items()}
        observations[VALID_KEY] = torch.ones(batch, 16)
        times = {}
        for name, tokens in (("checked", checked), ("unchecked", unchecked_tokens)):
            HeadMaskedTransformerExtractor.tokens = tokens  # type: ignore[method-assign]
            times[name] = min(milliseconds(extractor, observations, reps) for _ in range(3))
        HeadMaskedTransformerExtractor.tokens = checked  # type: ignore[method-assign]
        ratio = times["checked"] / times["unchecked"]
        print(f"batch {batch:3d}: {times['checked']:.3f} ms checked, {times['unchecked']:.3f} ms unchecked: {ratio:.3f}x")


if __name__ == "__main__":
    main()
