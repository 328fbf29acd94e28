# ViT-L/16 linear probing with MAE's protocol (facebookresearch/mae FINETUNE.md, "Linear
# Probing"; frozen backbone, BN neck on the class token; 90 epochs as mmpretrain's ViT-L benchmark
# config, where FINETUNE.md says 50 suffice for ViT-L), with the checked backbone. For MAE and
# DeepMIM checkpoints; the crop differs from MAE's main_linprobe.py as in the ViT-B config.
_base_ = [
    'mmpretrain::mae/benchmarks/vit-large-p16_8xb2048-linear-coslr-90e_in1k.py',
    './_base_/plugin_runtime.py'
]

# Crash-safe checkpoints (mmpretrain's bases define default_hooks, so not in a second base).
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))

model = dict(backbone=dict(type='PretrainedVisionTransformer'))
