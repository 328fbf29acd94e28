"""Semantic segmentation with mmsegmentation: backbones pretrained by this plugin.

Importing this package imports mmseg (configs do it with
``custom_imports=dict(imports=['deepmim_mm.seg'], allow_failed_imports=False)``) and registers
:class:`PretrainedMAE` in mmseg's ``MODELS``. Configs: ``configs/segmentation/``.
"""
from .mae_backbone import PretrainedMAE

__all__ = ['PretrainedMAE']
