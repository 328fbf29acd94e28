"""Compatibility fixes for mmengine 0.10.7 / mmcv 2.1.0 / mmpretrain 1.2.0 on torch 2.14 and numpy 2.

:func:`apply` is called once when ``deepmim_mm`` is imported. Each fix is idempotent.
"""


def apply() -> None:
    """Apply every fix (idempotent)."""
