"""Load a pretraining checkpoint of this plugin into a downstream ViT backbone, with a report.

Pure torch + mmengine (no mmseg / mmdet): :mod:`deepmim_mm.seg` and :mod:`deepmim_mm.det` use
it. Unlike :func:`deepmim_mm.utils.checkpoint.load_pretrained_encoder` (fine-tuning: every
weight must match), dense-task backbones add parameters (relative positions, layer scale) and
change the grid, so new keys are reported, not errors. What it does, in order:

1. reads the file (``FileNotFoundError`` naming the config field when it is missing) and takes its
   ``state_dict`` (or ``model``/``module``, or the dict itself);
2. keeps the encoder: the keys under ``prefix`` (``'backbone.'``) with the prefix stripped. Every
   other key (``neck.`` decoders, ``head.``, ``target_generator.`` teachers, data preprocessor
   buffers) is *dropped*. A checkpoint without any ``prefix`` key (e.g. an mmpretrain
   ``MAEViT``/``VisionTransformer`` state dict saved bare, or mmseg's converted MAE weights) is
   used as it is;
3. drops pretraining-only encoder keys the target does not have (the final ``ln1`` norm when the
   downstream backbone has no final norm, MFF's ``proj_layers``/``proj_weights``, ``mask_token``);
4. resizes the absolute position embedding (``pos_embed``, ``(1, extra + H*W, C)``) bicubically to
   the target grid (e.g. 14x14 at 224 px pretraining -> 32x32 at 512/16);
5. loads with ``strict=False`` and logs a report: every key loaded, dropped (with the reason) and
   new (in the model, not in the checkpoint), layer indices folded into ranges so a ViT-B report
   stays readable (``neck.decoder_blocks.{0-7}.attn.qkv.weight``).
"""
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import fold_keys, read_state_dict


@dataclass
class LoadReport:
    """What :func:`load_pretrained_encoder` did: key lists and the position-embedding resize."""
    checkpoint: str
    loaded: List[str] = field(default_factory=list)
    dropped: Dict[str, str] = field(default_factory=dict)  # key -> reason
    new_params: List[str] = field(default_factory=list)
    new_buffers: List[str] = field(default_factory=list)
    resized: Dict[str, Tuple[tuple, tuple]] = field(default_factory=dict)

    def format(self) -> str:
        lines = [f'Loaded pretrained encoder from {self.checkpoint}: '
                 f'{len(self.loaded)} keys loaded, {len(self.dropped)} dropped, '
                 f'{len(self.new_params)} new parameters, {len(self.new_buffers)} new buffers.']
        for key, (old, new) in self.resized.items():
            lines.append(f'  resized {key}: {tuple(old)} -> {tuple(new)}')
        by_reason: Dict[str, List[str]] = {}
        for key, reason in self.dropped.items():
            by_reason.setdefault(reason, []).append(key)
        for reason, keys in by_reason.items():
            lines.append(f'  dropped ({reason}): ' + ', '.join(fold_keys(keys)))
        if self.new_params:
            lines.append('  new parameters (not in the checkpoint, initialised by the model): '
                         + ', '.join(fold_keys(self.new_params)))
        if self.new_buffers:
            lines.append('  new buffers (computed by the model): '
                         + ', '.join(fold_keys(self.new_buffers)))
        lines.append('  loaded: ' + ', '.join(fold_keys(self.loaded)))
        return '\n'.join(lines)


def resize_pos_embed(pos_embed: torch.Tensor, num_extra: int,
                     new_hw: Tuple[int, int]) -> torch.Tensor:
    """Bicubically resize ``(1, num_extra + h*w, C)`` (square ``h*w``) to ``num_extra + H*W``."""
    extra, grid = pos_embed[:, :num_extra], pos_embed[:, num_extra:]
    old = int(round(grid.shape[1] ** 0.5))
    if old * old != grid.shape[1]:
        raise ValueError(f'pos_embed: {grid.shape[1]} grid tokens is not a square grid')
    if (old, old) == tuple(new_hw):
        return pos_embed
    c = grid.shape[-1]
    grid = grid.reshape(1, old, old, c).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=tuple(new_hw), mode='bicubic', align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_hw[0] * new_hw[1], c).to(pos_embed.dtype)
    return torch.cat([extra, grid], dim=1)


def _is_square(n: int) -> bool:
    return n > 0 and int(round(n ** 0.5)) ** 2 == n


def _fit_pos_embed(value, target, num_extra_tokens, pos_grid, report):
    """Resize a checkpoint ``pos_embed`` to the model's layout and grid.

    The checkpoint's is ``(1, extra + h*w, C)`` (``extra`` = ``num_extra_tokens`` if that leaves a
    square grid, else 0) or ``(1, h, w, C)``. The model's is the token layout
    ``(1, num_extra_tokens + H*W, C)`` (grid ``pos_grid`` or square) or the grid layout
    ``(1, H, W, C)``, which has no extra tokens: the checkpoint's are dropped.
    """
    old_shape = tuple(value.shape)
    if value.dim() == 4:
        value, ckpt_extra = value.flatten(1, 2), 0
    elif _is_square(value.shape[1] - num_extra_tokens):
        ckpt_extra = num_extra_tokens
    elif _is_square(value.shape[1]):
        ckpt_extra = 0
    else:
        raise ValueError(f'pos_embed: cannot read a square grid from checkpoint shape {old_shape}')
    if target.dim() == 4:
        value = resize_pos_embed(value[:, ckpt_extra:], 0, tuple(target.shape[1:3]))
        value = value.reshape(target.shape)
    else:
        if ckpt_extra != num_extra_tokens:
            raise ValueError(f'pos_embed: the checkpoint has {ckpt_extra} extra tokens, the '
                             f'backbone {num_extra_tokens}')
        if pos_grid is None:
            side = int(round((target.shape[1] - num_extra_tokens) ** 0.5))
            pos_grid = (side, side)
        value = resize_pos_embed(value, num_extra_tokens, tuple(pos_grid))
    report.resized['pos_embed'] = (old_shape, tuple(value.shape))
    return value


#: Pretraining-only encoder keys and why they are dropped.
_PRETRAIN_ONLY = [
    (re.compile(r'^proj_layers\.|^proj_weights$'), 'MFF fusion, pretraining only'),
    (re.compile(r'^mask_token$'), 'mask token, pretraining only'),
    (re.compile(r'^cls_token$'), 'class token; the backbone uses none'),
    (re.compile(r'^ln1\.'), 'final norm of the pretraining encoder; the backbone has none'),
]


def load_pretrained_encoder(model: nn.Module, path: str, prefix: str = 'backbone.',
                            pos_grid: Optional[Tuple[int, int]] = None,
                            num_extra_tokens: int = 1,
                            key_map=None,
                            logger=None) -> LoadReport:
    """Load the encoder of a pretraining checkpoint into ``model``; log and return the report.

    Args:
        model: the downstream backbone.
        path: checkpoint file.
        prefix: the encoder's prefix in the checkpoint (stripped).
        pos_grid: the grid ``(H, W)`` to resize ``pos_embed`` to; by default the one of the
            model's own ``pos_embed`` (square).
        num_extra_tokens: leading non-grid tokens of ``pos_embed`` (the cls slot) in both.
        key_map: optional callable ``key -> key or None`` renaming encoder keys to the model's
            names (``None`` drops the key).
        logger: an mmengine logger; ``'current'`` by default.
    """
    from mmengine.logging import print_log
    raw = read_state_dict(path, 'model.backbone.init_cfg.checkpoint')
    report = LoadReport(checkpoint=path)
    has_prefix = any(k.startswith(prefix) for k in raw)
    encoder = OrderedDict()
    for key, value in raw.items():
        if has_prefix and not key.startswith(prefix):
            report.dropped[key] = f'outside {prefix!r}: decoder/head/teacher/preprocessor'
            continue
        encoder[key[len(prefix):] if has_prefix else key] = value
    if key_map is not None:
        mapped = OrderedDict()
        for key, value in encoder.items():
            new_key = key_map(key)
            if new_key is None:
                report.dropped[prefix + key if has_prefix else key] = 'not used by this backbone'
            else:
                mapped[new_key] = value
        encoder = mapped

    own = model.state_dict()
    own_params = {n for n, _ in model.named_parameters()}
    state = OrderedDict()
    ckpt_name = (lambda k: prefix + k) if has_prefix else (lambda k: k)
    for key, value in encoder.items():
        if key not in own:
            reason = next((why for pat, why in _PRETRAIN_ONLY if pat.search(key)),
                          'not in this backbone')
            report.dropped[ckpt_name(key)] = reason
            continue
        if key == 'pos_embed' and value.shape != own[key].shape:
            value = _fit_pos_embed(value, own[key], num_extra_tokens, pos_grid, report)
        if value.shape != own[key].shape:
            raise ValueError(f'{path}: {ckpt_name(key)} has shape {tuple(value.shape)}, the '
                             f'backbone expects {tuple(own[key].shape)} (different architecture?)')
        state[key] = value
        report.loaded.append(key)
    model.load_state_dict(state, strict=False)
    for key in own:
        if key not in state:
            (report.new_params if key in own_params else report.new_buffers).append(key)
    print_log(report.format(), logger=logger or 'current')
    return report
