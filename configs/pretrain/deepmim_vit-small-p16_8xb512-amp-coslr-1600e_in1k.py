# DeepMIM ViT-S/16 (DeiT-S widths) with pixel targets; 12 blocks like ViT-B, so the same supervised
# blocks 6, 8, 10, 12 (1-indexed; arXiv 2303.08817).
_base_ = './deepmim_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'

model = dict(
    backbone=dict(arch='deit-s'),
    neck=dict(embed_dim=384))
