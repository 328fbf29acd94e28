"""Optimizer wrapper constructors."""
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class PlainGroupsOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor whose optimizer holds plain-dict parameter groups.

    Adds over ``DefaultOptimWrapperConstructor``: with a ``paramwise_cfg`` from a config, mmengine
    0.10.7 builds every parameter group as a ``ConfigDict``, and torch 2.14's dynamo cannot trace
    an optimizer step over those ("UserDefinedDictVariable has no attribute items"), so a config
    with ``compile = True`` fails at its first step. The groups are converted to plain dicts with
    the same values; everything else is upstream's. Select it with
    ``optim_wrapper = dict(constructor='PlainGroupsOptimWrapperConstructor')``.
    """

    def __call__(self, model):
        optim_wrapper = super().__call__(model)
        optimizer = optim_wrapper.optimizer
        optimizer.param_groups = [g if type(g) is dict else dict(g)
                                  for g in optimizer.param_groups]
        return optim_wrapper
