# ViT-L/16 fine-tuning with MAE's ViT-L recipe (facebookresearch/mae FINETUNE.md = mmpretrain's
# MAE benchmark config).
_base_ = [
    'mmpretrain::mae/benchmarks/vit-large-p16_8xb128-coslr-50e_in1k.py',
    './_base_/plugin_runtime.py'
]

default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))

model = dict(backbone=dict(type='PretrainedVisionTransformer'))
