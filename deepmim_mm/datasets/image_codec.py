"""What an encoded image's header says, and Pillow decoding: full, or crop-aware at a DCT scale."""
import io
import math
from typing import Sequence, Tuple

import numpy as np
from mmcv.image.geometric import pillow_interp_codes as PIL_FILTERS  # mmcv.imresize's filters
from PIL import ExifTags, Image, ImageOps

JPEG_FORMATS = ('JPEG', 'MPO')  # Pillow names a JPEG with a multi-picture segment 'MPO'


def read_header(data: bytes) -> dict:
    """The ``results`` keys the header of ``data`` gives: ``img_shape`` (EXIF orientation applied,
    as cv2 and TorchCodec decode), ``img_format``, ``img_mode``, ``img_orientation`` (1: none).
    Raises Pillow's error for data that is not an image, ``ValueError`` for no data."""
    if not data:
        raise ValueError('the file is empty (0 bytes)')
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
        orientation = _exif_orientation(im)
        if orientation >= 5:  # transposing orientations
            width, height = height, width
        return dict(img_shape=(height, width), img_format=im.format or '', img_mode=im.mode,
                    img_orientation=orientation)


def dct_scale(box_hw: Sequence[int], out_hw: Sequence[int]) -> int:
    """The largest libjpeg DCT scale (8, 4, 2 or 1) at which a crop of ``box_hw`` (height, width)
    pixels still has at least ``out_hw`` pixels in both directions."""
    for s in (8, 4, 2, 1):  # the downscaling factors libjpeg decodes at directly
        if box_hw[0] >= out_hw[0] * s and box_hw[1] >= out_hw[1] * s:
            return s
    return 1


def _exif_orientation(im: Image.Image) -> int:
    if im.format not in JPEG_FORMATS:
        return 1  # cv2 applies the EXIF orientation of JPEGs only
    orientation = int(im.getexif().get(ExifTags.Base.Orientation, 1) or 1)
    return orientation if 1 <= orientation <= 8 else 1


def _oriented_rgb(im: Image.Image, orientation: int) -> Image.Image:
    im = im if orientation == 1 else ImageOps.exif_transpose(im)
    return im if im.mode == 'RGB' else im.convert('RGB')


def decode_rgb(data: bytes) -> np.ndarray:
    """Full decode with Pillow: an RGB ``(H, W, 3)`` uint8 array, EXIF orientation applied (as
    cv2 and TorchCodec return it)."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(_oriented_rgb(im, _exif_orientation(im)))


def decode_crop_resize(data: bytes, box: Sequence[int], out_hw: Sequence[int],
                       interpolation: str = 'bicubic') -> Tuple[Image.Image, int]:
    """(RGB image, DCT scale used): the crop ``box`` (top, left, height, width) of the oriented
    image, a JPEG decoded at the :func:`dct_scale` it allows, resized to ``out_hw`` by Pillow."""
    top, left, h, w = box
    with Image.open(io.BytesIO(data)) as im:
        orientation = _exif_orientation(im)
        scale = dct_scale((h, w), out_hw) if im.format in JPEG_FORMATS else 1
        if scale > 1:
            raw_w, raw_h = im.size
            _, reduced = im.draft('RGB', (raw_w // scale, raw_h // scale))
            scale = raw_w / reduced[2]  # the scale libjpeg actually decodes at
        im = _oriented_rgb(im, orientation)
        y0, x0, y1, x1 = top / scale, left / scale, (top + h) / scale, (left + w) / scale
        # crop the enclosing whole pixels first, so the filter does not reach outside the crop
        # (as resizing a crop does), then resize the exact fractional region
        iy0, ix0 = int(y0), int(x0)
        iy1, ix1 = min(math.ceil(y1), im.height), min(math.ceil(x1), im.width)
        crop = im.crop((ix0, iy0, ix1, iy1))
        out = crop.resize((out_hw[1], out_hw[0]), PIL_FILTERS[interpolation],
                          box=(x0 - ix0, y0 - iy0, min(x1, ix1) - ix0, min(y1, iy1) - iy0))
        return out, int(round(scale))
