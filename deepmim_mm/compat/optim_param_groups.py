"""Fix: ``torch.compile`` of a training step whose optimizer has ``ConfigDict`` param groups.

Defect (mmengine 0.10.7 with torch 2.14): with a ``paramwise_cfg``, mmengine's
``DefaultOptimWrapperConstructor`` builds every parameter group as a ``ConfigDict``, and dynamo
cannot trace an optimizer step over those ("UserDefinedDictVariable has no attribute items"), so
a config with ``compile = True`` fails at its first step. Opt-in: a config selects
``optim_wrapper = dict(constructor='PlainGroupsOptimWrapperConstructor')``; only groups that are
not plain dicts are converted (same values), so where the defect is gone nothing changes.
"""
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
