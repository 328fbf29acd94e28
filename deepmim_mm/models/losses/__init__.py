"""Reconstruction losses (mmpretrain ``MODELS``)."""
from .cosine_feature_loss import CosineFeatureLoss

__all__ = ['CosineFeatureLoss']
