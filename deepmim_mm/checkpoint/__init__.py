"""One checkpoint path: read, check and load, map keys, write atomically (torch + mmengine only)."""
from .io import (TRUST_ENV, NotACheckpointError, atomic_save, atomic_write_bytes,
                 checkpoint_safe_globals, load_file, read_checkpoint, read_state_dict,
                 stale_temporary_files, state_dict_of, torch_bytes)
from .keys import (DENSE_NEW_KEYS, PRETRAIN_ONLY_KEYS, fold_keys, official_mae_to_plugin,
                   plugin_to_timm, timm_to_plugin)
from .loading import (LoadReport, PretrainedEncoderMixin, check_state, fit_error,
                      load_checked_state, load_pretrained_encoder)

__all__ = [
    'TRUST_ENV', 'NotACheckpointError', 'atomic_save', 'atomic_write_bytes',
    'checkpoint_safe_globals', 'load_file', 'read_checkpoint', 'read_state_dict',
    'stale_temporary_files', 'state_dict_of', 'torch_bytes', 'DENSE_NEW_KEYS',
    'PRETRAIN_ONLY_KEYS', 'fold_keys', 'official_mae_to_plugin', 'plugin_to_timm',
    'timm_to_plugin', 'LoadReport', 'PretrainedEncoderMixin', 'check_state', 'fit_error',
    'load_checked_state', 'load_pretrained_encoder'
]
