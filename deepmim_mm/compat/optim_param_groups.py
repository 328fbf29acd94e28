"""Fix (opt-in: ``optim_wrapper = dict(constructor='PlainGroupsOptimWrapperConstructor')``):
with a ``paramwise_cfg``, mmengine 0.10.7 builds ``ConfigDict`` param groups that dynamo cannot
trace (``compile = True`` fails at its first step); only non-dict groups are converted."""
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class PlainGroupsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor whose optimizer holds plain-dict parameter groups."""

    def __call__(self, model):
        optim_wrapper = super().__call__(model)
        optimizer = optim_wrapper.optimizer
        optimizer.param_groups = [g if type(g) is dict else dict(g)
                                  for g in optimizer.param_groups]
        return optim_wrapper
