# ViT-B/16 ImageNet-1K fine-tuning with DeepMIM's recipe (DeepMIM paper, arXiv 2303.08817, and its
# official code): MAE's recipe (mmpretrain's benchmark config) with base lr 1e-4 instead of 5e-4
# and layer decay 0.6 instead of 0.65. Unchanged from MAE and stated by DeepMIM: 100 epochs, 5
# warm-up, batch 1024 (8 GPUs x 128), drop path 0.1, RandAug m9-mstd0.5, random erasing 0.25,
# mixup 0.8, cutmix 1.0, label smoothing 0.1, global average pooling. Decoders are dropped.
# Set the checkpoint with --cfg-options model.backbone.init_cfg.checkpoint=PRETRAIN.pth
_base_ = './vit-base-p16_mae-pre_8xb128-coslr-100e_in1k.py'

optim_wrapper = dict(
    # DeepMIM paper (arXiv 2303.08817): base lr 1e-4; lr = base lr x batch 1024 / 256.
    optimizer=dict(lr=1e-4 * 1024 / 256),
    # DeepMIM paper (arXiv 2303.08817): layer decay 0.6.
    paramwise_cfg=dict(layer_decay_rate=0.6))
