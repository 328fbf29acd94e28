# ViT-S/16 (DeiT-S widths: arch 'deit-s', 384-d, 12 blocks, 6 heads) linear probing with the
# ViT-B config's protocol (MAE's; 90 epochs, frozen backbone, BN neck on the class token). For MAE
# and DeepMIM checkpoints alike.
_base_ = './vit-base-p16_deepmim-pre_8xb2048-linear-coslr-90e_in1k.py'

model = dict(
    backbone=dict(arch='deit-s', frozen_stages=12),
    neck=dict(input_features=384),
    head=dict(in_channels=384))
