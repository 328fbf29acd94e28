# Plain MAE (He et al., arXiv 2111.06377) expressed with this plugin's classes: one supervised
# level (the last block), one 8-block decoder. Everything else (data, schedule, AdamW, AMP) is
# mmpretrain's own recipe, inherited unchanged. Loads mmpretrain's MAE checkpoints with no
# missing keys.
_base_ = [
    'mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-800e_in1k.py',
    './_base_/deepmim_runtime.py'
]

model = dict(
    type='DeepMIM',
    backbone=dict(type='DeepMIMViT', out_indices=[11]),
    neck=dict(type='MultiLevelDecoder'),
    head=dict(type='DeepMIMHead'))

# What a second _base_ cannot add (mmengine refuses a key defined in two bases): crash-safe
# checkpoints, the checked image loader, and the collate_fn without the `_scope_` tag mmengine
# puts on dicts inherited from `mmpretrain::` configs (mmengine 0.10.7's Runner passes it on to
# default_collate, which fails at the first batch).
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
train_pipeline = {{_base_.checked_mae_train_pipeline}}  # names unreadable images
train_dataloader = dict(collate_fn=dict(_delete_=True, type='default_collate'),
                        dataset=dict(pipeline=train_pipeline))
