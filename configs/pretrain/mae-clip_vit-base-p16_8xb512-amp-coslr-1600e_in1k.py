# MAE-CLIP, DeepMIM-CLIP's single-level baseline (arXiv 2303.08817; recipe: DeepMIM-CLIP's, our
# choice). Set model.target_generator.checkpoint as in the parent config.
_base_ = './deepmim-clip_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'

model = dict(backbone=dict(out_indices=[11]))  # the last block (0-indexed) only
