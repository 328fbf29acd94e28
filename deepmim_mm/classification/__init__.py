"""Downstream classification pieces that mmpretrain lacks (mmpretrain registry only)."""
from .vision_transformer import PretrainedVisionTransformer

__all__ = ['PretrainedVisionTransformer']
