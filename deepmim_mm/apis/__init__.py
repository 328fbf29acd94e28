"""Python API: a pretrained encoder from a config and a checkpoint, and its features per level
(README, "Python API")."""
from .inference import LevelFeatureExtractor, extract_levels, init_encoder

__all__ = ['LevelFeatureExtractor', 'extract_levels', 'init_encoder']
