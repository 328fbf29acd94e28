# The fast input paths as new names a config points its pipeline, collate function and data
# preprocessor at (README.md, "Fast input paths"); mmpretrain's MAE crop and flip, same draws.
_rrc = dict(scale=224, crop_ratio_range=(0.2, 1.0), backend='pillow', interpolation='bicubic')

# Device path: workers read the bytes, draw crop and flip; the preprocessor decodes on the device.
device_decode_pipeline = [
    dict(type='LoadImageBytes'),
    dict(type='RandomResizedCropBox', **_rrc),
    dict(type='RandomFlipFlag', prob=0.5),
    dict(type='PackImageBytes'),
]
device_decode_preprocessor = dict(
    type='DecodeDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

# Crop-aware CPU path: a JPEG is decoded only at the DCT scale the crop needs.
crop_aware_pipeline = [
    dict(type='LoadImageBytes'),
    dict(type='RandomResizedCropBox', **_rrc),
    dict(type='DecodeCropResize'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
