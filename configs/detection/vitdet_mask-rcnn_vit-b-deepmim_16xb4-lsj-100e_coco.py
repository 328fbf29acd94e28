# Mask R-CNN ViTDet-style on COCO with a DeepMIM ViT-B/16: ViTDet's MAE ViT-B recipe unchanged
# (our choice: DeepMIM published none; README.md).
# Set model.backbone.init_cfg.checkpoint=PRETRAIN.pth
_base_ = './vitdet_mask-rcnn_vit-b-mae_16xb4-lsj-100e_coco.py'

pretrained_checkpoint = 'work_dirs/deepmim_vit-base-p16_8xb512-amp-coslr-1600e_in1k/epoch_1600.pth'

model = dict(backbone=dict(init_cfg=dict(checkpoint=pretrained_checkpoint)))
