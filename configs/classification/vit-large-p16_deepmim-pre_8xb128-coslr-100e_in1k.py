# ViT-L/16 fine-tuning with the official DeepMIM command and MAE's ViT-L depth-dependent numbers
# (our choice: DeepMIM published ViT-B only; README.md).
_base_ = './vit-base-p16_deepmim-pre_8xb128-coslr-100e_in1k.py'

model = dict(
    backbone=dict(arch='large', drop_path_rate=0.2),  # MAE FINETUNE.md: ViT-L
    head=dict(in_channels=1024))

optim_wrapper = dict(paramwise_cfg=dict(layer_decay_rate=0.75))  # MAE FINETUNE.md: ViT-L
