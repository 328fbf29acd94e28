# ViT-L/16 linear probing with MAE's protocol (MAE paper, arXiv 2111.06377, Table 10; 90 epochs,
# frozen backbone, BN neck on the class token); mmpretrain's ViT-L benchmark config with the
# checked backbone. For MAE and DeepMIM checkpoints alike.
_base_ = 'mmpretrain::mae/benchmarks/vit-large-p16_8xb2048-linear-coslr-90e_in1k.py'

custom_imports = dict(imports=['deepmim_mm.classification'], allow_failed_imports=False)

model = dict(backbone=dict(type='PretrainedVisionTransformer'))
