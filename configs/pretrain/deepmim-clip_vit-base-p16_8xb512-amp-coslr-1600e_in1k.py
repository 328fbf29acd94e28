# DeepMIM-CLIP (Ren et al., arXiv 2303.08817), the recipe of the official code
# (github.com/OliverRensu/DeepMIM, main_pretrain.py / models_mae.py / engine_pretrain.py): every
# supervised level (blocks 6, 8, 10 and 12, 1-indexed) reconstructs the patch tokens of a frozen
# OpenAI CLIP ViT-B/16 image tower (ln_post @ proj, 512-d, CLS dropped) computed on the unmasked
# crop, scored with 2 - 2 cos on the masked tokens. Reported: 85.6 top-1 fine-tuned on ImageNet-1K,
# 53.1 mIoU on ADE20K.
#
# The CLIP weights are a local file you supply (nothing is downloaded). Point the config to it:
#   python tools/train.py \
#       configs/pretrain/deepmim-clip_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py \
#       --cfg-options model.target_generator.checkpoint=/path/to/ViT-B-16.pt
# (override model.target_generator.checkpoint: the `clip_checkpoint` variable below is substituted
# when the file is parsed, so overriding the variable itself has no effect). Accepted: OpenAI's
# ViT-B-16.pt (TorchScript archive), a state dict with visual.* keys (what the official code loads),
# an open_clip state dict (.bin/.pt/.safetensors). The teacher is frozen, runs under AMP and is not
# saved in the training checkpoints.
#
# Inherited from DeepMIM / MAE, each equal to the official DeepMIM-CLIP recipe:
# - blocks 5, 7, 9 (raw) and 11 (after the final norm), 0-indexed; 4-block, 512-d, 16-head
#   decoders, one per level (official models_mae.py: forward_encoder, decoder_depth=4);
# - one random 75% mask shared by every level (official README: --mask_ratio 0.75);
# - batch 4096 = 8 GPUs x 512 (official: 128/GPU x 32 V100, README), AdamW betas (0.9, 0.95)
#   (main_pretrain.py), weight decay 0.05, lr 1.5e-4 x 4096 / 256 = 2.4e-3 (README:
#   --blr 1.5e-4 --weight_decay 0.05), 40 linear warm-up epochs then cosine to 0 (README:
#   --warmup_epochs 40; main_pretrain.py: min_lr 0), 1600 epochs (README: --epochs 1600);
# - RandomResizedCrop(224, scale 0.2-1, bicubic) + horizontal flip only (main_pretrain.py), AMP.
# Changed here to follow the official code: which parameters are decayed (optim_wrapper below).
_base_ = './deepmim_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'

# Local path of the OpenAI CLIP ViT-B/16 weights (see the header).
clip_checkpoint = 'checkpoints/clip/ViT-B-16.pt'

model = dict(
    # Official models_mae.py: every decoder predicts the 512-d CLIP token (decoder_pred -> 512).
    neck=dict(predict_feature_dim=512),
    head=dict(
        norm_pix=False,  # feature targets are used as they are
        # Official models_mae.py forward_loss: L2-normalise both, 2 - 2 cos, mean over masked.
        loss=dict(_delete_=True, type='CosineFeatureLoss')),
    # Official main_pretrain.py / engine_pretrain.py: OpenAI CLIP ViT-B/16 image tower at 224 px,
    # images re-normalised from ImageNet to CLIP statistics, run under no_grad in AMP.
    target_generator=dict(
        type='CLIPTeacher', checkpoint=clip_checkpoint, arch='ViT-B/16', img_size=224))

# Official main_pretrain.py: timm 0.3.2's optim_factory.add_weight_decay(model, 0.05) with no skip
# list, i.e. no weight decay only for 1-D parameters (norm weights, biases): cls_token and every
# level's mask token ARE decayed. mmpretrain's MAE rule, which the pixel configs inherit, exempts
# them (custom_keys cls_token / mask_token). flat_decay_mult=0 is timm's rule in mmengine terms.
# (pos_embed and the decoders' position embeddings are fixed sin-cos, not trained, in both.)
optim_wrapper = dict(paramwise_cfg=dict(_delete_=True, flat_decay_mult=0.0))
