"""Layer-wise learning-rate decay for mmdet detectors with a ViT backbone."""
from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS
from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class ViTLayerDecayOptimWrapperConstructor(LearningRateDecayOptimWrapperConstructor):
    """mmpretrain's layer-decay constructor, registered for mmdet and driven by the backbone.

    mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` asks the *model* for
    ``get_layer_depth``, which mmpretrain's classifiers have and mmdet's detectors do not; mmdet's
    own ``LearningRateDecayOptimizerConstructor`` only knows ConvNeXt. This subclass asks the
    backbone (``model.backbone.get_layer_depth(name, 'backbone.')``, e.g. :class:`PlainViT`'s,
    inherited from mmpretrain's ``ViTSAM``): patch embedding and position embedding at depth 0,
    block ``i`` at ``i + 1``, everything outside the backbone (pyramid, RPN, RoI heads) at the
    top with lr scale 1. With ``num_layers=12`` block ``i`` gets ``layer_decay_rate ** (12 - i)``,
    ViTDet's rule (Li et al., arXiv 2203.16527; ``decay_rate ** (num_layers + 1 - layer_id)``).
    The ``paramwise_cfg`` keys are mmpretrain's (``layer_decay_rate``, ``norm_decay_mult``,
    ``bias_decay_mult``, ``flat_decay_mult``, ``custom_keys`` with ``decay_mult``).
    """

    def add_params(self, params, module, prefix='', get_layer_depth=None, **kwargs):
        if prefix == '' and get_layer_depth is None:
            backbone = getattr(module, 'backbone', None)
            if backbone is None or not hasattr(backbone, 'get_layer_depth'):
                raise ValueError(
                    'ViTLayerDecayOptimWrapperConstructor: model.backbone must define '
                    f'get_layer_depth (e.g. PlainViT); got {type(backbone).__name__}')

            def get_layer_depth(name):
                return backbone.get_layer_depth(name, 'backbone.')
        super().add_params(params, module, prefix=prefix, get_layer_depth=get_layer_depth,
                           **kwargs)
