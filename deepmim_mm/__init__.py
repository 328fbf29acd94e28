"""deepmim_mm: DeepMIM and MFF masked image modeling for OpenMMLab 2.x.

Importing the package applies the compatibility fixes for the pinned stack on torch 2.14 / numpy 2
(:mod:`deepmim_mm.utils.compat`) and registers the pretraining models in mmpretrain's ``MODELS``.
It never imports mmseg or mmdet: ``deepmim_mm.seg`` and ``deepmim_mm.det`` do, when a config asks
for them through ``custom_imports``.
"""
from .utils import compat as _compat

_compat.apply()
_compat.import_mmpretrain_models()

from . import datasets, engine, models  # noqa: E402,F401

__version__ = '0.1.0'
