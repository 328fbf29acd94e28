# MFF (arXiv 2308.00261) at 1600 epochs: the 800-epoch recipe with the 1600-epoch schedule of
# mmpretrain's mae_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py (40 warm-up epochs, cosine to 0).
# mmpretrain ships no 1600e MFF config and MFF published none: this project's choice.
_base_ = './mff_vit-base-p16_8xb512-amp-coslr-800e_in1k.py'

param_scheduler = [
    dict(type='LinearLR', start_factor=0.0001, by_epoch=True, begin=0, end=40,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=1560, by_epoch=True, begin=40, end=1600,
         convert_to_iter_based=True)
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1600)
