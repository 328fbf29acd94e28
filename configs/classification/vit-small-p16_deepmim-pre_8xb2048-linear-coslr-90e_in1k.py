# ViT-S/16 (DeiT-S widths) linear probing with the ViT-B config's protocol (MAE's).
_base_ = './vit-base-p16_deepmim-pre_8xb2048-linear-coslr-90e_in1k.py'

model = dict(
    backbone=dict(arch='deit-s', frozen_stages=12),
    neck=dict(input_features=384),
    head=dict(in_channels=384))
