# MFF (Liu et al., ICCV 2023, arXiv 2308.00261) expressed with this plugin's classes. mmpretrain's
# own MFF recipe is inherited (seed 2, resize + random crop with reflect padding); the encoder
# fuses blocks 0, 2, 4, 6, 8 and 11 (0-indexed) into the latent the 8-block MAE decoder sees.
# Loads mmpretrain's MFF checkpoints with no missing keys. mmpretrain's MFF model zoo
# (configs/mff/metafile.yml): 83.0 / 83.7 top-1 fine-tuned at 300 / 800 pretraining epochs.
_base_ = [
    'mmpretrain::mff/mff_vit-base-p16_8xb512-amp-coslr-800e_in1k.py',
    './_base_/deepmim_runtime.py'
]

model = dict(
    type='DeepMIM',
    backbone=dict(
        type='DeepMIMViT',
        out_indices=[11],
        # MFF paper / mmpretrain configs/mff: fused levels for ViT-B.
        fusion_indices=[0, 2, 4, 6, 8, 11]),
    neck=dict(type='MultiLevelDecoder'),
    head=dict(type='DeepMIMHead'))

# What a second _base_ cannot add (mmengine refuses a key defined in two bases): crash-safe
# checkpoints, the checked image loader, and the collate_fn without the `_scope_` tag mmengine
# puts on dicts inherited from `mmpretrain::` configs (mmengine 0.10.7's Runner passes it on to
# default_collate, which fails at the first batch).
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
train_pipeline = {{_base_.checked_mff_train_pipeline}}  # names unreadable images
train_dataloader = dict(collate_fn=dict(_delete_=True, type='default_collate'),
                        dataset=dict(pipeline=train_pipeline))
