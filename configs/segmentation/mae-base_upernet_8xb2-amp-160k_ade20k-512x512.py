# UperNet on ADE20K with a ViT-B/16 pretrained by this plugin (MAE, DeepMIM or MFF checkpoint),
# fine-tuned with the MAE recipe: mmseg's own MAE config, configs/mae/mae-base_upernet_8xb2-amp-
# 160k_ade20k-512x512.py (48.13 mIoU in mmseg's configs/mae/metafile.yaml, from the official MAE
# ViT-B release), whose backbone is swapped for `PretrainedMAE` (same network as mmseg's `MAE`,
# plus loading of this plugin's pretraining checkpoints: see deepmim_mm/seg/mae_backbone.py).
#
# The pretraining checkpoint: set it on the command line (the variable below is only the default;
# mmengine resolves it when the file is read, so override the field itself):
#   tools/dist_train.sh configs/segmentation/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py 8 \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/<pretrain>/epoch_1600.pth
# The log then reports every checkpoint key that was loaded, dropped (decoders, MFF fusion,
# final norm, teacher) or is new (relative position bias, layer scale), and the resize of the
# position embedding from the pretraining grid (14x14 at 224) to 32x32 (512 / 16).
# Data: ADE20K in mmseg's layout under data/ade/ADEChallengeData2016 (override
# train_dataloader.dataset.data_root / val_dataloader.dataset.data_root).
_base_ = 'mmseg::mae/mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py'

# The plugin's seg modules and its opt-in fix for loading mmengine checkpoints on
# torch >= 2.6 (deepmim_mm.compat; a no-op where mmengine loads them itself); crash-safe
# checkpoints; a load_from / resume checkpoint that does not fit the model is an error
# (CheckpointMatchHook; mmengine only logs it).
custom_imports = dict(imports=['deepmim_mm.seg', 'deepmim_mm.compat.mmengine_checkpoint'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='CheckpointMatchHook')]
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))

pretrained_checkpoint = 'work_dirs/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k/epoch_1600.pth'

model = dict(
    # mmseg's EncoderDecoder would hand `pretrained` to the backbone as a plain (prefix-less)
    # init_cfg; the backbone's init_cfg below is the one that understands our checkpoints.
    pretrained=None,
    backbone=dict(
        type='PretrainedMAE',
        # mmseg's MAE config (the BEiT / MAE segmentation recipe it reproduces): relative
        # position bias and layer scale (init 1.0) added at fine-tune, drop path 0.1, features
        # of blocks 3, 5, 7, 11 (0-indexed) for the feature pyramid.
        init_values=1.0,
        drop_path_rate=0.1,
        out_indices=[3, 5, 7, 11],
        init_cfg=dict(type='Pretrained', checkpoint=pretrained_checkpoint,
                      prefix='backbone.')),
    # Slide inference, 512 crops with stride 341 (mmseg's MAE config).
    test_cfg=dict(mode='slide', crop_size=(512, 512), stride=(341, 341)))

# mmseg's MAE config: AdamW lr 1e-4, wd 0.05, layer decay 0.65, 1500 warm-up iterations then
# poly decay over 160k iterations at batch 16 (8 GPUs x 2). Mixed precision with mmengine's
# AmpOptimWrapper (tools/train.py runs it in fp32 on a machine without a GPU).
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(num_layers=12, layer_decay_rate=0.65),
    constructor='LayerDecayOptimizerConstructor')
fp16 = None  # mmseg 0.x leftover in the base config; AmpOptimWrapper above does mixed precision

# Batch 16 = 8 GPUs x 2 (mmseg's UperNet recipe). Samples are batched as lists (mmseg's
# pseudo_collate; tools/train.py keeps it for default_scope='mmseg').
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
