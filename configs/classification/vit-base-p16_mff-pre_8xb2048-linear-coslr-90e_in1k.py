# ViT-B/16 linear probing of MFF checkpoints with mmpretrain's MFF protocol: the config behind
# MFF's published linear numbers, 64.2 / 68.3 top-1 at 300 / 800 pretraining epochs (mmpretrain
# configs/mff/metafile.yml: configs/mff/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py).
# It is MAE's linear protocol (vit-base-p16_deepmim-pre_8xb2048-linear-coslr-90e_in1k.py) with
# the crop of MAE's own main_linprobe.py: MAERandomResizedCrop (torchvision's, bicubic) instead of
# mmpretrain's bilinear RandomResizedCrop; it keeps the last checkpoint only. Only the backbone
# type changes, so a checkpoint without encoder weights is an error (MFF's fusion layers, which
# the fine-tuned ViT does not have, are dropped and reported). It trains with AMP (GPU only): on
# a CPU set optim_wrapper.type=OptimWrapper.
# Set the checkpoint with --cfg-options model.backbone.init_cfg.checkpoint=PRETRAIN.pth
_base_ = [
    'mmpretrain::mff/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py',
    './_base_/plugin_runtime.py'
]

# Crash-safe checkpoints (mmpretrain's bases define default_hooks, so not in a second base).
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))

model = dict(backbone=dict(type='PretrainedVisionTransformer'))
