"""Self-supervised algorithms (mmpretrain ``MODELS``)."""
from .deepmim import DeepMIM

__all__ = ['DeepMIM']
