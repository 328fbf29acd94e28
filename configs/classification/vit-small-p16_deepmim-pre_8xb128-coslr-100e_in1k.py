# ViT-S/16 (DeiT-S widths) fine-tuning with the ViT-B DeepMIM command (our choice: same depth).
_base_ = './vit-base-p16_deepmim-pre_8xb128-coslr-100e_in1k.py'

model = dict(
    backbone=dict(arch='deit-s'),
    head=dict(in_channels=384))
