"""Opt-in fixes for defects of the pinned stack, one module each (listed in the docs).

Importing ``deepmim_mm`` runs none of them. Importing a fix's module applies it (configs do it
through ``custom_imports``; the plugin's tools call :func:`apply_all`); each first tests whether
the defect is there and does nothing where it is gone.

- :mod:`.mmengine_checkpoint`: mmengine's local checkpoint loader under
  ``torch.load(weights_only=True)`` (mmengine issue #1655).
- :mod:`.mmengine_config_packages`: ``mmseg::`` config bases where mmseg is installed under
  another distribution name (the OneDL fork's ``onedl-mmsegmentation``).
- :mod:`.optim_param_groups`: ``PlainGroupsOptimWrapperConstructor``, plain-dict param groups
  that dynamo can trace (``compile = True`` with a ``paramwise_cfg``).
"""
from . import mmengine_checkpoint, mmengine_config_packages, optim_param_groups

__all__ = ['apply_all', 'mmengine_checkpoint', 'mmengine_config_packages', 'optim_param_groups']


def apply_all() -> dict:
    """Apply every fix (idempotent); returns ``{fix name: whether it is applied}``."""
    return {'mmengine_checkpoint': mmengine_checkpoint.apply(),
            'mmengine_config_packages': mmengine_config_packages.apply()}
