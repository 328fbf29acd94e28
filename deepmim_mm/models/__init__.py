"""Pretraining models, registered in mmpretrain's ``MODELS``."""
from . import algorithms, backbones, heads, losses, necks, target_generators  # noqa: F401
