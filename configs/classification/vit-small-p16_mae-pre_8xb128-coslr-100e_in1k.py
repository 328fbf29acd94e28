# ViT-S/16 ImageNet-1K fine-tuning with MAE's ViT-B recipe (facebookresearch/mae FINETUNE.md: base
# lr 5e-4, layer decay 0.65, 100 epochs; MAE published no ViT-S recipe, mmpretrain ships none:
# this project's choice).
# ViT-S means DeiT-S widths: mmpretrain arch 'deit-s' (384-d, 12 blocks, 6 heads), the arch the
# plugin's ViT-S pretraining configs use; mmpretrain's 's' arch is a different, 768-d model.
_base_ = './vit-base-p16_mae-pre_8xb128-coslr-100e_in1k.py'

model = dict(
    backbone=dict(arch='deit-s'),
    head=dict(in_channels=384))
