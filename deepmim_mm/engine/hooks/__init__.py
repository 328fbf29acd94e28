"""Training hooks, one per file, in mmengine's root ``HOOKS`` (found from every scope)."""
from .atomic_checkpoint_hook import AtomicCheckpointHook, AtomicLocalBackend
from .checkpoint_match_hook import CheckpointMatchHook
from .knn_monitor_hook import KNNMonitorHook
from .non_finite_loss_hook import NonFiniteLossError, NonFiniteLossHook
from .reconstruction_hook import DeepMIMReconstructionHook
from .resume_check_hook import ResumeCheckHook
from .rng_state_hook import RNGStateHook

__all__ = [
    'AtomicCheckpointHook', 'AtomicLocalBackend', 'CheckpointMatchHook', 'KNNMonitorHook',
    'NonFiniteLossError', 'NonFiniteLossHook', 'DeepMIMReconstructionHook', 'ResumeCheckHook',
    'RNGStateHook'
]
