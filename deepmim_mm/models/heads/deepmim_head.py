"""Per-level reconstruction losses for deep supervision."""
import math
from typing import Dict, Optional, Sequence

import torch
from mmpretrain.models.heads import MAEPretrainHead
from mmpretrain.registry import MODELS


@MODELS.register_module()
class DeepMIMHead(MAEPretrainHead):
    """Reconstruction head that scores every supervised level.

    Adds over mmpretrain's ``MAEPretrainHead`` (whose ``construct_target`` DeepMIM uses for
    pixel targets: patchify, optional per-patch normalisation with ``norm_pix``): :meth:`loss`
    takes one prediction and one target per level and returns one weighted loss per level,
    ``loss_block{n}`` with ``n`` the 1-indexed block, which mmengine sums; ``level_weights``: one
    non-negative weight per level (default 1 each: DeepMIM's plain sum).

    ``loss`` is any mmpretrain reconstruction loss with the ``(pred, target, mask)`` signature,
    averaged over masked patches only, e.g. ``PixelReconstructionLoss(criterion='L2')``.
    """

    def __init__(self,
                 loss: dict,
                 norm_pix: bool = False,
                 patch_size: int = 16,
                 in_channels: int = 3,
                 level_weights: Optional[Sequence[float]] = None) -> None:
        super().__init__(loss=loss, norm_pix=norm_pix, patch_size=patch_size,
                         in_channels=in_channels)
        if level_weights is not None:
            level_weights = [float(w) for w in level_weights]
            if not level_weights or any(not math.isfinite(w) or w < 0 for w in level_weights) \
                    or not any(level_weights):
                raise ValueError('DeepMIMHead: level_weights must be finite, non-negative and '
                                 f'not all zero, one per supervised level; got {level_weights}')
        self.level_weights = level_weights

    def loss(self, preds: Sequence[torch.Tensor], targets: Sequence[torch.Tensor],
             mask: torch.Tensor, level_names: Sequence[str]) -> Dict[str, torch.Tensor]:
        """``{'loss_<name>': weighted loss}`` for every level.

        Args:
            preds: one ``(B, N, D)`` prediction per level.
            targets: one ``(B, N, D)`` target per level (``DeepMIM.get_targets``).
            mask: ``(B, N)``, 1 for masked patches (the only ones scored).
            level_names: the levels' names, ``block{n}``.
        """
        weights = self.level_weights or [1.0] * len(preds)
        losses = {}
        for name, w, p, t in zip(level_names, weights, preds, targets, strict=True):
            loss = self.loss_module(p, t, mask)
            losses[f'loss_{name}'] = loss if w == 1.0 else loss * w
        return losses
