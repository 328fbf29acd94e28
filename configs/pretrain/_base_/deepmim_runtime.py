# What every pretraining config of this plugin adds to mmpretrain's runtime: the plugin's import,
# its opt-in fix for loading mmengine checkpoints on torch >= 2.6 (deepmim_mm.compat; it does
# nothing where mmengine loads them itself), and its training hooks. The first hook is off by
# default; switch it on with
#   --cfg-options custom_hooks.0.enable=True  (and custom_hooks.0.interval=N)
# (Leaves that inherit an mmpretrain:: config directly also select the AtomicCheckpointHook in
# default_hooks: mmengine allows no key in two bases.)
custom_imports = dict(imports=['deepmim_mm', 'deepmim_mm.compat.mmengine_checkpoint'],
                      allow_failed_imports=False)

custom_hooks = [
    # Per-level reconstruction figures through the runner's visualizer (vis_backends).
    dict(type='DeepMIMReconstructionHook', enable=False, interval=1000, num_images=4),
    # Torch / numpy / python RNG states in every checkpoint: exact mid-epoch resume.
    dict(type='RNGStateHook'),
    # Stop at the first non-finite loss, naming the level and iteration (AMP: let the loss
    # scaler skip the step first).
    dict(type='NonFiniteLossHook'),
    # A load_from / resume checkpoint of another architecture is an error, not a warning.
    dict(type='CheckpointMatchHook'),
    # kNN top-1 of every supervised level on a small labelled folder (train/ and val/ class
    # subfolders), every epoch when switched on:
    #   --cfg-options custom_hooks.4.enable=True custom_hooks.4.data_root=/path/to/subset
    dict(type='KNNMonitorHook', enable=False, data_root=None),
]

# mmpretrain 1.2.0's MAE and MFF train pipelines (configs/_base_/datasets/imagenet_bs512_mae.py;
# configs/mff/mff_vit-base-p16_8xb512-amp-coslr-300e_in1k.py), unchanged except for the loader:
# LoadImageFromFileChecked names a file it cannot decode (mmcv's LoadImageFromFile gives a bare
# cv2.error for an empty one), or skips it with on_corrupt='skip'. The leaves that inherit an
# mmpretrain:: config directly select them (tests/test_configs.py compares them with mmpretrain's).
checked_mae_train_pipeline = [
    dict(type='LoadImageFromFileChecked'),
    dict(type='RandomResizedCrop', scale=224, crop_ratio_range=(0.2, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs')
]
checked_mff_train_pipeline = [
    dict(type='LoadImageFromFileChecked'),
    dict(type='ToPIL', to_rgb=True),
    dict(type='torchvision/Resize', size=224),
    dict(type='torchvision/RandomCrop', size=224, padding=4, padding_mode='reflect'),
    dict(type='torchvision/RandomHorizontalFlip', p=0.5),
    dict(type='ToNumpy', to_bgr=True),
    dict(type='PackInputs')
]
