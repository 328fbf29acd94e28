"""Data loading with clear errors: a corrupt image is named (or skipped with a warning)."""
from .transforms import LoadImageFromFileChecked

__all__ = ['LoadImageFromFileChecked']
