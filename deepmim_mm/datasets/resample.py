"""Crop, resize and flip a batch of images of any sizes as Pillow does, in two batched matmuls."""
import math
from typing import Callable, Dict, Sequence, Tuple

import PIL
import torch

PILLOW_13 = int(PIL.__version__.split('.')[0]) >= 13


def _bilinear(x: torch.Tensor) -> torch.Tensor:
    return (1 - x.abs()).clamp(min=0)


def _bicubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    x = x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def _sinc(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x == 0, torch.ones_like(x), torch.sin(math.pi * x) / (math.pi * x))


def _lanczos(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x.abs() < 3, _sinc(x) * _sinc(x / 3), torch.zeros_like(x))


#: Pillow's filters: name -> (support, function)
FILTERS: Dict[str, Tuple[float, Callable]] = {
    'bilinear': (1.0, _bilinear),
    'bicubic': (2.0, _bicubic),
    'lanczos': (3.0, _lanczos),
}


def resample_weights(sizes: torch.Tensor, out: int, total: int,
                     interpolation: str = 'bicubic') -> torch.Tensor:
    """Pillow's coefficients for resizing, along one axis, inputs of ``sizes[b]`` pixels to
    ``out`` pixels: a ``(B, out, total)`` float32 matrix (zero beyond ``sizes[b]``)."""
    support, fn = FILTERS[interpolation]
    sizes = sizes.to(torch.float64)
    scale = (sizes / out)[:, None, None]  # (B, 1, 1)
    filterscale = scale.clamp(min=1)
    center = (torch.arange(out, dtype=torch.float64, device=sizes.device)[None, :, None]
              + 0.5) * scale  # (B, out, 1)
    lo = torch.floor(center - support * filterscale + 0.5).clamp(min=0)
    hi = torch.minimum(torch.floor(center + support * filterscale + 0.5), sizes[:, None, None])
    x = torch.arange(total, dtype=torch.float64, device=sizes.device)[None, None, :]
    w = fn((x - center + 0.5) / filterscale) * ((x >= lo) & (x < hi))
    return (w / w.sum(-1, keepdim=True).clamp(min=1e-12)).float()


def vertical_first(h: int, w: int, out_hw: Sequence[int]) -> bool:
    """Whether Pillow resizes an ``h`` x ``w`` image to ``out_hw`` vertically first (Pillow >= 13,
    when the height shrinks by more than twice as many pixels as the width)."""
    return PILLOW_13 and 0 < h - out_hw[0] and h - out_hw[0] > (w - out_hw[1]) * 2


def resized_crops(images: Sequence[torch.Tensor], boxes: Sequence[Sequence[int]],
                  out_hw: Sequence[int], flips: Sequence[str] = (), interpolation: str = 'bicubic',
                  chunk: int = 64) -> torch.Tensor:
    """``boxes[b]`` (top, left, height, width) of uint8 ``images[b]`` (C, H, W), resized to
    ``out_hw`` and flipped by ``flips[b]`` (None, 'horizontal', 'vertical', 'diagonal') as Pillow
    does: a float32 (B, C, H_out, W_out) batch of whole grey levels, ``chunk`` images at once."""
    flips = list(flips) or [None] * len(images)
    order = [vertical_first(b[2], b[3], out_hw) for b in boxes]
    out = torch.empty(len(images), images[0].shape[0], *out_hw, device=images[0].device)
    for first in (False, True):
        idx = [i for i, v in enumerate(order) if v == first]
        for k in range(0, len(idx), chunk):
            sel = idx[k:k + chunk]
            out[sel] = _resize_chunk([images[i] for i in sel], [boxes[i] for i in sel], out_hw,
                                     [flips[i] for i in sel], interpolation, first)
    return out


def _resize_chunk(images, boxes, out_hw, flips, interpolation, v_first) -> torch.Tensor:
    device = images[0].device
    channels = images[0].shape[0]
    hs = torch.tensor([b[2] for b in boxes], device=device)
    ws = torch.tensor([b[3] for b in boxes], device=device)
    hmax, wmax = int(max(b[2] for b in boxes)), int(max(b[3] for b in boxes))
    crops = torch.zeros(len(images), channels, hmax, wmax, device=device)
    for k, (img, (top, left, h, w)) in enumerate(zip(images, boxes)):
        crops[k, :, :h, :w] = img[:, top:top + h, left:left + w]
    wy = resample_weights(hs, out_hw[0], hmax, interpolation)[:, None]  # (B, 1, H_out, hmax)
    wx = resample_weights(ws, out_hw[1], wmax, interpolation)[:, None]  # (B, 1, W_out, wmax)
    hflip = torch.tensor([f in ('horizontal', 'diagonal') for f in flips], device=device)
    vflip = torch.tensor([f in ('vertical', 'diagonal') for f in flips], device=device)
    wx = torch.where(hflip[:, None, None, None], wx.flip(2), wx)
    wy = torch.where(vflip[:, None, None, None], wy.flip(2), wy)
    # each pass rounded to whole grey levels, as Pillow's uint8 intermediate image
    if v_first:
        tmp = torch.matmul(wy, crops).round_().clamp_(0, 255)
        return torch.matmul(tmp, wx.transpose(2, 3)).round_().clamp_(0, 255)
    tmp = torch.matmul(crops, wx.transpose(2, 3)).round_().clamp_(0, 255)
    return torch.matmul(wy, tmp).round_().clamp_(0, 255)
