# Plain MAE with a ViT-S/16 encoder (DeiT-S widths: 384-d, 12 blocks, 6 heads; note mmpretrain's
# 's' arch is a different, 768-d model). mmpretrain ships no MAE ViT-S config: the ViT-B recipe.
_base_ = './mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'

model = dict(
    backbone=dict(arch='deit-s'),
    neck=dict(embed_dim=384))
