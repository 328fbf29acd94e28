# DeepMIM's deep supervision on MFF's fused encoder (our combination: no published recipe).
_base_ = './mff_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'

model = dict(
    backbone=dict(out_indices=[5, 7, 9, 11]),  # blocks 6, 8, 10, 12: official models_mae.py
    neck=dict(decoder_depth=4))  # every level, the last included: our choice (README.md)
