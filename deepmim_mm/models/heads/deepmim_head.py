"""Per-level reconstruction losses for deep supervision."""
import math
from typing import Dict, Optional, Sequence

import torch
from mmpretrain.models.heads import MAEPretrainHead
from mmpretrain.registry import MODELS


@MODELS.register_module()
class DeepMIMHead(MAEPretrainHead):
    """Reconstruction head that scores every supervised level.

    Adds over mmpretrain's ``MAEPretrainHead`` (whose ``construct_target`` gives the pixel
    targets): :meth:`loss` takes one prediction and one target per level and returns
    ``loss_block{n}`` per level (1-indexed block), weighted by ``level_weights`` (one
    non-negative weight per level; default 1 each, DeepMIM's plain sum). ``loss`` is any
    ``(pred, target, mask)`` loss over masked patches, e.g. ``PixelReconstructionLoss``.
    """

    def __init__(self, *args, level_weights: Optional[Sequence[float]] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if level_weights is not None:
            level_weights = [float(w) for w in level_weights]
            if not all(0 <= w < math.inf for w in level_weights) or not any(level_weights):
                raise ValueError('DeepMIMHead: level_weights must be finite, non-negative and '
                                 f'not all zero, one per supervised level; got {level_weights}')
        self.level_weights = level_weights

    def loss(self, preds: Sequence[torch.Tensor], targets: Sequence[torch.Tensor],
             mask: torch.Tensor, level_names: Sequence[str]) -> Dict[str, torch.Tensor]:
        """``{'loss_<name>': weighted loss}`` of ``(B, N, D)`` predictions and targets, one per
        level, scored where ``mask`` (``B x N``) is 1."""
        weights = self.level_weights or [1.0] * len(preds)
        losses = {}
        for name, w, p, t in zip(level_names, weights, preds, targets, strict=True):
            loss = self.loss_module(p, t, mask)
            losses[f'loss_{name}'] = loss if w == 1.0 else loss * w
        return losses
