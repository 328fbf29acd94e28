"""ViTDet pieces for mmdet that mmdetection keeps in ``projects/ViTDet``, outside its wheel, and
``'LN2d'`` (mmpretrain's ``LayerNorm2d``); importing this package imports mmdet."""
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
