# UperNet ViT-B/16 on ADE20K with the official DeepMIM(-CLIP) segmentation recipe (README.md;
# used for other checkpoints too: our choice). Set model.backbone.init_cfg.checkpoint=PRETRAIN.pth
_base_ = './mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py'

pretrained_checkpoint = 'work_dirs/deepmim_vit-base-p16_8xb512-amp-coslr-1600e_in1k/epoch_1600.pth'

model = dict(backbone=dict(init_cfg=dict(checkpoint=pretrained_checkpoint)))

# Official upernet_mae_base_12_512_slide_160k_ade20k.py (Segmentation/configs/mae/).
optim_wrapper = dict(
    optimizer=dict(lr=5e-5),
    paramwise_cfg=dict(layer_decay_rate=0.9))
