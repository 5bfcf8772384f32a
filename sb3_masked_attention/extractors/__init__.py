"""SB3 features extractors built on the attention core."""

from sb3_masked_attention.extractors.multiscale import (
    AttentionCNNBranch,
    ChannelAttention,
    MultiScaleExtractor,
    MultiScaleExtractorWithAttention,
    SpatialAttention,
)
from sb3_masked_attention.extractors.transformer import HeadMaskedTransformerExtractor

__all__ = [
    "AttentionCNNBranch",
    "ChannelAttention",
    "HeadMaskedTransformerExtractor",
    "MultiScaleExtractor",
    "MultiScaleExtractorWithAttention",
    "SpatialAttention",
]
