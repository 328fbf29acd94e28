# ViT-L/16 linear probing with MAE's protocol (MAE paper, arXiv 2111.06377, Table 10; 90 epochs,
# frozen backbone, BN neck on the class token); mmpretrain's ViT-L benchmark config with the
# checked backbone. For MAE and DeepMIM checkpoints alike.
_base_ = 'mmpretrain::mae/benchmarks/vit-large-p16_8xb2048-linear-coslr-90e_in1k.py'

# The plugin's classification modules and its opt-in fix for loading mmengine checkpoints on
# torch >= 2.6 (deepmim_mm.compat; a no-op where mmengine loads them itself); crash-safe checkpoints.
custom_imports = dict(imports=['deepmim_mm.classification', 'deepmim_mm.compat.mmengine_checkpoint'],
                      allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))

model = dict(backbone=dict(type='PretrainedVisionTransformer'))
