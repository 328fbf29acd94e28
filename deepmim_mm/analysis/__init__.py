"""Analysis of pretrained encoders: unmasked features per level, per-level reconstructions,
attention distance and head diversity, linear CKA, probes (the maths under ``tools/analysis/``)."""
from .attention import (capture_attention, head_dissimilarity, mean_attention_distance,
                        patch_distances)
from .cka import cka_matrix, linear_cka
from .features import (BLOCKS, FEATURES, capture, capture_block_outputs, encode_unmasked,
                       eval_pipeline, extract_features, labelled_splits, labels_of, level_features,
                       level_names, model_input_size, pool_tokens, unwrap, vit_geometry)
from .reconstruction import (MaskedPredictions, level_grids, level_panels, masked_predictions,
                             pixel_reconstruction)

__all__ = [
    'capture_attention', 'head_dissimilarity', 'mean_attention_distance', 'patch_distances',
    'cka_matrix', 'linear_cka', 'BLOCKS', 'FEATURES', 'capture', 'capture_block_outputs',
    'encode_unmasked', 'eval_pipeline', 'extract_features', 'model_input_size', 'labelled_splits',
    'labels_of', 'level_features', 'level_names', 'pool_tokens', 'unwrap', 'vit_geometry',
    'MaskedPredictions', 'level_grids', 'level_panels', 'masked_predictions',
    'pixel_reconstruction'
]
