"""DeepMIM-CLIP's feature-target loss."""
from typing import Optional

import torch
import torch.nn.functional as F
from mmpretrain.models.losses import CosineSimilarityLoss
from mmpretrain.registry import MODELS


@MODELS.register_module()
class CosineFeatureLoss(CosineSimilarityLoss):
    """Per-token ``2 - 2 * cos(pred, target)``, averaged over masked tokens only: the loss of
    every DeepMIM-CLIP branch (official DeepMIM code), called as mmpretrain's
    ``PixelReconstructionLoss``: ``forward(pred, target, mask)``.

    Adds over mmpretrain's ``CosineSimilarityLoss`` (its formula, with ``shift_factor=2,
    scale_factor=2`` as defaults): the ``mask`` (``B x N``, 1 = masked = scored; ``None``: every
    token), fp32 whatever the input dtypes (AMP's bf16/fp16 targets lose precision in the
    normalisation and the sum), and 0, not NaN, for an all-zero mask.
    """

    def __init__(self, shift_factor: float = 2.0, scale_factor: float = 2.0) -> None:
        super().__init__(shift_factor=shift_factor, scale_factor=scale_factor)

    def forward(self,
                pred: torch.Tensor,
                target: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        with torch.autocast(pred.device.type, enabled=False):
            cos = (F.normalize(pred.float(), dim=-1) * F.normalize(target.float(), dim=-1)).sum(-1)
            loss = self.shift_factor - self.scale_factor * cos
            if mask is None:
                return loss.mean()
            mask = mask.to(loss.dtype)
            return (loss * mask).sum() / mask.sum().clamp(min=1.0)
