# MFF ViT-B/16 (arXiv 2308.00261) with this plugin's classes; mmpretrain's recipe inherited.
_base_ = [
    'mmpretrain::mff/mff_vit-base-p16_8xb512-amp-coslr-300e_in1k.py',
    './_base_/deepmim_runtime.py'
]

model = dict(
    type='DeepMIM',
    backbone=dict(
        type='DeepMIMViT',
        out_indices=[11],
        fusion_indices=[0, 2, 4, 6, 8, 11]),  # mmpretrain configs/mff (MFF's ViT-B)
    neck=dict(type='MultiLevelDecoder'),
    head=dict(type='DeepMIMHead'))

default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
train_pipeline = {{_base_.checked_mff_train_pipeline}}
train_dataloader = dict(collate_fn=dict(_delete_=True, type='default_collate'),
                        dataset=dict(pipeline=train_pipeline))
