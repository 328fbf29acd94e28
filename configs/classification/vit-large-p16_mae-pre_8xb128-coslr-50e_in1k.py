# ViT-L/16 ImageNet-1K fine-tuning with MAE's ViT-L recipe (facebookresearch/mae FINETUNE.md,
# "Script for ViT-Large": batch 1024, --epochs 50 --blr 1e-3 -> lr 4e-3 --layer_decay 0.75
# --drop_path 0.2; the ViT-B numbers 5e-4 / 0.65 / 100 epochs are its ViT-Base command).
# mmpretrain's benchmark config is that recipe: only the backbone type changes.
_base_ = [
    'mmpretrain::mae/benchmarks/vit-large-p16_8xb128-coslr-50e_in1k.py',
    './_base_/plugin_runtime.py'
]

# Crash-safe checkpoints (mmpretrain's bases define default_hooks, so not in a second base).
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))

model = dict(backbone=dict(type='PretrainedVisionTransformer'))
