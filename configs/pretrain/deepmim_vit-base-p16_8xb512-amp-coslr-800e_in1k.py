# DeepMIM with pixel targets (Ren et al., arXiv 2303.08817): MAE plus deep supervision of blocks
# 6, 8 and 10 (1-indexed) and the last block, each with its own light decoder. The paper reports
# 84.2 top-1 fine-tuned at 1600 epochs (MAE: 83.6).
_base_ = './mae_vit-base-p16_8xb512-amp-coslr-800e_in1k.py'

model = dict(
    # DeepMIM official code: outputs of blocks 5, 7, 9 (0-indexed, raw) and 11 (after the final norm).
    backbone=dict(out_indices=[5, 7, 9, 11]),
    # DeepMIM official code: every decoder has 4 blocks, 512-d, 16 heads (MAE's decoder has 8).
    neck=dict(decoder_depth=4))
