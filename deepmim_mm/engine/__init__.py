"""Training-time additions to mmengine: hooks (:mod:`.hooks`) and optimizer wrapper
constructors (:mod:`.optimizers`)."""
from .hooks import *  # noqa: F401,F403
from .hooks import __all__ as _hooks
from .optimizers import PlainGroupsOptimWrapperConstructor

__all__ = list(_hooks) + ['PlainGroupsOptimWrapperConstructor']
