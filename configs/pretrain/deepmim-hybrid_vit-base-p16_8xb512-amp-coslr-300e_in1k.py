# DeepMIM with hybrid targets (Ren et al., arXiv 2303.08817; described in the paper, not in the
# official code, whose main_pretrain.py declares --hybrid / --teacher_path but never uses them):
# pixel DeepMIM where a frozen, pretrained MAE ViT-B/16 (encoder + decoder) sees the
# same visible patches as the student and reconstructs every patch, x_hat. The target of auxiliary
# level m (blocks 6, 8, 10, 1-indexed) is alpha_m * (norm-pix patches) + (1 - alpha_m) * x_hat;
# the last level (block 12) keeps the raw target. Second-hand (from this project's method notes,
# attributed to the paper but not checked against its tables; the official repository publishes
# no 300-epoch figure): 83.6 top-1 at 300 epochs (pixel DeepMIM 83.4, MAE 82.6).
#
# The teacher is a local file you supply: a pixel MAE ViT-B/16 pretraining checkpoint trained with
# norm_pix=True (its decoder then predicts per-patch normalised pixels, the head's target space),
# e.g. mmpretrain's mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k weights (configs/mae/metafile.yml)
# or a checkpoint of configs/pretrain/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py:
#   python tools/train.py \
#       configs/pretrain/deepmim-hybrid_vit-base-p16_8xb512-amp-coslr-300e_in1k.py \
#       --cfg-options model.target_generator.checkpoint=/path/to/mae_vit-base.pth
# (override model.target_generator.checkpoint, not the `mae_teacher_checkpoint` variable, which is
# substituted when the file is parsed). A DeepMIM pixel checkpoint of this plugin also works (its
# auxiliary decoders are dropped); an MFF one needs target_generator.encoder.fusion_indices. The
# teacher is frozen, costs one extra encoder+decoder forward under no_grad, and is not saved.
_base_ = './deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

# Local path of the teacher's pretraining checkpoint (see the header).
mae_teacher_checkpoint = 'checkpoints/mae/mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.pth'

model = dict(
    target_generator=dict(
        type='MAEHybridTarget',
        checkpoint=mae_teacher_checkpoint,
        # MAE ViT-B/16 (He et al., arXiv 2111.06377; mmpretrain's _base_/models/mae_vit-base-p16.py)
        encoder=dict(type='DeepMIMViT', arch='b', img_size=224, patch_size=16),
        decoder=dict(type='MAEPretrainDecoder', num_patches=196, patch_size=16, in_chans=3,
                     embed_dim=768, decoder_embed_dim=512, decoder_depth=8,
                     decoder_num_heads=16, mlp_ratio=4.),
        # Hybrid targets, second-hand (attributed to the DeepMIM paper, not checked against its
        # text): alpha = 0, 1/3, 2/3 for blocks 6, 8, 10 (1-indexed): the shallower the level,
        # the more of the teacher's reconstruction.
        alphas=(0.0, 1 / 3, 2 / 3),
        # Must equal the student's mask ratio (MAE / DeepMIM: 0.75).
        mask_ratio={{_base_.model.backbone.mask_ratio}}))
