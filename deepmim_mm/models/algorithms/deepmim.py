"""DeepMIM: masked image modeling with deep supervision (and optional MFF fusion)."""
from typing import Dict, List, Union

import torch
import torch.nn as nn
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ..target_generators import FrozenTeacher, MAEHybridTarget


@MODELS.register_module()
class DeepMIM(BaseSelfSupervisor):
    """DeepMIM (arXiv 2303.08817), MAE and MFF under one algorithm.

    Adds over mmpretrain's ``MAE`` / ``MFF``: the backbone (:class:`DeepMIMViT`) is masked once
    and returns several levels, the neck (:class:`MultiLevelDecoder`) decodes each and the head
    (:class:`DeepMIMHead`) returns ``loss_block{n}`` per level (1-indexed blocks); an optional
    frozen ``target_generator`` gives the targets instead of the pixels; MFF fusion weights are
    logged as ``fusion_weight_block{n}``. With one level and an 8-block decoder it is MAE, with
    ``fusion_indices`` MFF: mmpretrain's checkpoints of those load and give the same loss.

    ``neck.num_levels`` follows the backbone when left out; parts built for different levels or
    shapes are a ``ValueError`` at build time.
    """

    def __init__(self, backbone: Union[dict, nn.Module], neck: Union[dict, nn.Module],
                 head: Union[dict, nn.Module], **kwargs) -> None:
        if not isinstance(backbone, nn.Module):
            backbone = MODELS.build(backbone)
        if not hasattr(backbone, 'level_names'):
            raise ValueError('DeepMIM: the backbone must return supervised levels '
                             f'(e.g. DeepMIMViT), got {type(backbone).__name__}')
        num_levels = len(backbone.out_indices)
        if isinstance(neck, dict) and 'num_levels' not in neck:
            neck = dict(neck, num_levels=num_levels)
        super().__init__(backbone=backbone, neck=neck, head=head, **kwargs)
        if self.neck.num_levels != num_levels:
            raise ValueError(f'DeepMIM: neck.num_levels={self.neck.num_levels} but the backbone '
                             f'supervises {num_levels} blocks {self.backbone.level_names}; '
                             'leave num_levels out to follow the backbone')
        weights = getattr(self.head, 'level_weights', None)
        if weights is not None and len(weights) != num_levels:
            raise ValueError(f'DeepMIM: head.level_weights has {len(weights)} entries for '
                             f'{num_levels} supervised levels {self.backbone.level_names}')
        self._check_shapes()
        if isinstance(self.target_generator, FrozenTeacher):
            self.target_generator.match_student(self.backbone)

    def _check_shapes(self) -> None:
        """Widths, patch grid and prediction size of backbone, neck and head agree (a ValueError
        naming both fields, not a tensor-shape error at the first step)."""
        backbone, neck, head, teacher = self.backbone, self.neck, self.head, self.target_generator
        grid, bb_patch = backbone.patch_resolution, backbone.patch_embed.projection.kernel_size[0]
        if neck.decoder_embed.in_features != backbone.embed_dims:
            raise ValueError(f'DeepMIM: neck.embed_dim={neck.decoder_embed.in_features} but the '
                             f'backbone is {backbone.embed_dims} wide (model.backbone.arch); set '
                             f'model.neck.embed_dim={backbone.embed_dims}')
        if neck.num_patches != grid[0] * grid[1]:
            raise ValueError(f'DeepMIM: neck.num_patches={neck.num_patches} but the backbone cuts '
                             f'its images into {grid[0]}x{grid[1]} patches (model.backbone.'
                             f'img_size / patch_size); set model.neck.num_patches='
                             f'{grid[0] * grid[1]}')
        pixels = teacher is None or isinstance(teacher, MAEHybridTarget)  # targets in pixels
        patch = head.patch_size
        pixel_dim = patch**2 * head.in_channels
        if pixels and patch != bb_patch:
            raise ValueError(f'DeepMIM: head.patch_size={patch} but model.backbone.patch_size='
                             f'{bb_patch}; they must be equal')
        if teacher is not None and pixels and teacher.out_channels != pixel_dim:
            raise ValueError(f'DeepMIM: the teacher (model.target_generator.decoder) predicts '
                             f'{teacher.out_channels} values per patch but the head\'s pixel '
                             f'target has {pixel_dim} (model.head.patch_size / in_channels)')
        pred = neck.decoder_pred.out_features
        want = pixel_dim if pixels else getattr(teacher, 'out_channels', None)
        if want is not None and pred != want:
            what = (f'{patch}x{patch}x{head.in_channels} pixels per patch' if pixels else
                    f'the teacher\'s {want}-d features')
            raise ValueError(f'DeepMIM: the neck predicts {pred} values per patch '
                             f'(model.neck.predict_feature_dim / patch_size) but the target is '
                             f'{what}; set model.neck.predict_feature_dim={want}')

    @property
    def level_names(self) -> List[str]:
        """``block{n}`` (1-indexed) for every supervised level, shallowest first."""
        return self.backbone.level_names

    def extract_feat(self, inputs: torch.Tensor):
        """Unmasked features of every supervised block (see ``DeepMIMViT``)."""
        return self.backbone(inputs, mask=None)

    def get_targets(self, inputs: torch.Tensor, ids_restore: torch.Tensor,
                    num_visible: int) -> List[torch.Tensor]:
        """One target per supervised level, shallowest first: the head's pixel target, the
        hybrid teacher's reconstruction from the student's ``num_visible`` visible patches mixed
        into it, or another teacher's features."""
        teacher, levels = self.target_generator, len(self.level_names)
        if teacher is None:
            return [self.head.construct_target(inputs)] * levels
        if isinstance(teacher, MAEHybridTarget):
            ids_keep = torch.argsort(ids_restore, dim=1)[:, :num_visible]
            return teacher.mix(self.head.construct_target(inputs),
                               teacher(inputs, ids_keep, ids_restore))
        return [teacher(inputs)] * levels

    def loss(self, inputs: torch.Tensor, data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        """One mask, one encoder pass, one decoder and one loss per supervised level."""
        levels, mask, ids_restore, fusion_weights = self.backbone(inputs)
        preds = self.neck(levels, ids_restore)
        targets = self.get_targets(inputs, ids_restore, num_visible=levels[-1].shape[1] - 1)
        losses = self.head.loss(preds, targets, mask, self.level_names)
        if fusion_weights is not None:
            losses.update({f'fusion_weight_block{b + 1}': w.detach()
                           for b, w in zip(self.backbone.fusion_indices, fusion_weights)})
        return losses
