# DeepMIM ViT-L/16 with pixel targets; levels and decoders: our choice, as for ViT-B (README.md).
_base_ = './mae_vit-large-p16_8xb512-amp-coslr-300e_in1k.py'

model = dict(
    backbone=dict(out_indices=[11, 15, 19, 23]),  # ViT-B's relative depths
    neck=dict(decoder_depth=4))
