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

It also applies the numpy 2 fixes for mmdet modules (see :func:`_numpy2_fixes`).
Configs: ``configs/detection/``.
"""
import numpy as np

import deepmim_mm  # noqa: F401  compat fixes for the pinned stack
from deepmim_mm.utils.compat import when_imported


def _numpy2_fixes():
    """numpy 2 removed names that mmdet 3.3.0 still uses; fix them in those modules only.

    - ``mmdet/evaluation/functional/ytviseval.py`` casts with ``np.float`` (removed in numpy
      1.24; reached by ``YouTubeVISMetric``): that module's ``np`` gets ``float = float``;
    - ``mmdet/datasets/transforms/text_transformers.py`` uses ``np.long`` (removed in numpy 1.24,
      back as ``int64`` in numpy 2.0): aliased to ``np.int64`` there if the installed numpy lacks
      it.

    Each module sees a copy of numpy with the alias (the global ``numpy`` is untouched), applied
    when the module is imported (now if it already is).
    """
    import types

    class _Numpy(types.ModuleType):
        def __init__(self, **aliases):
            super().__init__('numpy')
            self.__dict__.update(aliases)

        def __getattr__(self, name):
            return getattr(np, name)

    def patch(**aliases):
        def hook(module):
            missing = {k: v for k, v in aliases.items() if not hasattr(module.np, k)}
            if missing:
                module.np = _Numpy(**missing)
        return hook

    when_imported('mmdet.evaluation.functional.ytviseval', patch(float=float))
    when_imported('mmdet.datasets.transforms.text_transformers', patch(long=np.int64))


_numpy2_fixes()

from mmdet.registry import MODELS  # noqa: E402
from mmpretrain.models.utils.norm import LayerNorm2d  # noqa: E402

if 'LN2d' not in MODELS.module_dict:
    MODELS.register_module('LN2d', module=LayerNorm2d)

from .layer_decay import ViTLayerDecayOptimWrapperConstructor  # noqa: E402
from .simple_fpn import SimpleFPN  # noqa: E402
from .transforms import PadKeepImgShape  # noqa: E402
from .vit import PlainViT, SDPARelPosAttention, ViTDetLayer  # noqa: E402

__all__ = ['PlainViT', 'SDPARelPosAttention', 'ViTDetLayer', 'SimpleFPN', 'PadKeepImgShape',
           'ViTLayerDecayOptimWrapperConstructor']
