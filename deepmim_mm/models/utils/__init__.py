"""Building blocks shared by the pretraining models (batched per-level decoders)."""
