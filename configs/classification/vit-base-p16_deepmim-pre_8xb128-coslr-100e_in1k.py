# ViT-B/16 ImageNet-1K fine-tuning with the official DeepMIM fine-tuning command: MAE's recipe
# (mmpretrain's benchmark config) with base lr 1e-4 instead of 5e-4 and layer decay 0.6 instead
# of 0.65. Source: OliverRensu/DeepMIM README.md, "Fine-tuning on ImageNet-1K" (main_finetune.py
# --batch_size 128 on 8 GPUs, --epochs 100 --blr 1e-4 --layer_decay 0.6 --weight_decay 0.05
# --drop_path 0.1 --reprob 0.25 --mixup 0.8 --cutmix 1.0; main_finetune.py defaults: 5 warm-up
# epochs, RandAug rand-m9-mstd0.5-inc1, label smoothing 0.1, global average pooling) and its log
# log/FT-log.txt (85.5 top-1 at epoch 100; README: 85.6). That command and log are published for
# the DeepMIM-CLIP checkpoint (--finetune ./output_dir/checkpoint-1599.pth of the README's
# pretraining command, which trains with --clip_path): using them for pixel DeepMIM checkpoints is
# this project's choice (no pixel-DeepMIM fine-tuning recipe is published). Decoders are dropped.
# Set the checkpoint with --cfg-options model.backbone.init_cfg.checkpoint=PRETRAIN.pth
_base_ = './vit-base-p16_mae-pre_8xb128-coslr-100e_in1k.py'

optim_wrapper = dict(
    # Official DeepMIM-CLIP command (README.md): --blr 1e-4; lr = base lr x batch 1024 / 256.
    optimizer=dict(lr=1e-4 * 1024 / 256),
    # Official DeepMIM-CLIP command (README.md): --layer_decay 0.6.
    paramwise_cfg=dict(layer_decay_rate=0.6))
