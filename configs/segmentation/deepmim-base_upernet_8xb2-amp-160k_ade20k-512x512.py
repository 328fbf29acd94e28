# UperNet on ADE20K with a ViT-B/16 pretrained by this plugin, fine-tuned with the official DeepMIM
# segmentation recipe: OliverRensu/DeepMIM Segmentation/configs/mae/
# upernet_mae_base_12_512_slide_160k_ade20k.py (AdamW lr 5e-5, weight decay 0.05, layer decay
# 0.9; otherwise the MAE/BEiT UperNet recipe) and its log Segmentation/log/DeepMIM-Seg.log (53.05
# mIoU at 160k iterations; paper: 53.1). Both are published for the DeepMIM-CLIP ViT-B 1600-epoch
# checkpoint (Segmentation/README.md, "Fine-tuning with DeepMIM-CLIP": DeepMIM-CLIP-PT.pth);
# using them for other checkpoints is this project's choice. Same model, data and schedule as the
# MAE recipe (mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py: 160k iterations, batch 16, crop
# 512, blocks 3/5/7/11, relative position bias, drop path 0.1, slide inference, as the official
# config); only the learning rate and the layer decay change.
#
# The pretraining checkpoint: set it on the command line (the variable below is only the default;
# mmengine resolves it when the file is read, so override the field itself):
#   tools/dist_train.sh \
#       configs/segmentation/deepmim-base_upernet_8xb2-amp-160k_ade20k-512x512.py 8 --cfg-options \
#       model.backbone.init_cfg.checkpoint=work_dirs/<pretrain>/epoch_1600.pth
_base_ = './mae-base_upernet_8xb2-amp-160k_ade20k-512x512.py'

pretrained_checkpoint = 'work_dirs/deepmim_vit-base-p16_8xb512-amp-coslr-1600e_in1k/epoch_1600.pth'

model = dict(backbone=dict(init_cfg=dict(checkpoint=pretrained_checkpoint)))

optim_wrapper = dict(
    # Official DeepMIM-CLIP ADE20K config (upernet_mae_base_12_512_slide_160k_ade20k.py): AdamW
    # lr 5e-5 (MAE: 1e-4) and layer decay 0.9 (MAE: 0.65); weight decay 0.05 in both.
    optimizer=dict(lr=5e-5),
    paramwise_cfg=dict(layer_decay_rate=0.9))
