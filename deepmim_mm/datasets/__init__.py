"""Data loading: bad images and data folders named, and the fast input paths."""
from .crop_transforms import (DecodeCropResize, PackImageBytes, RandomFlipFlag,
                              RandomResizedCropBox, image_bytes_collate)
from .data_preprocessor import DecodeDataPreprocessor
from .fast_paths import apply_fast_path, fast_path_pipeline
from .folders import check_data_folders
from .transforms import LoadImageBytes, LoadImageFromFileChecked

__all__ = [
    'LoadImageFromFileChecked', 'LoadImageBytes', 'RandomResizedCropBox', 'DecodeCropResize',
    'RandomFlipFlag', 'PackImageBytes', 'image_bytes_collate', 'DecodeDataPreprocessor',
    'apply_fast_path', 'fast_path_pipeline', 'check_data_folders'
]
