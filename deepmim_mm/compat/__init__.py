"""Opt-in fixes for defects of the pinned stack, one module each
(docs/en/advanced_guides/compatibility.md). Importing ``deepmim_mm`` runs none of them; importing
a fix's module applies it where its defect is present (configs through ``custom_imports``, the
plugin's tools through :func:`apply_all`)."""
from . import mmengine_checkpoint, mmengine_config_packages, optim_param_groups

__all__ = ['apply_all', 'mmengine_checkpoint', 'mmengine_config_packages', 'optim_param_groups']


def apply_all() -> dict:
    """Apply every fix (idempotent); returns ``{fix name: whether it is applied}``."""
    return {'mmengine_checkpoint': mmengine_checkpoint.apply(),
            'mmengine_config_packages': mmengine_config_packages.apply()}
