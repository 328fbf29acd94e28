# ViT-B/16 linear probing with MAE's protocol (mmpretrain's MAE benchmark config), for MAE and
# DeepMIM checkpoints; MFF ones: vit-base-p16_mff-pre_8xb2048-linear-coslr-90e_in1k.py (README.md).
_base_ = [
    'mmpretrain::mae/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py',
    './_base_/plugin_runtime.py'
]

default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))

model = dict(backbone=dict(type='PretrainedVisionTransformer'))
