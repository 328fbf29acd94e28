# ViT-L/16 linear probing with MAE's protocol (facebookresearch/mae FINETUNE.md, "Linear
# Probing"; frozen backbone, BN neck on the class token; 90 epochs as mmpretrain's ViT-L benchmark
# config, where FINETUNE.md says 50 suffice for ViT-L), with the checked backbone. For MAE and
# DeepMIM checkpoints; the crop differs from MAE's main_linprobe.py as in the ViT-B config.
_base_ = 'mmpretrain::mae/benchmarks/vit-large-p16_8xb2048-linear-coslr-90e_in1k.py'

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
