"""Multi-scale CNN extractors for map observations at several scales (global, local, tactical).

Every 3-D Box of the ``spaces.Dict`` observation (SB3 image convention, channel-first) gets a
:class:`AttentionCNNBranch`; every 1-D Box goes, concatenated, through a small MLP.

* :class:`MultiScaleExtractor`: the branches without attention, features concatenated, one layer.
* :class:`MultiScaleExtractorWithAttention`: branches with channel and spatial attention, then the
  global features query the scale features by cross-attention (the core
  :class:`~sb3_masked_attention.attention.MaskedMultiHeadAttention`), learnable scale weights, a
  fusion MLP.

Made safe for PPO (rollouts in eval mode, updates in train mode): no BatchNorm or Dropout, so both
modes compute the same function; attention gates are ``2 * sigmoid(.)`` started at exactly 1 (the
branch starts as a plain CNN) and bounded in (0, 2) whatever the map size, unlike a softmax over
all cells multiplied into the features, which shrinks them by the number of cells.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_masked_attention.attention import MaskedMultiHeadAttention

AttentionMaps = dict[str, torch.Tensor]
MIN_MAP_SIZE = 8


class ChannelAttention(nn.Module):
    """Channel gates from average- and max-pooled features (CBAM's channel attention).

    :param channels: feature channels ``C``.
    :param reduction: hidden width is ``max(C // reduction, 4)``.
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        hidden = max(channels // reduction, 4)
        last = nn.Linear(hidden, channels)
        nn.init.zeros_(last.weight)  # gates start at exactly 1
        nn.init.zeros_(last.bias)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), last)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:param x: ``(B, C, H, W)``. :return: gated ``x`` and the gates ``(B, C)`` in (0, 2)."""
        # The max statistic is detached: its backward (ties, scatter) cost as much as the convs, and
        # the gates still learn through it; features still get gradients through the mean.
        logits = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.detach().amax(dim=(2, 3)))
        gates = 2.0 * torch.sigmoid(logits)
        return x * gates[:, :, None, None], gates


class SpatialAttention(nn.Module):
    """Per-cell gates from a convolution over the channel mean and max (CBAM's spatial attention).

    A sigmoid gate per cell, not a softmax over cells: its scale does not depend on the map size.

    :param kernel_size: odd convolution size.
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={kernel_size} is invalid: expected an odd integer >= 1")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)
        nn.init.zeros_(self.conv.weight)  # gates start at exactly 1
        nn.init.zeros_(self.conv.bias)  # type: ignore[arg-type]  # Conv2d has a bias by default

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:param x: ``(B, C, H, W)``. :return: gated ``x`` and the attention map ``(B, H, W)`` in (0, 1)."""
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.detach().amax(dim=1, keepdim=True)], dim=1)  # see ChannelAttention
        attention = torch.sigmoid(self.conv(pooled))
        return x * (2.0 * attention), attention[:, 0]


class AttentionCNNBranch(nn.Module):
    """Conv stages (each: conv, ReLU, then channel and spatial attention), pooling, a projection.

    :param in_channels: input channels.
    :param out_dim: output features.
    :param channels: output channels of the three conv stages (kernels 8/4/3, strides 4/2/1, padded,
        so any map of at least 8x8 works).
    :param pool_size: adaptive average pooling to ``pool_size x pool_size`` before the projection.
    :param use_attention: False gives the same CNN without attention.
    :param attention_stages: the stages (0, 1, 2) followed by channel and spatial attention. The
        default, the last stage only, costs about a tenth more than no attention on CPU; every stage
        attends at about twice the cost (``bench/multiscale.py``).
    """

    KERNELS, STRIDES, PADDINGS = (8, 4, 3), (4, 2, 1), (2, 1, 1)

    def __init__(
        self,
        in_channels: int,
        out_dim: int = 256,
        channels: tuple[int, int, int] = (32, 64, 64),
        pool_size: int = 4,
        use_attention: bool = True,
        attention_stages: tuple[int, ...] = (2,),
    ) -> None:
        super().__init__()
        if not set(attention_stages) <= {0, 1, 2}:
            raise ValueError(f"attention_stages={attention_stages!r} is invalid: expected stages among 0, 1, 2")
        if in_channels < 1 or out_dim < 1 or pool_size < 1 or len(channels) != 3 or min(channels) < 1:
            raise ValueError(
                f"invalid branch: in_channels={in_channels}, out_dim={out_dim}, channels={channels}, "
                f"pool_size={pool_size} (expected positive sizes and three stage widths)"
            )
        self.attention_stages = tuple(sorted(set(attention_stages))) if use_attention else ()
        widths = (in_channels, *channels)
        self.convs = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], k, stride=s, padding=p)
            for i, (k, s, p) in enumerate(zip(self.KERNELS, self.STRIDES, self.PADDINGS))
        )
        self.channel_attention = nn.ModuleDict({str(i): ChannelAttention(channels[i]) for i in self.attention_stages})
        self.spatial_attention = nn.ModuleDict({str(i): SpatialAttention() for i in self.attention_stages})
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.project = nn.Sequential(nn.Flatten(), nn.Linear(channels[-1] * pool_size**2, out_dim), nn.ReLU())

    def forward(self, x: torch.Tensor, maps: AttentionMaps | None = None, prefix: str = "") -> torch.Tensor:
        """Features of one image.

        :param x: ``(B, C, H, W)``.
        :param maps: if given, receives ``{prefix}spatial_stage{i}`` ``(B, H_i, W_i)`` and
            ``{prefix}channel_stage{i}`` ``(B, C_i)``.
        :param prefix: the maps' key prefix.
        :return: ``(B, out_dim)``.
        """
        for i, conv in enumerate(self.convs):
            x = torch.relu(conv(x))
            if i in self.attention_stages:
                x, channel = self.channel_attention[str(i)](x)
                x, spatial = self.spatial_attention[str(i)](x)
                if maps is not None:
                    maps[f"{prefix}channel_stage{i}"] = channel
                    maps[f"{prefix}spatial_stage{i}"] = spatial
        return self.project(self.pool(x))


def _split_space(observation_space: gym.Space) -> tuple[dict[str, spaces.Box], dict[str, spaces.Box]]:
    """Image keys (3-D Boxes) and vector keys (1-D Boxes) of a Dict space, in key order."""
    if not isinstance(observation_space, spaces.Dict):
        raise ValueError(f"observation space {observation_space} is not supported: expected a spaces.Dict of Boxes")
    images, vectors = {}, {}
    for key, space in observation_space.spaces.items():
        if isinstance(space, spaces.Box) and len(space.shape) == 3:
            if min(space.shape[1:]) < MIN_MAP_SIZE:
                raise ValueError(
                    f"map {key!r} of shape {space.shape} is too small: expected at least {MIN_MAP_SIZE}x{MIN_MAP_SIZE}"
                )
            images[key] = space
        elif isinstance(space, spaces.Box) and len(space.shape) == 1:
            vectors[key] = space
        else:
            raise ValueError(f"observation key {key!r} ({space}) is not supported: expected 3-D (C, H, W) or 1-D Boxes")
    if not images:
        raise ValueError(f"observation space has no map: expected at least one 3-D Box among {list(observation_space.spaces)}")
    return images, vectors


class MultiScaleExtractor(BaseFeaturesExtractor):
    """One CNN branch per map (no attention) and an MLP for the vectors, concatenated, then one layer.

    :param observation_space: a ``spaces.Dict`` of channel-first maps and 1-D vectors.
    :param features_dim: output features.
    :param branch_dim: features per map branch.
    :param global_dim: features of the vector MLP.
    :param cnn_channels: widths of the three conv stages of every branch.
    :param attention_stages: ignored here (no attention); accepted so both extractors take the same kwargs.
    """

    use_attention = False

    def __init__(
        self,
        observation_space: gym.Space,
        features_dim: int = 512,
        branch_dim: int = 256,
        global_dim: int = 64,
        cnn_channels: tuple[int, int, int] = (32, 64, 64),
        attention_stages: tuple[int, ...] = (2,),
    ) -> None:
        images, vectors = _split_space(observation_space)
        for name, value in (("features_dim", features_dim), ("branch_dim", branch_dim), ("global_dim", global_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} is invalid: expected a positive integer")
        super().__init__(observation_space, features_dim)
        self.image_keys, self.vector_keys = list(images), list(vectors)
        self.branches = nn.ModuleDict(
            {
                key: AttentionCNNBranch(
                    space.shape[0],
                    branch_dim,
                    (cnn_channels[0], cnn_channels[1], cnn_channels[2]),
                    use_attention=self.use_attention,
                    attention_stages=tuple(attention_stages),
                )
                for key, space in images.items()
            }
        )
        vector_dim = sum(space.shape[0] for space in vectors.values())
        self.global_mlp = (
            nn.Sequential(nn.Linear(vector_dim, global_dim), nn.ReLU(), nn.Linear(global_dim, global_dim), nn.ReLU())
            if vectors
            else None
        )
        self._build_head(len(images), branch_dim, global_dim if vectors else 0, features_dim)

    def _build_head(self, n_scales: int, branch_dim: int, global_dim: int, features_dim: int) -> None:
        self.head = nn.Sequential(nn.Linear(n_scales * branch_dim + global_dim, features_dim), nn.ReLU())

    def _global(self, observations: dict[str, torch.Tensor]) -> torch.Tensor | None:
        if self.global_mlp is None:
            return None
        vectors = torch.cat([observations[key].flatten(1).float() for key in self.vector_keys], dim=1)
        return self.global_mlp(vectors)

    def forward_with_attention(self, observations: dict[str, torch.Tensor]) -> tuple[torch.Tensor, AttentionMaps]:
        """Features ``(B, features_dim)`` and the attention maps (none for this extractor)."""
        scales = [self.branches[key](observations[key].float()) for key in self.image_keys]
        global_features = self._global(observations)
        parts = scales if global_features is None else [*scales, global_features]
        return self.head(torch.cat(parts, dim=1)), {}

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.forward_with_attention(observations)[0]


class MultiScaleExtractorWithAttention(MultiScaleExtractor):
    """Branches with channel and spatial attention; the global features query the scale features.

    The scale features, each scaled by a learnable softmax weight and tagged with a learnable scale
    embedding, are the keys/values of a cross-attention whose one query comes from the vector MLP
    (a learned query if the space has no vector). The fusion MLP reads the attended features, the
    weighted scale features and the global features.

    :param n_heads: heads of the cross-attention (must divide ``branch_dim``).

    Other parameters as :class:`MultiScaleExtractor`.
    """

    use_attention = True

    def __init__(
        self,
        observation_space: gym.Space,
        features_dim: int = 512,
        branch_dim: int = 256,
        global_dim: int = 64,
        cnn_channels: tuple[int, int, int] = (32, 64, 64),
        attention_stages: tuple[int, ...] = (2,),
        n_heads: int = 4,
    ) -> None:
        self._n_heads = n_heads
        super().__init__(observation_space, features_dim, branch_dim, global_dim, cnn_channels, attention_stages)

    def _build_head(self, n_scales: int, branch_dim: int, global_dim: int, features_dim: int) -> None:
        self.scale_logits = nn.Parameter(torch.zeros(n_scales))  # softmax: equal weights at init
        self.scale_embedding = nn.Parameter(torch.zeros(n_scales, branch_dim))
        nn.init.normal_(self.scale_embedding, std=0.02)
        self.query = nn.Linear(global_dim, branch_dim) if global_dim else None
        self.learned_query = None if global_dim else nn.Parameter(torch.zeros(1, 1, branch_dim))
        self.norm = nn.LayerNorm(branch_dim)
        self.cross_attention = MaskedMultiHeadAttention(branch_dim, self._n_heads)
        fused = branch_dim + n_scales * branch_dim + global_dim
        self.head = nn.Sequential(nn.Linear(fused, features_dim), nn.ReLU(), nn.Linear(features_dim, features_dim), nn.ReLU())

    def scale_weights(self) -> torch.Tensor:
        """Softmax weights of the scales, ``(n_scales,)``, in ``image_keys`` order."""
        return self.scale_logits.softmax(dim=0)

    def forward_with_attention(self, observations: dict[str, torch.Tensor]) -> tuple[torch.Tensor, AttentionMaps]:
        """Features ``(B, features_dim)`` and the attention maps: ``{key}/spatial_stage{i}`` ``(B, H_i, W_i)``,
        ``{key}/channel_stage{i}`` ``(B, C_i)``, ``scale_weights`` ``(n_scales,)`` and
        ``cross_attention`` ``(B, n_heads, n_scales)`` (the query's weights over the scales)."""
        maps: AttentionMaps = {}
        scales = torch.stack(
            [self.branches[key](observations[key].float(), maps, prefix=f"{key}/") for key in self.image_keys], dim=1
        )  # (B, S, D)
        weights = self.scale_weights()
        weighted = scales * weights[None, :, None]
        global_features = self._global(observations)
        if global_features is None:
            assert self.learned_query is not None  # built when there are no vector inputs
            query = self.learned_query.expand(scales.shape[0], -1, -1)
        else:
            assert self.query is not None
            query = self.query(global_features)[:, None, :]
        attended, cross = self.cross_attention(
            self.norm(query), context=self.norm(weighted + self.scale_embedding), need_weights=True
        )
        parts = [attended[:, 0], weighted.flatten(1)]
        if global_features is not None:
            parts.append(global_features)
        maps["scale_weights"] = weights
        maps["cross_attention"] = cross[:, :, 0]
        return self.head(torch.cat(parts, dim=1)), maps


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


EXTRACTORS: dict[str, type[MultiScaleExtractor]] = {
    "attention": MultiScaleExtractorWithAttention,
    "plain": MultiScaleExtractor,
}


def multiscale_extractor_class(name: Any) -> type[MultiScaleExtractor]:
    """The extractor class for ``"attention"`` or ``"plain"`` (for YAML/CLI, where classes cannot travel)."""
    if name not in EXTRACTORS:
        raise ValueError(f"multiscale extractor {name!r} is unknown: expected one of {sorted(EXTRACTORS)}")
    return EXTRACTORS[name]
