# MAE ViT-S/16 (DeiT-S widths; our choice: no published recipe): the ViT-B recipe.
_base_ = './mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

model = dict(
    backbone=dict(arch='deit-s'),
    neck=dict(embed_dim=384))
