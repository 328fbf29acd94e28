"""deepmim_mm: DeepMIM and MFF masked image modeling for OpenMMLab 2.x.

Importing the package only registers modules: the pretraining models in mmpretrain's ``MODELS``,
the training hooks in mmengine's root registries, the data transforms in mmpretrain's
``TRANSFORMS``. It changes nothing in torch, mmengine, mmcv or the task
libraries, and imports neither mmseg nor mmdet itself: ``deepmim_mm.seg`` and ``deepmim_mm.det`` do,
when a config asks for them through ``custom_imports``. Fixes for defects of the pinned stack
(and the optimizer wrapper constructor that works around one) are opt-in: :mod:`deepmim_mm.compat`.
"""
from . import datasets, engine, models  # noqa: F401

__version__ = '0.1.0'
