"""Fix: mmengine's local checkpoint loader under ``torch.load(weights_only=True)``.

Importing this module applies the fix (configs: ``custom_imports``); :func:`apply` does it
explicitly. Defect (mmengine 0.10.7 on torch >= 2.6, mmengine issue #1655): the local loader
behind ``load_checkpoint``, ``load_from`` and ``--resume`` reads with torch's default
``weights_only=True`` and fails on the non-tensor objects every mmengine checkpoint holds.
Only where a probe file of such objects fails to load is the local scheme re-registered
(``CheckpointLoader.register_scheme``) to read through
:func:`deepmim_mm.checkpoint.read_checkpoint`.
"""
import os
import pickle
import tempfile

__all__ = ['apply', 'defect_present', 'load_from_local']

_applied = False


def load_from_local(filename: str, map_location=None) -> dict:
    """mmengine's local loader, reading through :func:`deepmim_mm.checkpoint.read_checkpoint`."""
    from deepmim_mm.checkpoint import read_checkpoint
    return read_checkpoint(filename, map_location=map_location)


def defect_present() -> bool:
    """Whether the registered local loader fails on what mmengine checkpoints hold."""
    import numpy as np
    import torch
    from mmengine.logging import HistoryBuffer
    from mmengine.runner.checkpoint import CheckpointLoader
    fd, path = tempfile.mkstemp(suffix='.pth')
    os.close(fd)
    try:
        torch.save({'message_hub': {'log': HistoryBuffer()}, 'meta': {'seed': np.int64(0)}}, path)
        CheckpointLoader.load_checkpoint(path, map_location='cpu', logger='silent')
    except pickle.UnpicklingError:
        return True
    finally:
        os.remove(path)
    return False


def apply() -> bool:
    """Route local checkpoint loads through the plugin's reader if the defect is present.

    Idempotent. Returns whether the plugin's loader is (now) the local loader.
    """
    global _applied
    if not _applied and defect_present():
        from mmengine.runner.checkpoint import CheckpointLoader
        CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
        _applied = True
    return _applied


apply()
