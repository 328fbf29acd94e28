"""Analysis of pretrained encoders: per-level reconstructions, attention distance and head
diversity, linear CKA between blocks. Used by ``tools/analysis/`` and by
:class:`deepmim_mm.engine.hooks.DeepMIMReconstructionHook`; importable on its own
(no mmseg / mmdet)."""
from .attention import (capture_attention, capture_block_outputs, encode_unmasked,
                        head_dissimilarity, mean_attention_distance, patch_distances, vit_geometry)
from .cka import cka_matrix, linear_cka
from .reconstruction import (MaskedPredictions, level_grids, level_panels, masked_predictions,
                             pixel_reconstruction)

__all__ = [
    'capture_attention', 'capture_block_outputs', 'encode_unmasked', 'head_dissimilarity',
    'mean_attention_distance', 'patch_distances', 'vit_geometry', 'cka_matrix', 'linear_cka',
    'MaskedPredictions', 'level_grids', 'level_panels', 'masked_predictions',
    'pixel_reconstruction'
]
