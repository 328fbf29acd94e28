"""Decoders (mmpretrain ``MODELS``)."""
from .multi_level_decoder import MultiLevelDecoder

__all__ = ['MultiLevelDecoder']
