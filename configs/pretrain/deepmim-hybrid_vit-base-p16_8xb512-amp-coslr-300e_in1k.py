# DeepMIM with hybrid targets (arXiv 2303.08817, paper only: not in the official code). The MAE
# teacher is a local norm-pix pretraining checkpoint you supply (README.md):
#   --cfg-options model.target_generator.checkpoint=/path/to/mae_vit-base.pth
_base_ = './deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

mae_teacher_checkpoint = 'checkpoints/mae/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.pth'

model = dict(
    target_generator=dict(
        type='MAEHybridTarget',
        checkpoint=mae_teacher_checkpoint,
        # MAE ViT-B/16 (arXiv 2111.06377; mmpretrain's _base_/models/mae_vit-base-p16.py)
        encoder=dict(type='DeepMIMViT', arch='b', img_size=224, patch_size=16),
        decoder=dict(type='MAEPretrainDecoder', num_patches=196, patch_size=16, in_chans=3,
                     embed_dim=768, decoder_embed_dim=512, decoder_depth=8,
                     decoder_num_heads=16, mlp_ratio=4.),
        alphas=(0.0, 1 / 3, 2 / 3),  # blocks 6, 8, 10: second-hand, attributed to the paper
        mask_ratio={{_base_.model.backbone.mask_ratio}}))  # must equal the student's
