"""The fast paths' transforms: crop and flip drawn before decoding, crop-aware decoding, packing."""
from typing import Sequence, Union

import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform, RandomFlip
from mmengine.dataset import default_collate
from mmengine.registry import FUNCTIONS
from mmpretrain.datasets.transforms import PackInputs, RandomResizedCrop
from mmpretrain.registry import TRANSFORMS

from .image_codec import JPEG_FORMATS, PIL_FILTERS, dct_scale, decode_crop_resize
from .transforms import check_on_corrupt, corrupt_image

BYTES_META_KEYS = PackInputs.DEFAULT_META_KEYS + ('crop_box', 'interpolation', 'img_format',
                                                  'img_mode', 'img_orientation')


@TRANSFORMS.register_module()
class RandomResizedCropBox(RandomResizedCrop):
    """mmpretrain's ``RandomResizedCrop`` that only draws the box: sets ``crop_box`` (top, left,
    height, width), ``img_shape`` (the output size) and ``interpolation``; Pillow backend only."""

    def __init__(self, *args, backend: str = 'pillow', **kwargs) -> None:
        if backend != 'pillow':
            raise ValueError(f"{type(self).__name__}: backend={backend!r}; accepted: 'pillow' "
                             '(the crop is resized with Pillow\'s filters)')
        super().__init__(*args, backend=backend, **kwargs)
        if self.interpolation not in PIL_FILTERS:
            raise ValueError(f'{type(self).__name__}: interpolation={self.interpolation!r}; '
                             f'accepted: {sorted(PIL_FILTERS)}')

    def transform(self, results: dict) -> dict:
        h, w = results['img_shape'][:2]
        # rand_crop_params reads img.shape[:2] only: an empty array of that shape stands in
        results['crop_box'] = tuple(
            int(v) for v in self.rand_crop_params(np.empty((h, w, 0), np.uint8)))
        results['img_shape'] = tuple(self.scale)
        results['interpolation'] = self.interpolation
        return results


@TRANSFORMS.register_module()
class DecodeCropResize(BaseTransform):
    """Crop-aware decoding on the CPU (after ``RandomResizedCropBox``): ``img_bytes`` decoded only
    as finely as ``crop_box`` needs, then cropped and resized to a BGR ``img`` of ``img_shape``;
    at DCT scale 1, the standard pipeline's operations bit for bit."""

    def __init__(self, channel_order: str = 'bgr', on_corrupt: str = 'error') -> None:
        if channel_order not in ('bgr', 'rgb'):
            raise ValueError(f"DecodeCropResize: channel_order={channel_order!r}; accepted: "
                             "['bgr', 'rgb']")
        self.channel_order = channel_order
        self.on_corrupt = check_on_corrupt(on_corrupt, 'DecodeCropResize')

    def transform(self, results: dict) -> Union[dict, None]:
        box, out_hw = results['crop_box'], results['img_shape']
        scale = dct_scale(box[2:], out_hw) if results.get('img_format') in JPEG_FORMATS else 1
        data, interpolation = results['img_bytes'], results['interpolation']
        try:
            if scale == 1:  # the standard pipeline's cv2 decode, crop and Pillow resize
                img = mmcv.imfrombytes(data, flag='color', backend='cv2')
                if img is None:
                    raise ValueError('the decoder returned no image')
                top, left, h, w = box
                img = mmcv.imresize(img[top:top + h, left:left + w], tuple(out_hw[::-1]),
                                    interpolation=interpolation, backend='pillow')
            else:
                img = np.asarray(decode_crop_resize(data, box, out_hw, interpolation)[0])[..., ::-1]
        except Exception as e:  # truncated or corrupt data behind a valid header
            corrupt_image(results['img_path'], e, self.on_corrupt, 'DecodeCropResize')
            return None
        results['img'] = img[..., ::-1] if self.channel_order == 'rgb' else img
        del results['img_bytes']
        return results


@TRANSFORMS.register_module()
class RandomFlipFlag(RandomFlip):
    """mmcv's ``RandomFlip`` that only draws and records ``flip`` and ``flip_direction``: the
    image is flipped on the device (``DecodeDataPreprocessor``)."""

    def transform(self, results: dict) -> dict:
        results['img'] = np.empty((1, 1, 0), np.uint8)  # upstream flips an image: a stand-in
        results = super().transform(results)
        del results['img']
        return results


@TRANSFORMS.register_module()
class PackImageBytes(PackInputs):
    """mmpretrain's ``PackInputs`` whose ``inputs`` is the encoded file (``img_bytes``), with the
    ``BYTES_META_KEYS`` the device path's data preprocessor reads."""

    def __init__(self, input_key: str = 'img_bytes', meta_keys: Sequence[str] = BYTES_META_KEYS,
                 **kwargs) -> None:
        super().__init__(input_key=input_key, meta_keys=meta_keys, **kwargs)

    @staticmethod
    def format_input(input_):
        if isinstance(input_, (bytes, bytearray, memoryview)):
            return bytes(input_)
        return PackInputs.format_input(input_)


@FUNCTIONS.register_module()
def image_bytes_collate(data_batch: Sequence[dict]) -> dict:
    """mmengine's ``default_collate``, with the batch's encoded files joined into one uint8
    tensor: ``inputs = dict(data=<all bytes>, offsets=<B + 1 ends>)``."""
    batch = default_collate(data_batch)
    files = batch['inputs']
    data = np.concatenate([np.frombuffer(f, np.uint8) for f in files])
    offsets = np.cumsum([0] + [len(f) for f in files], dtype=np.int64)
    batch['inputs'] = dict(data=torch.from_numpy(data), offsets=torch.from_numpy(offsets))
    return batch
