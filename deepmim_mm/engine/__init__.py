"""Training-time additions to mmengine, registered in mmpretrain's ``HOOKS`` on import.

- :mod:`.reliability`: atomic checkpoint writes, CPU (gloo) distributed runs, and the
  ``RNGStateHook``, ``NonFiniteLossHook`` and ``CheckpointMatchHook`` hooks.
- :mod:`.visualization_hook`: ``DeepMIMReconstructionHook``, per-level reconstruction figures
  through the runner's visualizer.
- :mod:`.hooks`: one hook per file in mmengine's root ``HOOKS`` (``KNNMonitorHook``).
"""
from .hooks import KNNMonitorHook
from .reliability import (CheckpointMatchHook, NonFiniteLossError, NonFiniteLossHook,
                          RNGStateHook)
from .visualization_hook import DeepMIMReconstructionHook

__all__ = [
    'CheckpointMatchHook', 'NonFiniteLossError', 'NonFiniteLossHook', 'RNGStateHook',
    'DeepMIMReconstructionHook', 'KNNMonitorHook'
]
