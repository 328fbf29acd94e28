# ViT-L/16 linear probing with MAE's protocol (mmpretrain's ViT-L benchmark config), for MAE and
# DeepMIM checkpoints.
_base_ = [
    'mmpretrain::mae/benchmarks/vit-large-p16_8xb2048-linear-coslr-90e_in1k.py',
    './_base_/plugin_runtime.py'
]

default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))

model = dict(backbone=dict(type='PretrainedVisionTransformer'))
