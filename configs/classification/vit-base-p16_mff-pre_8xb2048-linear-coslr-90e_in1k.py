# ViT-B/16 linear probing of MFF checkpoints with mmpretrain's MFF protocol (behind MFF's published
# linear numbers; README.md). Set model.backbone.init_cfg.checkpoint=PRETRAIN.pth
_base_ = [
    'mmpretrain::mff/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py',
    './_base_/plugin_runtime.py'
]

default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))

model = dict(backbone=dict(type='PretrainedVisionTransformer'))
