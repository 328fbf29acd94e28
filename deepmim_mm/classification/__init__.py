"""Downstream classification pieces that mmpretrain lacks (mmpretrain registry only).

Configs load it with ``custom_imports=dict(imports=['deepmim_mm.classification'],
allow_failed_imports=False)``.
"""
from .vision_transformer import PretrainedVisionTransformer

__all__ = ['PretrainedVisionTransformer']
