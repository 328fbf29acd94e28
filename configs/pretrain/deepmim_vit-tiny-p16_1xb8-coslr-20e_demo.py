# The first-run demo (our choice): a tiny ViT on the bundled photographs, 20 short CPU epochs.
#   python tools/train.py configs/pretrain/deepmim_vit-tiny-p16_1xb8-coslr-20e_demo.py
_base_ = './deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=192, num_layers=6, num_heads=3,
                  feedforward_channels=768),
        out_indices=None),  # default: 1/2, 2/3, 5/6 of the depth + last -> blocks 3, 4, 5, 6
    neck=dict(embed_dim=192, decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4))

train_dataloader = dict(
    batch_size=8,
    num_workers=2,
    persistent_workers=False,
    dataset=dict(
        _delete_=True,
        type='RepeatDataset',
        times=4,
        dataset=dict(
            type='CustomDataset',
            data_root='deepmim_mm/demo/images/train',
            with_label=False,
            pipeline={{_base_.train_pipeline}})))

# Plain fp32 AdamW: mmpretrain's AmpOptimWrapper needs a GPU.
optim_wrapper = dict(_delete_=True, type='OptimWrapper',
                     optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.95),
                                    weight_decay=0.05),
                     paramwise_cfg={{_base_.optim_wrapper.paramwise_cfg}})
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0, end=2,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=18, by_epoch=True, begin=2, end=20,
         convert_to_iter_based=True)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=20)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=4),
    checkpoint=dict(type='AtomicCheckpointHook', interval=5, max_keep_ckpts=2))
env_cfg = dict(dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0, diff_rank_seed=True)
resume = False
auto_scale_lr = dict(base_batch_size=8)
# Reconstructions every 60 of the 180 iterations, kNN top-1 per level every 2 epochs on the demo
# images' train/ and val/ class folders (the docs' figures); the rest as in
# _base_/deepmim_runtime.py.
custom_hooks = [
    dict(type='DeepMIMReconstructionHook', enable=True, interval=60, num_images=4),
    dict(type='RNGStateHook'),
    dict(type='NonFiniteLossHook'),
    dict(type='CheckpointMatchHook'),
    dict(type='KNNMonitorHook', enable=True, interval=2, data_root='deepmim_mm/demo/images'),
]
