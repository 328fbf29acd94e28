# DeepMIM ViT-B/16 with pixel targets (arXiv 2303.08817): MAE plus deep supervision.
_base_ = './mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

model = dict(
    backbone=dict(out_indices=[5, 7, 9, 11]),  # blocks 6, 8, 10, 12: official models_mae.py
    neck=dict(decoder_depth=4))  # every level, the last included: our choice (README.md)
