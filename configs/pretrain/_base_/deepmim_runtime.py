# The plugin's additions to mmpretrain's runtime, shared by every pretraining config (README.md,
# "Configs": why leaves inheriting an mmpretrain:: config also set a few keys themselves).
custom_imports = dict(imports=['deepmim_mm', 'deepmim_mm.compat.mmengine_checkpoint'],
                      allow_failed_imports=False)

custom_hooks = [
    dict(type='DeepMIMReconstructionHook', enable=False, interval=1000, num_images=4),
    dict(type='RNGStateHook'),
    dict(type='NonFiniteLossHook'),
    dict(type='CheckpointMatchHook'),
    dict(type='KNNMonitorHook', enable=False, data_root=None),
]

# mmpretrain 1.2.0's MAE and MFF train pipelines with the checked image loader.
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
