"""Head-masked attention policies and extractors for Stable-Baselines3.

Importing this package registers ``"HeadMaskedTransformerPolicy"`` with PPO, A2C and MaskablePPO,
``"MultiScaleAttentionPolicy"`` with PPO and MaskablePPO, and ``"ForgetGateMlpLstmPolicy"`` /
``"ForgetGateMultiInputLstmPolicy"`` (an LSTM whose forget gates start open) with sb3-contrib's RecurrentPPO.
"""

from sb3_masked_attention.extractors import (
    AttentionCNNBranch,
    ChannelAttention,
    HeadMaskedTransformerExtractor,
    MultiScaleExtractor,
    MultiScaleExtractorWithAttention,
    SpatialAttention,
)
from sb3_masked_attention.policies import (
    ForgetGateLstmPolicy,
    ForgetGateMultiInputLstmPolicy,
    HeadMaskedTransformerPolicy,
    MaskableHeadMaskedTransformerPolicy,
    MaskableMultiScaleAttentionPolicy,
    MultiScaleAttentionPolicy,
)
from sb3_masked_attention.strategies import (
    HEAD_MASK_STRATEGIES,
    resolve_head_mask_strategy,
)
from sb3_masked_attention.wrappers import HistoryWrapper

__version__ = "0.2.0"

__all__ = [
    "HEAD_MASK_STRATEGIES",
    "AttentionCNNBranch",
    "ChannelAttention",
    "ForgetGateLstmPolicy",
    "ForgetGateMultiInputLstmPolicy",
    "HeadMaskedTransformerExtractor",
    "HeadMaskedTransformerPolicy",
    "HistoryWrapper",
    "MaskableHeadMaskedTransformerPolicy",
    "MaskableMultiScaleAttentionPolicy",
    "MultiScaleAttentionPolicy",
    "MultiScaleExtractor",
    "MultiScaleExtractorWithAttention",
    "SpatialAttention",
    "resolve_head_mask_strategy",
]
