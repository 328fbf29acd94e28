# DeepMIM ViT-L/16 with pixel targets. The paper publishes no block choice for ViT-L: these are
# ViT-B's relative depths (1/2, 2/3, 5/6 of the depth, plus the last block; arXiv 2303.08817).
_base_ = './mae_vit-large-p16_8xb512-amp-coslr-800e_in1k.py'

model = dict(
    backbone=dict(out_indices=[11, 15, 19, 23]),
    # This project's choice, as for ViT-B: 4-block decoders for every level, the last included
    # (the official DeepMIM-CLIP code's ViT-B depth; MAE's ViT-L decoder has 8 blocks).
    neck=dict(decoder_depth=4))
