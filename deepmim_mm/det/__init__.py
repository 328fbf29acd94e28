"""Object detection / instance segmentation with mmdetection, ViTDet style.

Importing this package imports mmdet (configs: ``custom_imports``) and registers what
mmdetection keeps in its ``projects/ViTDet``, outside the wheel: :class:`PlainViT`,
:class:`SimpleFPN`, ``'LN2d'`` (mmpretrain's ``LayerNorm2d``), the layer-decay constructor
:class:`ViTLayerDecayOptimWrapperConstructor` and the test-time :class:`PadKeepImgShape`.
"""
from mmdet.registry import MODELS
from mmpretrain.models.utils.norm import LayerNorm2d

from .layer_decay import ViTLayerDecayOptimWrapperConstructor
from .simple_fpn import SimpleFPN
from .transforms import PadKeepImgShape
from .vit import PlainViT, SDPARelPosAttention, ViTDetLayer

if 'LN2d' not in MODELS.module_dict:
    MODELS.register_module('LN2d', module=LayerNorm2d)

__all__ = ['PlainViT', 'SDPARelPosAttention', 'ViTDetLayer', 'SimpleFPN', 'PadKeepImgShape',
           'ViTLayerDecayOptimWrapperConstructor']
