# ViT-B/16 fine-tuning with MAE's recipe (facebookresearch/mae FINETUNE.md = mmpretrain's MAE
# benchmark config). Set model.backbone.init_cfg.checkpoint=PRETRAIN.pth
_base_ = [
    'mmpretrain::mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py',
    './_base_/plugin_runtime.py'
]

default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))

model = dict(backbone=dict(type='PretrainedVisionTransformer'))
