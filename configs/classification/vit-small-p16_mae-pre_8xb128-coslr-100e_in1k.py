# ViT-S/16 (DeiT-S widths) fine-tuning with MAE's ViT-B recipe (our choice: none published).
_base_ = './vit-base-p16_mae-pre_8xb128-coslr-100e_in1k.py'

model = dict(
    backbone=dict(arch='deit-s'),
    head=dict(in_channels=384))
