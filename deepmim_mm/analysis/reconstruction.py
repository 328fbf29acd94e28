"""Per-level masked predictions of a DeepMIM (or MAE) model, turned into pictures and losses,
through the model's own pieces in the order of ``DeepMIM.loss``."""
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .features import level_names, unwrap, vit_geometry


@dataclass
class MaskedPredictions:
    """Everything one masked forward pass gives, per level (shallowest first)."""
    names: List[str]
    preds: List[torch.Tensor]  # (B, N, D) per level
    targets: List[torch.Tensor]  # (B, N, D) per level, as the head scores them
    mask: torch.Tensor  # (B, N), 1 = masked
    kind: str  # 'pixel' (the target is the image) or 'feature' (a teacher's features)
    losses: torch.Tensor = field(default=None)  # (B, L) masked loss per image and level


@torch.no_grad()
def masked_predictions(model: nn.Module, inputs: torch.Tensor,
                       seed: Optional[int] = 0) -> MaskedPredictions:
    """One masked forward of a ``DeepMIM`` (every level) or ``MAE`` / ``MFF`` (the last block);
    ``seed`` fixes the mask without touching the global RNG (``None``: the current state)."""
    model = unwrap(model)
    for part in ('backbone', 'neck', 'head'):
        if getattr(model, part, None) is None:
            raise ValueError(f'masked_predictions: the model ({type(model).__name__}) has no '
                             f'{part}; expected a DeepMIM / MAE-style self-supervisor')
    devices = [inputs.device] if inputs.is_cuda else []
    with torch.random.fork_rng(devices=devices, enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        out = model.backbone(inputs)
    latent, mask, ids_restore = out[0], out[1], out[2]
    preds = model.neck(latent, ids_restore)
    preds = [preds] if isinstance(preds, torch.Tensor) else list(preds)
    names = level_names(model)[-len(preds):]  # MAE / MFF: one level, the last block

    if hasattr(model, 'get_targets'):  # DeepMIM: one target per level, as its loss scores them
        targets = model.get_targets(inputs, ids_restore, num_visible=latent[-1].shape[1] - 1)
    else:  # mmpretrain's MAE / MFF: the patchified pixels
        targets = [model.head.construct_target(inputs)] * len(preds)
    kind = 'pixel' if getattr(model, 'target_generator', None) is None else 'feature'
    result = MaskedPredictions(names, preds, targets, mask.float(), kind)
    result.losses = per_image_losses(model.head.loss_module, preds, targets, result.mask)
    return result


def per_image_losses(loss_module: nn.Module, preds: Sequence[torch.Tensor],
                     targets: Sequence[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """``(B, L)``: the head's (unweighted) masked loss for every image and level."""
    B = mask.shape[0]
    out = torch.empty(B, len(preds), dtype=torch.float64)
    for j, (p, t) in enumerate(zip(preds, targets)):
        for i in range(B):
            out[i, j] = float(loss_module(p[i:i + 1], t[i:i + 1], mask[i:i + 1]))
    return out


def mask_to_image(mask: torch.Tensor, backbone: nn.Module) -> torch.Tensor:
    """``(B, N)`` patch mask -> ``(B, 1, H, W)`` pixel mask."""
    (h, w), patch, _ = vit_geometry(backbone)
    m = mask.reshape(mask.shape[0], 1, h, w).float()
    return m.repeat_interleave(patch, dim=2).repeat_interleave(patch, dim=3)


def pixel_reconstruction(head: nn.Module, inputs: torch.Tensor,
                         pred: torch.Tensor) -> torch.Tensor:
    """A pixel prediction ``(B, N, p*p*C)`` as ``(B, C, H, W)`` inputs (``norm_pix``:
    de-normalised with each patch's true mean and variance, as in MAE's visualisation)."""
    if getattr(head, 'norm_pix', False):
        patches = head.patchify(inputs)
        mean = patches.mean(dim=-1, keepdim=True)
        var = patches.var(dim=-1, keepdim=True)
        pred = pred * (var + 1.e-6)**.5 + mean
    return head.unpatchify(pred)


def to_display(model: nn.Module, images: torch.Tensor) -> np.ndarray:
    """Preprocessed images ``(B, 3, H, W)`` -> RGB ``uint8`` ``(B, H, W, 3)``."""
    dp = unwrap(model).data_preprocessor
    x = images.detach().float()
    if dp._enable_normalize:
        x = x * dp.std.to(x) + dp.mean.to(x)
    if not dp._channel_conversion:
        x = x.flip(1)  # mmcv loads BGR
    return x.clamp(0, 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()


def level_panels(model: nn.Module, inputs: torch.Tensor, result: MaskedPredictions) -> dict:
    """``original``, ``masked`` and per level ``j`` the reconstruction ``raw[j]`` and
    ``levels[j]`` with the visible patches pasted in, or the ``(B, h, w)`` ``cosine[j]`` map."""
    model = unwrap(model)
    m = mask_to_image(result.mask, model.backbone).to(inputs)
    original = to_display(model, inputs)
    masked = original.copy()
    masked[m[:, 0].bool().cpu().numpy()] = 127  # grey where masked
    out = dict(original=original, masked=masked)
    if result.kind == 'pixel':
        raw, pasted = [], []
        for pred in result.preds:
            rec = pixel_reconstruction(model.head, inputs, pred)
            raw.append(to_display(model, rec))
            pasted.append(to_display(model, inputs * (1 - m) + rec * m))
        out.update(levels=pasted, raw=raw)
    else:
        grid = vit_geometry(model.backbone)[0]
        cos = [F.cosine_similarity(p.float(), t.float(), dim=-1)
               for p, t in zip(result.preds, result.targets)]
        out['cosine'] = [c.reshape(-1, *grid).cpu().numpy() for c in cos]
    return out


def colorize(values: np.ndarray, size: int, vmin: float = -1.0, vmax: float = 1.0) -> np.ndarray:
    """``(..., h, w)`` values -> ``(..., size, size, 3)`` uint8 RGB with matplotlib's viridis."""
    from matplotlib import colormaps
    v = (np.clip(values, vmin, vmax) - vmin) / (vmax - vmin)
    rgb = (colormaps['viridis'](v)[..., :3] * 255).round().astype(np.uint8)
    rep = max(size // values.shape[-2], 1)
    return rgb.repeat(rep, axis=-3).repeat(rep, axis=-2)


def tile(rows: Sequence[Sequence[np.ndarray]], gap: int = 2) -> np.ndarray:
    """A grid of equally sized ``(H, W, 3)`` uint8 images, ``gap`` white pixels between them."""
    rows = [np.concatenate([np.pad(img, ((0, gap), (0, gap), (0, 0)), constant_values=255)
                            for img in row], axis=1) for row in rows]
    return np.concatenate(rows, axis=0)[:-gap, :-gap]


def level_grids(model: nn.Module, inputs: torch.Tensor,
                result: MaskedPredictions) -> List[np.ndarray]:
    """One ``uint8`` RGB grid per level, a row of :func:`level_panels` per image."""
    panels = level_panels(model, inputs, result)
    grids = []
    for j in range(len(result.names)):
        if result.kind == 'pixel':
            cols = [panels['raw'][j], panels['levels'][j]]
        else:
            cols = [colorize(panels['cosine'][j], inputs.shape[-1])]
        grids.append(tile([[panels['original'][i], panels['masked'][i]] + [c[i] for c in cols]
                           for i in range(inputs.shape[0])]))
    return grids
