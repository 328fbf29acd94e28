"""Fix: mmengine's local checkpoint loader under ``torch.load(weights_only=True)``.

Importing this module applies the fix (configs: ``custom_imports``); :func:`apply` does it
explicitly.

Defect (mmengine 0.10.7 on torch >= 2.6; mmengine issue #1655, fixed on mmengine's main branch by
PR #1670, in no PyPI release): ``mmengine.runner.checkpoint.load_from_local``, the loader
``CheckpointLoader`` uses for local paths (behind ``load_checkpoint``, ``Runner(load_from=...)``
and ``--resume``), calls ``torch.load`` with torch's default ``weights_only=True``, and the
checkpoints mmengine writes hold non-tensor objects (the message hub's ``HistoryBuffer``, numpy
scalars): every load of an mmengine checkpoint fails.

Detection: a small file holding what mmengine checkpoints hold is loaded with the local loader
registered now. Only if that fails is anything changed, so on a stack where the defect is gone
(e.g. ``onedl-mmengine``, which loads with ``weights_only=True`` and falls back) this does nothing.

Fix: through mmengine's own extension point, ``CheckpointLoader.register_scheme(prefixes='',
force=True)``, local paths are read by the plugin's reader
(:func:`deepmim_mm.checkpoint.load_file`): ``weights_only=True`` inside a scoped allowlist of
exactly those objects, an error naming the file and the refused object otherwise, and
``DEEPMIM_TRUST_CHECKPOINTS=1`` for full pickle. No torch safe global is registered
process-wide.
"""
import os
import pickle
import tempfile

__all__ = ['apply', 'defect_present', 'load_from_local']


def load_from_local(filename: str, map_location=None):
    """mmengine's local loader, reading through :func:`deepmim_mm.checkpoint.load_file`."""
    from deepmim_mm.checkpoint import load_file
    return load_file(filename, map_location=map_location)


def defect_present() -> bool:
    """Whether the local loader registered now fails on what mmengine checkpoints hold."""
    import numpy as np
    import torch
    from mmengine.logging import HistoryBuffer
    from mmengine.runner.checkpoint import CheckpointLoader
    loader = CheckpointLoader._get_checkpoint_loader('probe.pth')
    if loader is load_from_local:
        return False
    buffer = HistoryBuffer()
    buffer.update(1.0)
    fd, path = tempfile.mkstemp(suffix='.pth')
    os.close(fd)
    try:
        torch.save({'message_hub': {'log': buffer}, 'meta': {'seed': np.int64(0)}}, path)
        loader(path, map_location='cpu')
    except pickle.UnpicklingError:
        return True
    finally:
        os.remove(path)
    return False


def apply() -> bool:
    """Route local checkpoint loads through the plugin's reader if the defect is present.

    Idempotent. Returns whether the plugin's loader is (now) the local loader.
    """
    from mmengine.runner.checkpoint import CheckpointLoader
    if CheckpointLoader._get_checkpoint_loader('probe.pth') is load_from_local:
        return True
    if not defect_present():
        return False
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
    return True


apply()
