# ViT-B/16 fine-tuning with the official DeepMIM(-CLIP) command (OliverRensu/DeepMIM README.md;
# used for pixel DeepMIM too: our choice). Set model.backbone.init_cfg.checkpoint=PRETRAIN.pth
_base_ = './vit-base-p16_mae-pre_8xb128-coslr-100e_in1k.py'

optim_wrapper = dict(
    optimizer=dict(lr=1e-4 * 1024 / 256),  # official README.md: --blr 1e-4, batch 1024
    paramwise_cfg=dict(layer_decay_rate=0.6))  # official README.md: --layer_decay 0.6
