# Mask R-CNN on COCO with a plain ViT-B/16 backbone pretrained by this plugin (MAE, DeepMIM or MFF
# checkpoint), ViTDet style, with ViTDet's recipe for MAE ViT-B (Li et al., "Exploring Plain
# Vision Transformer Backbones for Object Detection", arXiv 2203.16527; its numbers are those of
# detectron2's projects/ViTDet/configs/COCO/mask_rcnn_vitdet_b_100ep.py, which mmdetection's
# projects/ViTDet (configs/vitdet_mask-rcnn_vit-b-mae_lsj-100e.py, lsj-100e_coco-instance.py)
# reproduces at 51.6 box AP / 45.7 mask AP for MAE ViT-B).
#
# The pretraining checkpoint: set it on the command line (the variable below is only the default;
# mmengine resolves it when the file is read, so override the field itself):
#   tools/dist_train.sh configs/detection/vitdet_mask-rcnn_vit-b-mae_16xb4-lsj-100e_coco.py 16 \
#       --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/<pretrain>/epoch_1600.pth
# The log then reports every checkpoint key loaded, dropped (class token, final norm, decoders,
# MFF fusion, teacher) or new (relative positions). As in ViTDet, the position embedding keeps the
# pretraining grid (14x14 at 224) and is interpolated to the input's grid (64x64 at 1024) at every
# forward.
# Data: COCO 2017 in mmdet's layout under data/coco/ (override the dataloaders' data_root and
# val_evaluator.ann_file / test_evaluator.ann_file).
# The backbone (PlainViT), the pyramid (SimpleFPN), 'LN2d' and the layer-decay constructor are
# registered in mmdet by deepmim_mm.det: mmdet's wheel has no projects/ViTDet.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/default_runtime.py',
]

# The plugin's det modules and its opt-in fix for loading mmengine checkpoints on
# torch >= 2.6 (deepmim_mm.compat; a no-op where mmengine loads them itself); crash-safe
# checkpoints; a load_from / resume checkpoint that does not fit the model is an error
# (CheckpointMatchHook; mmengine only logs it).
custom_imports = dict(imports=['deepmim_mm.det', 'deepmim_mm.compat.mmengine_checkpoint'],
                      allow_failed_imports=False)
custom_hooks = [dict(type='CheckpointMatchHook')]

pretrained_checkpoint = 'work_dirs/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k/epoch_1600.pth'

# ViTDet (arXiv 2203.16527): 1024x1024 inputs, large-scale jitter.
image_size = (1024, 1024)
# ViTDet: LayerNorm in the pyramid and in the RoI heads' convs ("LN" in detectron2's config).
norm_cfg = dict(type='LN2d', eps=1e-6, requires_grad=True)

model = dict(
    data_preprocessor=dict(
        pad_size_divisor=32,
        batch_augments=[dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]),
    backbone=dict(
        _delete_=True,
        type='PlainViT',
        # ViT-B: 12 blocks of 768; ViTDet: window attention 14x14, global attention in blocks
        # 2, 5, 8, 11 (arch 'base' of mmpretrain's ViTSAM), decomposed relative positions,
        # drop path 0.1.
        arch='base',
        img_size=image_size[0],
        pretrain_img_size=224,  # ViTDet (projects/ViTDet/vit.py): MAE's 224-px pretraining
        patch_size=16,
        window_size=14,
        use_rel_pos=True,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained_checkpoint,
                      prefix='backbone.')),
    neck=dict(
        _delete_=True,
        type='SimpleFPN',
        backbone_channel=768,
        in_channels=[192, 384, 768, 768],
        out_channels=256,
        num_outs=5,
        norm_cfg=norm_cfg),
    # ViTDet: 2 convs in the RPN head, 4 convs + 1 fc box head, normed mask head.
    rpn_head=dict(num_convs=2),
    roi_head=dict(
        bbox_head=dict(type='Shared4Conv1FCBBoxHead', conv_out_channels=256,
                       norm_cfg=norm_cfg),
        mask_head=dict(norm_cfg=norm_cfg)))

backend_args = None
# ViTDet large-scale jitter: resize by 0.1-2.0 of 1024, crop 1024, flip, pad to 1024.
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size,
         recompute_bbox=True, allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs'),
]
# Test on the same 1024x1024 canvas (ViTDet); PadKeepImgShape (deepmim_mm.det) pads like mmdet's
# Pad but keeps img_shape at the image's size, so boxes are clipped to the image, not the canvas.
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='PadKeepImgShape', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
# ViTDet: batch 64 = 16 GPUs x 4 images. Samples are batched as lists (mmdet's pseudo_collate;
# tools/train.py keeps it for default_scope='mmdet').
train_dataloader = dict(
    batch_size=4,
    num_workers=8,
    batch_sampler=None,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# detectron2's mask_rcnn_vitdet_b_100ep.py (common/optim.py AdamW): lr 1e-4, betas (0.9, 0.999),
# weight decay 0.1, layer-wise lr decay 0.7 for ViT-B; no weight decay on norms
# (weight_decay_norm 0) and on the absolute position embedding (overrides pos_embed); biases
# are decayed there (mmdetection's projects/ViTDet constructor exempts them). Mixed precision
# (tools/train.py runs it in fp32 on a machine without a GPU).
optim_wrapper = dict(
    type='AmpOptimWrapper',
    constructor='ViTLayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.7,
        norm_decay_mult=0.,
        custom_keys={'backbone.pos_embed': dict(decay_mult=0.)}),
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1))

# ViTDet: 100 epochs = 184,375 iterations at batch 64 on COCO train2017 (118k images); 250
# warm-up iterations; lr x0.1 at 88 and 96 epochs (163,889 and 177,546 iterations).
max_iters = 184375
interval = 5000
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(type='MultiStepLR', begin=0, end=max_iters, by_epoch=False,
         milestones=[163889, 177546], gamma=0.1),
]
train_cfg = dict(
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=interval,
    dynamic_intervals=[(max_iters // interval * interval + 1, max_iters)])
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50),
    checkpoint=dict(type='AtomicCheckpointHook', by_epoch=False, save_last=True, interval=interval,
                    max_keep_ckpts=5))
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)

auto_scale_lr = dict(base_batch_size=64)
