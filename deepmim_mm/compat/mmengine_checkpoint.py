"""Fix (applied on import): mmengine 0.10.7's local checkpoint loader fails on torch >= 2.6's
``weights_only=True`` default (mmengine issue #1655); where a probe file fails to load, the local
scheme is re-registered to read through :func:`deepmim_mm.checkpoint.read_checkpoint`."""
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
    """Route local loads through the plugin's reader if the defect is present (idempotent);
    returns whether it does."""
    global _applied
    if not _applied and defect_present():
        from mmengine.runner.checkpoint import CheckpointLoader
        CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
        _applied = True
    return _applied


apply()
