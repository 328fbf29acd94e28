"""Opt-in fixes for defects of the pinned stack (mmengine 0.10.7 on torch >= 2.6), one module each.

Nothing here runs when ``deepmim_mm`` is imported. A fix is applied by importing its module,
which configs do through ``custom_imports`` and the plugin's tools do explicitly
(:func:`apply_all`); each fix first tests whether the defect is there and does nothing where it is
gone (e.g. a maintained fork of mmengine that loads its checkpoints under ``weights_only``).

- :mod:`.mmengine_checkpoint`: mmengine's local checkpoint loader under
  ``torch.load(weights_only=True)`` (mmengine issue #1655, fixed on mmengine's main branch by
  PR #1670, in no release): ``load_from`` and ``--resume`` fail on every mmengine checkpoint.
- :mod:`.optim_param_groups`: ``PlainGroupsOptimWrapperConstructor``, plain-dict param groups
  that dynamo can trace (``compile = True`` with a ``paramwise_cfg``).
"""
from . import mmengine_checkpoint, optim_param_groups

__all__ = ['apply_all', 'mmengine_checkpoint', 'optim_param_groups']


def apply_all() -> dict:
    """Apply every fix (idempotent); returns ``{fix name: whether it was needed}``."""
    return {'mmengine_checkpoint': mmengine_checkpoint.apply()}
