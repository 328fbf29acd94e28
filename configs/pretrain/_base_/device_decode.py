# The fast input paths, as pieces a pretraining config switches to. mmengine does not allow two
# _base_ files to define the same key, so this file only defines new names, and the config that
# uses it points its pipeline, collate function and data preprocessor at them (3 lines):
#
#   _base_ = ['./deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k.py', './_base_/device_decode.py']
#   train_dataloader = dict(collate_fn=dict(_delete_=True, type='image_bytes_collate'),
#                           dataset=dict(pipeline={{_base_.device_decode_pipeline}}))
#   model = dict(data_preprocessor={{_base_.device_decode_preprocessor}})
#
# (a config whose dataset is wrapped, e.g. RepeatDataset, sets dataset.dataset.pipeline). The
# crop-aware CPU path changes the pipeline only:
#   train_dataloader = dict(dataset=dict(pipeline={{_base_.crop_aware_pipeline}}))
#
# Both keep mmpretrain's MAE recipe unchanged (configs/_base_/datasets/imagenet_bs512_mae.py in
# mmpretrain: RandomResizedCrop(224, scale 0.2-1, bicubic, Pillow), horizontal flip with p=0.5,
# ImageNet mean/std, BGR->RGB), and the same np.random draws in the same order, so a run gives
# the crops and flips the standard pipeline gives with the same seed.
_rrc = dict(scale=224, crop_ratio_range=(0.2, 1.0), backend='pillow', interpolation='bicubic')

# Device path: the workers read the file and its header, draw the crop box and the flip; the data
# preprocessor decodes (nvJPEG through TorchCodec on a GPU), crops, resizes, flips and normalises
# the batch on the model's device.
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

# Crop-aware CPU path: the crop box is drawn from the header's size first, and a JPEG is decoded
# only at the DCT scale (1/2, 1/4, 1/8) the crop needs; same data preprocessor as the standard one.
crop_aware_pipeline = [
    dict(type='LoadImageBytes'),
    dict(type='RandomResizedCropBox', **_rrc),
    dict(type='DecodeCropResize'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
