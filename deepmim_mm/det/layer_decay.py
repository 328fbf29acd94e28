"""Layer-wise learning-rate decay for mmdet detectors with a ViT backbone."""
from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS
from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class ViTLayerDecayOptimWrapperConstructor(LearningRateDecayOptimWrapperConstructor):
    """mmpretrain's layer-decay constructor, registered for mmdet, asking the *backbone* for
    ``get_layer_depth`` (mmdet's detectors have none; mmdet's own constructor knows only
    ConvNeXt); ``paramwise_cfg`` keys are mmpretrain's."""

    def add_params(self, params, module, prefix='', get_layer_depth=None, **kwargs):
        if prefix == '' and get_layer_depth is None:
            def get_layer_depth(name):
                return module.backbone.get_layer_depth(name, 'backbone.')
        super().add_params(params, module, prefix=prefix, get_layer_depth=get_layer_depth,
                           **kwargs)
