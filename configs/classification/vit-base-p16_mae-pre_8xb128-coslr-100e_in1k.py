# ViT-B/16 ImageNet-1K fine-tuning with MAE's recipe (MAE paper, arXiv 2111.06377, Table 9: base
# lr 5e-4 at batch 1024 -> lr 2e-3, layer decay 0.65, 100 epochs, 5 warm-up, drop path 0.1,
# RandAug m9-mstd0.5, random erasing 0.25, mixup 0.8, cutmix 1.0, label smoothing 0.1, global
# average pooling). mmpretrain's own benchmark config is exactly that recipe: only the backbone
# type changes, so a checkpoint without encoder weights is an error instead of a random init.
# Set the checkpoint with --cfg-options model.backbone.init_cfg.checkpoint=PRETRAIN.pth
_base_ = 'mmpretrain::mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py'

# The plugin's classification modules and its opt-in fix for loading mmengine checkpoints on
# torch >= 2.6 (deepmim_mm.compat; a no-op where mmengine loads them itself); crash-safe checkpoints.
custom_imports = dict(imports=['deepmim_mm.classification', 'deepmim_mm.compat.mmengine_checkpoint'],
                      allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))

model = dict(backbone=dict(type='PretrainedVisionTransformer'))
