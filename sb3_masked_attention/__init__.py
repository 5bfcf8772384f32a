"""Head-masked attention policies and extractors for Stable-Baselines3.

Importing this package registers ``"HeadMaskedTransformerPolicy"`` with PPO, A2C and MaskablePPO.
"""

from sb3_masked_attention.extractors import HeadMaskedTransformerExtractor
from sb3_masked_attention.policies import HeadMaskedTransformerPolicy, MaskableHeadMaskedTransformerPolicy
from sb3_masked_attention.strategies import HEAD_MASK_STRATEGIES, resolve_head_mask_strategy
from sb3_masked_attention.wrappers import HistoryWrapper

__version__ = "0.1.0"

__all__ = [
    "HEAD_MASK_STRATEGIES",
    "HeadMaskedTransformerExtractor",
    "HeadMaskedTransformerPolicy",
    "HistoryWrapper",
    "MaskableHeadMaskedTransformerPolicy",
    "resolve_head_mask_strategy",
]
