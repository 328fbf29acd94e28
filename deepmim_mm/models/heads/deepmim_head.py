"""Per-level reconstruction losses for deep supervision."""
import math
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmpretrain.models.heads import MAEPretrainHead
from mmpretrain.registry import MODELS

Targets = Union[torch.Tensor, Sequence[torch.Tensor]]


@MODELS.register_module()
class DeepMIMHead(MAEPretrainHead):
    """Reconstruction head that scores every supervised level.

    Adds over mmpretrain's ``MAEPretrainHead`` (whose target construction it reuses: patchify,
    optional per-patch normalisation with ``norm_pix``):

    - :meth:`loss` takes one prediction per level and returns one weighted loss per level,
      ``loss_block{n}`` with ``n`` the 1-indexed block, which mmengine sums.
    - the target can be the images (pixel targets, built once and shared by every level), a
      ``(B, N, D)`` feature tensor from a frozen teacher (shared), or a list with one target per
      level (hybrid targets).
    - ``level_weights``: one non-negative weight per level (default 1 each: DeepMIM's plain sum).

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

    def _target(self, target: torch.Tensor) -> torch.Tensor:
        # Images (B, C, H, W) become patch targets; teacher features (B, N, D) are used as is.
        return self.construct_target(target) if target.dim() == 4 else target

    def loss(self,
             pred: Union[torch.Tensor, Sequence[torch.Tensor]],
             target: Targets,
             mask: torch.Tensor,
             level_names: Optional[Sequence[str]] = None) -> Dict[str, torch.Tensor]:
        """Per-level losses.

        Args:
            pred: one ``(B, N, D)`` prediction per level (or one tensor for one level).
            target: images ``(B, C, H, W)``, features ``(B, N, D)``, or one of these per level.
            mask: ``(B, N)``, 1 for masked patches (the only ones scored).
            level_names: names of the levels, ``block{n}``; default ``level{k}``.

        Returns:
            ``{'loss_<name>': weighted loss}`` for every level.
        """
        preds: List[torch.Tensor] = [pred] if isinstance(pred, torch.Tensor) else list(pred)
        n = len(preds)
        names = list(level_names) if level_names is not None else [f'level{k}' for k in range(n)]
        weights = self.level_weights if self.level_weights is not None else [1.0] * n
        if len(names) != n or len(weights) != n:
            raise ValueError(f'DeepMIMHead: {n} predictions, {len(names)} level names and '
                             f'{len(weights)} level_weights; they must match')
        if isinstance(target, torch.Tensor):
            targets = [self._target(target)] * n
        else:
            if len(target) != n:
                raise ValueError(f'DeepMIMHead: {len(target)} targets for {n} levels')
            targets = [self._target(t) for t in target]
        losses = {}
        for name, w, p, t in zip(names, weights, preds, targets):
            loss = self.loss_module(p, t, mask)
            losses[f'loss_{name}'] = loss if w == 1.0 else loss * w
        return losses
