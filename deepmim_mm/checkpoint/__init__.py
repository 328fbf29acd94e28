"""One checkpoint path for the whole plugin: read a file, load weights with a checked report,
map keys between mmpretrain, timm and the official code, write files atomically.

Pure torch + mmengine: nothing here imports mmpretrain, mmseg or mmdet, so every part of the
plugin (and the tools) can use it.
"""
from .io import (TRUST_ENV, NotACheckpointError, atomic_save, atomic_write, atomic_write_bytes,
                 checkpoint_safe_globals, load_file, mmengine_safe_globals, read_checkpoint,
                 read_state_dict, stale_temporary_files, state_dict_of, trust_checkpoints)
from .keys import (DENSE_NEW_KEYS, MFF_FUSION_KEYS, PRETRAIN_ONLY_KEYS, extract_prefix, fold_keys,
                   matches, mmpretrain_vit_to_timm, official_mae_to_plugin, plugin_to_timm,
                   pretrain_only_reason, timm_to_plugin, timm_vit_to_mmpretrain)
from .loading import (LoadReport, PretrainedEncoderMixin, check_state, fit_error,
                      load_checked_state, load_pretrained_encoder, summarize)

__all__ = [
    'TRUST_ENV', 'NotACheckpointError', 'atomic_save', 'atomic_write', 'atomic_write_bytes',
    'checkpoint_safe_globals', 'load_file', 'mmengine_safe_globals', 'read_checkpoint',
    'read_state_dict', 'stale_temporary_files', 'state_dict_of', 'trust_checkpoints',
    'DENSE_NEW_KEYS', 'MFF_FUSION_KEYS', 'PRETRAIN_ONLY_KEYS', 'extract_prefix', 'fold_keys',
    'matches', 'mmpretrain_vit_to_timm', 'official_mae_to_plugin', 'plugin_to_timm',
    'pretrain_only_reason', 'timm_to_plugin', 'timm_vit_to_mmpretrain', 'LoadReport',
    'PretrainedEncoderMixin', 'check_state', 'fit_error', 'load_checked_state',
    'load_pretrained_encoder', 'summarize'
]
