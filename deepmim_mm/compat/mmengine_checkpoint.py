"""Fix (applied on import): where the local checkpoint loader fails on what mmengine checkpoints
hold under torch >= 2.6's ``weights_only=True`` (mmengine 0.10.7, mmengine issue #1655), or
falls back to full pickle on what that refuses (onedl-mmengine 0.10.12), the local scheme is
re-registered to read through :func:`deepmim_mm.checkpoint.read_checkpoint`."""
import contextlib
import io
import os.path as osp
import pickle
import tempfile

__all__ = ['apply', 'defect_present', 'load_from_local']

_applied = False
_probe_calls = []


def load_from_local(filename: str, map_location=None) -> dict:
    """mmengine's local loader, reading through :func:`deepmim_mm.checkpoint.read_checkpoint`."""
    from deepmim_mm.checkpoint import read_checkpoint
    return read_checkpoint(filename, map_location=map_location)


def _probe_global() -> None:
    """The one global of the probe pickle; a loader that unpickles it fully only records it."""
    _probe_calls.append(True)


class _Probe:

    def __reduce__(self):
        return _probe_global, ()


def defect_present() -> bool:
    """Whether the registered local loader fails on what mmengine checkpoints hold, or runs a
    global that ``torch.load(weights_only=True)`` refuses (the probe's own, harmless one)."""
    import numpy as np
    import torch
    from mmengine.logging import HistoryBuffer
    from mmengine.runner.checkpoint import CheckpointLoader

    # (onedl-mmengine prints its fall-back warning to stdout)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        safe, unsafe = osp.join(tmp, 'safe.pth'), osp.join(tmp, 'unsafe.pth')
        torch.save({'message_hub': {'log': HistoryBuffer([0.5], [1])},
                    'meta': {'seed': np.int64(0)}}, safe)
        torch.save({'meta': {'probe': _Probe()}}, unsafe)
        try:
            CheckpointLoader.load_checkpoint(safe, map_location='cpu', logger='silent')
        except pickle.UnpicklingError:
            return True
        _probe_calls.clear()
        with contextlib.suppress(pickle.UnpicklingError):
            CheckpointLoader.load_checkpoint(unsafe, map_location='cpu', logger='silent')
    return bool(_probe_calls)


def apply() -> bool:
    """Route local loads through the plugin's reader where the defect is present (idempotent)."""
    global _applied
    if not _applied and defect_present():
        from mmengine.runner.checkpoint import CheckpointLoader
        CheckpointLoader.register_scheme(prefixes='', loader=load_from_local, force=True)
        _applied = True
    return _applied


apply()
