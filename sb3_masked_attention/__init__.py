"""Head-masked attention policies and extractors for Stable-Baselines3.

Importing this package registers ``"HeadMaskedTransformerPolicy"`` with PPO, A2C and MaskablePPO,
``"MultiScaleAttentionPolicy"`` with PPO and MaskablePPO, and ``"ForgetGateMlpLstmPolicy"`` /
``"ForgetGateMultiInputLstmPolicy"`` (an LSTM whose forget gates start open) and ``"MlpGruPolicy"`` /
``"MultiInputGruPolicy"`` (a GRU in place of the LSTM) with sb3-contrib's RecurrentPPO:
at once if SB3 is loaded, else when it is. The import itself loads neither torch nor SB3 (the command line's
``--help`` stays fast); the public names below load their module on first use.
"""

from __future__ import annotations

from sb3_masked_attention.lazy import lazy_attributes
from sb3_masked_attention.registration import register_policy_aliases

__version__ = "0.2.0"

#: Public name -> the module that defines it (loaded on first access).
_EXPORTS = {
    "HEAD_MASK_STRATEGIES": "strategies",
    "resolve_head_mask_strategy": "strategies",
    "HistoryWrapper": "wrappers",
    "AttentionCNNBranch": "extractors",
    "ChannelAttention": "extractors",
    "HeadMaskedTransformerExtractor": "extractors",
    "MultiScaleExtractor": "extractors",
    "MultiScaleExtractorWithAttention": "extractors",
    "SpatialAttention": "extractors",
    "ForgetGateLstmPolicy": "policies",
    "ForgetGateMultiInputLstmPolicy": "policies",
    "GruPolicy": "policies",
    "MultiInputGruPolicy": "policies",
    "HeadMaskedTransformerPolicy": "policies",
    "MaskableHeadMaskedTransformerPolicy": "policies",
    "MaskableMultiScaleAttentionPolicy": "policies",
    "MultiScaleAttentionPolicy": "policies",
}


__getattr__, __dir__ = lazy_attributes(globals(), {name: f"{__name__}.{module}" for name, module in _EXPORTS.items()})

register_policy_aliases()

__all__ = [
    "HEAD_MASK_STRATEGIES",
    "AttentionCNNBranch",
    "ChannelAttention",
    "ForgetGateLstmPolicy",
    "ForgetGateMultiInputLstmPolicy",
    "GruPolicy",
    "HeadMaskedTransformerExtractor",
    "HeadMaskedTransformerPolicy",
    "HistoryWrapper",
    "MaskableHeadMaskedTransformerPolicy",
    "MaskableMultiScaleAttentionPolicy",
    "MultiInputGruPolicy",
    "MultiScaleAttentionPolicy",
    "MultiScaleExtractor",
    "MultiScaleExtractorWithAttention",
    "SpatialAttention",
    "resolve_head_mask_strategy",
]
