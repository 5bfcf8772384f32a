"""The two baselines the attention decoder is measured against.

* :class:`GRUDecoder`: the same token encoding, output heads, length predictor and loss as
  :class:`~sb3_masked_attention.sequence.model.AdvancedAttentionDecoder`, but a GRU reads the history and
  a second GRU the actions so far; no attention anywhere. The comparison isolates attention.
* :func:`repeat_last`: every action repeats the one before it (the first repeats the newest history
  event); the length is that of the last sequence in the history.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sb3_masked_attention.sequence.config import SequenceTrainConfig
from sb3_masked_attention.sequence.model import Batch, SequenceModel
from sb3_masked_attention.validation import check_int


class GRUDecoder(SequenceModel):
    """GRU encoder-decoder with the shared heads (no attention).

    The encoder's last output is the game-state context at every step and initialises (every layer of)
    the decoder GRU,
    whose outputs are the action-history context. Parameters as
    :class:`~sb3_masked_attention.sequence.model.SequenceModel`, plus ``n_layers`` GRU layers.
    """

    def __init__(
        self,
        input_dim: int,
        max_actions: int,
        enum_sizes: dict[str, int],
        event_types: Sequence[str],
        n_layers: int = SequenceTrainConfig.n_layers,
        window: dict | None = None,
    ) -> None:
        super().__init__(input_dim, max_actions, enum_sizes, event_types, window)
        check_int("n_layers", n_layers)
        self.config.update(n_layers=n_layers)
        self.encoder = nn.GRU(input_dim, input_dim, num_layers=n_layers, batch_first=True)
        self.decoder = nn.GRU(input_dim, input_dim, num_layers=n_layers, batch_first=True)

    def encode_history(self, tokens: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        memory, _ = self.encoder(tokens * valid[..., None].float())  # left padding: zeros before the events
        return memory, memory[:, -1]

    def decode(
        self, actions: torch.Tensor, memory: torch.Tensor, valid: torch.Tensor, summary: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        initial = summary[None].repeat(self.decoder.num_layers, 1, 1).contiguous()
        outputs, _ = self.decoder(actions, initial)
        return outputs, summary[:, None, :].expand_as(outputs)


def repeat_last(batch: Batch, pause: float, max_actions: int) -> dict[str, torch.Tensor]:
    """Repeat-the-last-action predictions in the format of
    :meth:`~sb3_masked_attention.sequence.model.SequenceModel.predict` (teacher-forced: action ``k``
    copies the real action ``k - 1``; action 0 copies the newest history event).

    :param batch: a window batch (history and target fields).
    :param pause: the window configuration's pause (seconds), which ends a sequence.
    :param max_actions: the longest sequence.
    """
    previous = {
        k: torch.cat([batch[f"h_{k}"][:, -1:], batch[f"y_{k}"][:, :-1]], dim=1) for k in ("event", "enums", "xy", "gap")
    }
    # Length of the history's last sequence: the newest run of events whose gaps are <= pause.
    joined = (batch["h_gap"][:, 1:] <= pause) & batch["h_valid"][:, :-1].bool()  # event k-1 and k in one run
    run = torch.cumprod(joined.flip(1).long(), dim=1).sum(dim=1) + 1
    return {**previous, "length": run.clamp(max=max_actions)}
