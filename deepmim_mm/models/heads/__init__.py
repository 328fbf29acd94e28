"""Reconstruction heads (mmpretrain ``MODELS``)."""
from .deepmim_head import DeepMIMHead

__all__ = ['DeepMIMHead']
