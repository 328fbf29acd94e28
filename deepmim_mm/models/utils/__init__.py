"""Building blocks shared by the pretraining models (batched per-level decoders)."""
from .batched_transformer import (batched_encoder_layer, batched_layer_norm, batched_linear,
                                  encoder_layer_supported, layer_norm_supported,
                                  stacked_layer_params)

__all__ = [
    'batched_encoder_layer', 'batched_layer_norm', 'batched_linear', 'encoder_layer_supported',
    'layer_norm_supported', 'stacked_layer_params'
]
