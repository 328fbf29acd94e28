# ViT-S/16 (DeiT-S widths: arch 'deit-s', 384-d, 12 blocks, 6 heads) ImageNet-1K fine-tuning with
# DeepMIM's recipe (DeepMIM paper, arXiv 2303.08817: base lr 1e-4, layer decay 0.6, 100 epochs,
# published for ViT-B; ViT-S has the same depth, so the layer decay carries over unchanged).
_base_ = './vit-base-p16_deepmim-pre_8xb128-coslr-100e_in1k.py'

model = dict(
    backbone=dict(arch='deit-s'),
    head=dict(in_channels=384))
