# ViT-B/16 linear probing on ImageNet-1K (MAE paper, arXiv 2111.06377, Table 10: the standard
# protocol for MIM encoders): frozen backbone, class token after the final norm, a
# BatchNorm without affine (ClsBatchNormNeck) before the linear classifier, LARS, base lr 0.1 at
# batch 16384 (here 8 GPUs x 2048 -> lr 6.4 as mmpretrain's config), 90 epochs, 10 warm-up,
# RandomResizedCrop + flip only. Works for MAE and DeepMIM checkpoints alike (and MFF: its fusion
# layers are dropped). mmpretrain's benchmark config is that recipe: only the backbone type
# changes, so a checkpoint without encoder weights is an error. It trains with AMP
# (AmpOptimWrapper, GPU only): on a CPU set optim_wrapper.type=OptimWrapper.
_base_ = 'mmpretrain::mae/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py'

# The plugin's classification modules and its opt-in fix for loading mmengine checkpoints on
# torch >= 2.6 (deepmim_mm.compat; a no-op where mmengine loads them itself); crash-safe checkpoints.
custom_imports = dict(imports=['deepmim_mm.classification', 'deepmim_mm.compat.mmengine_checkpoint'],
                      allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))

model = dict(backbone=dict(type='PretrainedVisionTransformer'))
