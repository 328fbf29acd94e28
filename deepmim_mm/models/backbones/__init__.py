"""Encoders for pretraining (mmpretrain ``MODELS``)."""
from .deepmim_vit import DeepMIMViT, default_supervised_blocks

__all__ = ['DeepMIMViT', 'default_supervised_blocks']
