"""DeepMIM-CLIP's feature-target loss."""
from typing import Optional

import torch
import torch.nn.functional as F
from mmpretrain.models.losses import CosineSimilarityLoss
from mmpretrain.registry import MODELS


@MODELS.register_module()
class CosineFeatureLoss(CosineSimilarityLoss):
    """Per-token ``2 - 2 * cos(pred, target)``, averaged over masked tokens only.

    The loss of DeepMIM-CLIP's every branch (official DeepMIM code; arXiv 2303.08817): prediction
    and target L2-normalised per token, ``2 - 2 cos`` (= squared distance of the unit vectors),
    mean over the tokens with ``mask == 1``. Same call as mmpretrain's
    ``PixelReconstructionLoss``: ``forward(pred, target, mask)``.

    Adds over mmpretrain's ``CosineSimilarityLoss`` (whose formula it keeps, with
    ``shift_factor=2, scale_factor=2`` as defaults):

    - computes in fp32 whatever the input dtypes (under AMP the teacher's targets arrive in
      bf16/fp16, where normalising and summing lose precision);
    - checks shapes: ``pred`` and ``target`` ``B x N x D`` alike, ``mask`` ``B x N``
      (``ValueError`` naming them, instead of silent broadcasting);
    - an all-zero mask gives 0 (not NaN).
    """

    def __init__(self, shift_factor: float = 2.0, scale_factor: float = 2.0) -> None:
        super().__init__(shift_factor=shift_factor, scale_factor=scale_factor)

    def forward(self,
                pred: torch.Tensor,
                target: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Loss of ``pred`` against ``target`` (both ``B x N x D``) on ``mask`` (``B x N``, 1 =
        masked = scored); ``mask=None`` scores every token."""
        if pred.shape != target.shape or pred.dim() != 3:
            raise ValueError(f'CosineFeatureLoss: pred {tuple(pred.shape)} and target '
                             f'{tuple(target.shape)} must both be B x N x D (the decoder must '
                             "predict the teacher's feature size)")
        if mask is not None and tuple(mask.shape) != tuple(pred.shape[:2]):
            raise ValueError(f'CosineFeatureLoss: mask {tuple(mask.shape)} must be B x N = '
                             f'{tuple(pred.shape[:2])}')
        with torch.autocast(pred.device.type, enabled=False):
            cos = (F.normalize(pred.float(), dim=-1) * F.normalize(target.float(), dim=-1)).sum(-1)
            loss = self.shift_factor - self.scale_factor * cos
            if mask is None:
                return loss.mean()
            mask = mask.to(loss.dtype)
            return (loss * mask).sum() / mask.sum().clamp(min=1.0)
