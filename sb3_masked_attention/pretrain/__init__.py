"""Self-supervised pretraining of the head-masked transformer trunk and its hand-over to SB3 models."""

from sb3_masked_attention.extractors.trunk import save_extractor
from sb3_masked_attention.pretrain.handover import load_pretrained_extractor

__all__ = ["load_pretrained_extractor", "save_extractor"]
