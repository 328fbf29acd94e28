"""Python API: a pretrained encoder from a config and a checkpoint, and its features per level
(docs/en/user_guides/analysis.md#python-api)."""
from .inference import LevelFeatureExtractor, extract_levels, init_encoder

__all__ = ['LevelFeatureExtractor', 'extract_levels', 'init_encoder']
