# DeepMIM + MFF: deep supervision of blocks 6, 8, 10 (1-indexed, DeepMIM arXiv 2303.08817) on top
# of MFF's fusion of blocks 0, 2, 4, 6, 8, 11 (0-indexed) into the last level (arXiv 2308.00261).
# The two are orthogonal; no paper reports this combination (this project's), so there is no
# reference number.
_base_ = './mff_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

model = dict(
    # Blocks 6, 8, 10 raw + the (fused, normalised) last block (1-indexed; the official DeepMIM
    # models_mae.py forward_encoder, DeepMIM-CLIP's code).
    backbone=dict(out_indices=[5, 7, 9, 11]),
    # This project's choice: 4-block decoders for every level, the last included, as the
    # official DeepMIM-CLIP code (models_mae.py, decoder_depth=4); MFF's / MAE's has 8.
    neck=dict(decoder_depth=4))
