# DeepMIM ViT-S/16 (DeiT-S widths; our choice): 12 blocks, so ViT-B's levels and recipe.
_base_ = './deepmim_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'

model = dict(
    backbone=dict(arch='deit-s'),
    neck=dict(embed_dim=384))
