# ViT-B/16 linear probing on ImageNet-1K with MAE's protocol (facebookresearch/mae FINETUNE.md,
# "Linear Probing": --blr 0.1 at batch 16384, --epochs 90, --weight_decay 0, class token;
# main_linprobe.py: frozen backbone, BatchNorm1d without affine before the linear head, LARS,
# 10 warm-up epochs, RandomResizedCrop + flip only), as mmpretrain's MAE benchmark config
# (8 GPUs x 2048 -> lr 6.4); only the backbone type changes, so a checkpoint without encoder
# weights is an error. For MAE and DeepMIM checkpoints (MFF's fusion layers would be dropped).
# The crop is mmpretrain's MAE linear config's: RandomResizedCrop (pillow, bilinear). MAE's own
# main_linprobe.py crops with util/crop.py's RandomResizedCrop, bicubic (mmpretrain's
# MAERandomResizedCrop), and so does mmpretrain's MFF linear config, behind MFF's published
# linear numbers: for MFF checkpoints use vit-base-p16_mff-pre_8xb2048-linear-coslr-90e_in1k.py.
# It trains with AMP (AmpOptimWrapper, GPU only): on a CPU set optim_wrapper.type=OptimWrapper.
_base_ = [
    'mmpretrain::mae/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py',
    './_base_/plugin_runtime.py'
]

# Crash-safe checkpoints (mmpretrain's bases define default_hooks, so not in a second base).
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))

model = dict(backbone=dict(type='PretrainedVisionTransformer'))
