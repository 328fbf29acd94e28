"""Decoding and augmentation of the batch on the model's device (the device path)."""
from typing import List, Optional, Tuple

import torch
from mmpretrain.models.utils.data_preprocessor import SelfSupDataPreprocessor
from mmpretrain.registry import MODELS

from .image_codec import JPEG_FORMATS, decode_rgb
from .resample import FILTERS, resized_crops
from .transforms import check_on_corrupt, corrupt_image

DECODERS = ('auto', 'torchcodec', 'pillow')


def torchcodec_decode_jpeg():
    """TorchCodec's batched JPEG decoder, or None where it does not import against this torch."""
    try:
        from torchcodec.decoders import decode_jpeg
    except Exception:  # ImportError, or OSError/RuntimeError from its shared libraries
        return None
    return decode_jpeg


@MODELS.register_module()
class DecodeDataPreprocessor(SelfSupDataPreprocessor):
    """mmpretrain's ``SelfSupDataPreprocessor`` that first decodes (TorchCodec, else Pillow),
    crops, resizes and flips a batch of encoded files (``PackImageBytes``) on the model's device,
    then hands it in BGR order to the upstream ``forward``."""

    def __init__(self, *args, decoder: str = 'auto', on_corrupt: str = 'error',
                 chunk: int = 64, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if decoder not in DECODERS:
            raise ValueError(f'DecodeDataPreprocessor: decoder={decoder!r}; accepted: '
                             f'{list(DECODERS)}')
        self.on_corrupt = check_on_corrupt(on_corrupt, 'DecodeDataPreprocessor')
        self.chunk = chunk  # images resized at once (memory)
        self._decode_jpeg = None if decoder == 'pillow' else torchcodec_decode_jpeg()
        if decoder == 'torchcodec' and self._decode_jpeg is None:
            raise ImportError('DecodeDataPreprocessor: decoder="torchcodec" but torchcodec '
                              'does not import (pip install torchcodec, matching your torch)')
        self.decoder = 'torchcodec' if self._decode_jpeg is not None else 'pillow'

    def forward(self, data: dict, training: bool = False) -> dict:
        files = _encoded_files(data.get('inputs'))
        if files is None:
            return super().forward(data, training)
        images, samples = self._decode(files, list(data['data_samples']))
        meta = [s.metainfo for s in samples]
        interpolation = meta[0].get('interpolation', 'bicubic')
        if interpolation not in FILTERS:
            raise ValueError(f'DecodeDataPreprocessor: interpolation={interpolation!r} (from '
                             f'RandomResizedCropBox); accepted: {sorted(FILTERS)}')
        rgb = resized_crops(images, [m['crop_box'] for m in meta], meta[0]['img_shape'],
                            [m.get('flip_direction') if m.get('flip') else None for m in meta],
                            interpolation, self.chunk)
        return super().forward({'inputs': rgb.flip(1), 'data_samples': samples}, training)

    def _decode(self, files: List[torch.Tensor], samples: list) -> Tuple[List[torch.Tensor], list]:
        """RGB uint8 ``(3, H, W)`` images on this device and their samples (all of them unless
        ``on_corrupt='skip'``)."""
        images: List[Optional[torch.Tensor]] = [None] * len(files)
        metas = [s.metainfo for s in samples]
        if self._decode_jpeg is not None:
            batch = [i for i, m in enumerate(metas) if _plain_jpeg(m)]
            for i, img in zip(batch, self._torchcodec([files[i] for i in batch])):
                if img is not None and tuple(img.shape[1:]) == tuple(metas[i]['ori_shape']):
                    images[i] = img
        for i in range(len(files)):
            if images[i] is None:
                images[i] = self._pillow(files[i], metas[i])
        keep = [i for i, img in enumerate(images) if img is not None]
        if not keep:
            raise ValueError('DecodeDataPreprocessor: no image of the batch could be decoded')
        return [images[i] for i in keep], [samples[i] for i in keep]

    def _torchcodec(self, files: List[torch.Tensor]) -> List[Optional[torch.Tensor]]:
        try:
            return list(self._decode_jpeg(files, mode='RGB', device=self.device))
        except Exception:  # one bad file fails the whole call: find it, decode the others
            out = []
            for f in files:
                try:
                    out.append(self._decode_jpeg(f, mode='RGB', device=self.device))
                except Exception:
                    out.append(None)
            return out

    def _pillow(self, data: torch.Tensor, meta: dict) -> Optional[torch.Tensor]:
        try:
            img = torch.from_numpy(decode_rgb(data.numpy().tobytes()).copy())
        except Exception as e:
            corrupt_image(meta['img_path'], e, self.on_corrupt, 'DecodeDataPreprocessor')
            return None
        return img.permute(2, 0, 1).to(self.device, non_blocking=True)


def _plain_jpeg(meta: dict) -> bool:
    """A JPEG any JPEG decoder returns as Pillow does: RGB or grey, no EXIF rotation."""
    return (meta.get('img_format') in JPEG_FORMATS and meta.get('img_mode') in ('RGB', 'L')
            and meta.get('img_orientation', 1) == 1)


def _encoded_files(inputs) -> Optional[List[torch.Tensor]]:
    """The batch's encoded files as 1-D uint8 CPU tensors, or None if ``inputs`` are images."""
    if isinstance(inputs, dict) and 'offsets' in inputs:  # image_bytes_collate
        data, offsets = inputs['data'], inputs['offsets'].tolist()
        return [data[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    if isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], bytes):
        return [torch.frombuffer(bytearray(f), dtype=torch.uint8) for f in inputs]
    return None
