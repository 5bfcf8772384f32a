"""Long memory at constant cost: PPO with a transformer memory policy that reads one new token per step."""

from sb3_masked_attention.transformer_ppo.buffer import TransformerRolloutBuffer
from sb3_masked_attention.transformer_ppo.policy import MemoryState, TransformerMemory, TransformerMemoryPolicy
from sb3_masked_attention.transformer_ppo.ppo import TransformerPPO

__all__ = ["MemoryState", "TransformerMemory", "TransformerMemoryPolicy", "TransformerPPO", "TransformerRolloutBuffer"]
