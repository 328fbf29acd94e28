# ViT-L/16 ImageNet-1K fine-tuning with MAE's ViT-L recipe (facebookresearch/mae FINETUNE.md,
# "Script for ViT-Large": batch 1024, --epochs 50 --blr 1e-3 -> lr 4e-3 --layer_decay 0.75
# --drop_path 0.2; the ViT-B numbers 5e-4 / 0.65 / 100 epochs are its ViT-Base command).
# mmpretrain's benchmark config is that recipe: only the backbone type changes.
_base_ = 'mmpretrain::mae/benchmarks/vit-large-p16_8xb128-coslr-50e_in1k.py'

# The plugin's classification modules and its opt-in fix for loading mmengine checkpoints on
# torch >= 2.6 (deepmim_mm.compat; a no-op where mmengine loads them itself); crash-safe
# checkpoints; a load_from / resume checkpoint that does not fit the model is an error
# (CheckpointMatchHook; mmengine only logs it).
custom_imports = dict(
    imports=['deepmim_mm.classification', 'deepmim_mm.compat.mmengine_checkpoint'],
    allow_failed_imports=False)
custom_hooks = [dict(type='CheckpointMatchHook')]
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))

model = dict(backbone=dict(type='PretrainedVisionTransformer'))
