# ViT-B/16 ImageNet-1K fine-tuning with MAE's recipe for its released (norm-pix, 1600-epoch)
# checkpoints: facebookresearch/mae FINETUNE.md, ViT-Base command (batch 1024, --epochs 100
# --blr 5e-4 -> lr 2e-3 --layer_decay 0.65 --weight_decay 0.05 --drop_path 0.1 --reprob 0.25
# --mixup 0.8 --cutmix 1.0) and main_finetune.py's defaults (5 warm-up epochs, RandAug
# rand-m9-mstd0.5-inc1, label smoothing 0.1, global average pooling, min lr 1e-6). mmpretrain's own
# benchmark config is that recipe: only the backbone type changes, so a checkpoint without encoder
# weights is an error instead of a random init.
# Set the checkpoint with --cfg-options model.backbone.init_cfg.checkpoint=PRETRAIN.pth
_base_ = [
    'mmpretrain::mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py',
    './_base_/plugin_runtime.py'
]

# Crash-safe checkpoints (mmpretrain's bases define default_hooks, so not in a second base).
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))

model = dict(backbone=dict(type='PretrainedVisionTransformer'))
