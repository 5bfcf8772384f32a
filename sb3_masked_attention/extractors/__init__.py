"""SB3 features extractors built on the attention core."""

from sb3_masked_attention.extractors.transformer import HeadMaskedTransformerExtractor

__all__ = ["HeadMaskedTransformerExtractor"]
