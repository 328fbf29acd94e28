# Mask R-CNN on COCO with a ViT-B/16 pretrained by DeepMIM with this plugin, ViTDet style.
# The DeepMIM paper (arXiv 2303.08817) reports 52.8 box AP on COCO for DeepMIM-CLIP ViT-B; the
# official repository (OliverRensu/DeepMIM) has no detection code or recipe, so this config uses
# ViTDet's recipe for MAE ViT-B unchanged (this project's choice; detectron2
# projects/ViTDet/configs/COCO/mask_rcnn_vitdet_b_100ep.py, as mmdetection's projects/ViTDet:
# window attention 14 + global blocks 2/5/8/11 (0-indexed), simple feature pyramid with LayerNorm,
# LSJ 1024, AdamW lr 1e-4 wd 0.1, layer decay 0.7, 100 epochs = 184,375 iterations at batch 64):
# see vitdet_mask-rcnn_vit-b-mae_16xb4-lsj-100e_coco.py.
#
# The pretraining checkpoint: set it on the command line (the variable below is only the default;
# mmengine resolves it when the file is read, so override the field itself):
#   tools/dist_train.sh configs/detection/vitdet_mask-rcnn_vit-b-deepmim_16xb4-lsj-100e_coco.py \
#       16 --cfg-options model.backbone.init_cfg.checkpoint=work_dirs/<pretrain>/epoch_1600.pth
_base_ = './vitdet_mask-rcnn_vit-b-mae_16xb4-lsj-100e_coco.py'

pretrained_checkpoint = 'work_dirs/deepmim_vit-base-p16_8xb512-amp-coslr-1600e_in1k/epoch_1600.pth'

model = dict(backbone=dict(init_cfg=dict(checkpoint=pretrained_checkpoint)))
