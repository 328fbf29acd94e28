# DeepMIM-CLIP (arXiv 2303.08817), the official code's recipe (OliverRensu/DeepMIM; README.md
# lists the sources). The CLIP weights are a local file you supply:
#   --cfg-options model.target_generator.checkpoint=/path/to/ViT-B-16.pt
_base_ = './deepmim_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'

clip_checkpoint = 'checkpoints/clip/ViT-B-16.pt'

model = dict(
    neck=dict(predict_feature_dim=512),  # official models_mae.py: decoder_pred -> 512
    head=dict(
        norm_pix=False,  # feature targets are used as they are
        loss=dict(_delete_=True, type='CosineFeatureLoss')),  # official forward_loss: 2 - 2 cos
    # Official main_pretrain.py / engine_pretrain.py: OpenAI CLIP ViT-B/16 image tower at 224 px.
    target_generator=dict(
        type='CLIPTeacher', checkpoint=clip_checkpoint, arch='ViT-B/16', img_size=224))

# Official main_pretrain.py (timm add_weight_decay, no skip list): no decay for 1-D parameters only.
optim_wrapper = dict(paramwise_cfg=dict(_delete_=True, flat_decay_mult=0.0))
