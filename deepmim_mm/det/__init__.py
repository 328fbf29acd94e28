"""Object detection / instance segmentation with mmdetection, ViTDet style.

Importing this package imports mmdet (configs do it with
``custom_imports=dict(imports=['deepmim_mm.det'], allow_failed_imports=False)``) and registers in
mmdet's registries what mmdetection keeps in its ``projects/ViTDet`` (not in the mmdet wheel):

- :class:`PlainViT` (``MODELS``): plain ViT with window + global attention, relative positions,
  SDPA, loading of this plugin's pretraining checkpoints with a report;
- :class:`SimpleFPN` (``MODELS``): ViTDet's simple feature pyramid with channel LayerNorm;
- ``'LN2d'`` (``MODELS``): mmpretrain's ``LayerNorm2d`` (channel LayerNorm), registered for mmdet;
- :class:`ViTLayerDecayOptimWrapperConstructor` (``OPTIM_WRAPPER_CONSTRUCTORS``);
- :class:`PadKeepImgShape` (``TRANSFORMS``): test-time padding to the square canvas that keeps
  boxes clipped to the image.

Configs: ``configs/detection/``.
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
