# Ablation (our choice): MAE plus 4-block auxiliary decoders only, MAE's 8-block final decoder kept.
_base_ = './mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

model = dict(
    backbone=dict(out_indices=[5, 7, 9, 11]),  # blocks 6, 8, 10, 12 as the DeepMIM configs
    neck=dict(decoder_depth=8, aux_decoder_depth=4))  # MAE's / official DeepMIM-CLIP depths
