# ViT-L/16 ImageNet-1K fine-tuning with the official DeepMIM fine-tuning command
# (OliverRensu/DeepMIM README.md, published for DeepMIM-CLIP ViT-B: base lr 1e-4, 100 epochs,
# 5 warm-up, batch 1024, RandAug m9-mstd0.5, random erasing 0.25, mixup 0.8, cutmix 1.0, label
# smoothing 0.1, global average pooling; see vit-base-p16_deepmim-pre_8xb128-coslr-100e_in1k.py).
# DeepMIM published this recipe for ViT-B (12 blocks) only. Two numbers depend on depth, and here
# follow MAE's ViT-L command instead (facebookresearch/mae FINETUNE.md, "Script for ViT-Large":
# --drop_path 0.2 --layer_decay 0.75): DeepMIM's 0.6 per block over 24 blocks would scale the
# patch embedding's lr by 0.6^25 ~ 3e-6; 0.75 ~ sqrt(0.6), the same decay per unit of relative
# depth. This project's choice, not a published recipe.
_base_ = './vit-base-p16_deepmim-pre_8xb128-coslr-100e_in1k.py'

model = dict(
    backbone=dict(arch='large', drop_path_rate=0.2),  # MAE FINETUNE.md: ViT-L
    head=dict(in_channels=1024))

optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.75))  # MAE FINETUNE.md: ViT-L
