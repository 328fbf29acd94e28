# Ablation: DeepMIM's deep supervision and nothing else on top of MAE (this project's config, not a
# published recipe). The final level keeps MAE's own decoder (8 blocks, 512-d, 16 heads: MAE, arXiv
# 2111.06377; mmpretrain's mae_vit-base-p16 model, loadable from its checkpoints) and only the
# auxiliary levels of blocks 6, 8 and 10 (1-indexed) get 4-block decoders, the depth of the
# official DeepMIM-CLIP code (OliverRensu/DeepMIM models_mae.py, decoder_depth=4). Compare with
#   mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py     (no auxiliary levels)
#   deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k.py (also a 4-block final decoder)
# Data, schedule, optimizer and loss are MAE's 300-epoch recipe, inherited unchanged.
_base_ = './mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

model = dict(
    # Blocks 6, 8, 10 raw and 12 after the final norm (1-indexed), as the other DeepMIM configs.
    backbone=dict(out_indices=[5, 7, 9, 11]),
    neck=dict(decoder_depth=8, aux_decoder_depth=4))
