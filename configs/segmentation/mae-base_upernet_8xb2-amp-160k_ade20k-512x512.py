# UperNet ViT-B/16 on ADE20K with mmseg's MAE recipe, backbone swapped for PretrainedMAE
# (README.md). Set model.backbone.init_cfg.checkpoint=PRETRAIN.pth
_base_ = 'mmseg::mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py'

custom_imports = dict(imports=['deepmim_mm.seg', 'deepmim_mm.compat.mmengine_checkpoint'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='CheckpointMatchHook')]
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))

pretrained_checkpoint = 'work_dirs/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k/epoch_1600.pth'

model = dict(
    pretrained=None,  # the backbone's init_cfg loads the checkpoint
    backbone=dict(
        type='PretrainedMAE',
        # mmseg's MAE config (the BEiT / MAE recipe).
        init_values=1.0,
        drop_path_rate=0.1,
        out_indices=[3, 5, 7, 11],
        init_cfg=dict(type='Pretrained', checkpoint=pretrained_checkpoint,
                      prefix='backbone.')),
    # mmseg's MAE config.
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))

# mmseg's MAE config, with mmengine's AMP wrapper.
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.65),
    constructor='LayerDecayOptimizerConstructor')
fp16 = None  # mmseg 0.x leftover in the base config

# Batch 16 = 8 GPUs x 2 (mmseg's UperNet recipe).
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
