# Plain MAE ViT-L/16 (arXiv 2111.06377): the ViT-B leaf with the model of mmpretrain's
# mae_vit-large-p16_8xb512-amp-coslr-1600e_in1k.py (its ViT-B recipe otherwise).
_base_ = './mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'

model = dict(backbone=dict(arch='l', out_indices=[23]), neck=dict(embed_dim=1024))
