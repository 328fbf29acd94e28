# ViT-S/16 (DeiT-S widths: arch 'deit-s', 384-d, 12 blocks, 6 heads) ImageNet-1K fine-tuning with
# the official DeepMIM fine-tuning command (OliverRensu/DeepMIM README.md: base lr 1e-4, layer
# decay 0.6, 100 epochs), published for DeepMIM-CLIP ViT-B; ViT-S has the same depth, so the
# layer decay carries over unchanged (this project's choice; DeepMIM published no ViT-S recipe).
_base_ = './vit-base-p16_deepmim-pre_8xb128-coslr-100e_in1k.py'

model = dict(
    backbone=dict(arch='deit-s'),
    head=dict(in_channels=384))
