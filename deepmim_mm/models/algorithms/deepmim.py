"""DeepMIM: masked image modeling with deep supervision (and optional MFF fusion)."""
from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn
from mmpretrain.models.selfsup.base import BaseSelfSupervisor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ..target_generators import FrozenTeacher, MAEHybridTarget


@MODELS.register_module()
class DeepMIM(BaseSelfSupervisor):
    """DeepMIM (arXiv 2303.08817), MAE and MFF under one algorithm.

    Adds over mmpretrain's ``MAE`` / ``MFF`` algorithms: the backbone (:class:`DeepMIMViT`) is
    masked once and returns several levels; the neck (:class:`MultiLevelDecoder`) decodes each;
    the head (:class:`DeepMIMHead`) scores each against the target and returns
    ``loss_block{n}`` per level (1-indexed blocks). Optional ``target_generator``: a frozen
    teacher producing the targets instead of the pixels. MFF fusion weights are logged as
    ``fusion_weight_block{n}``.

    Configured as one level with an 8-block decoder it is plain MAE, and with ``fusion_indices``
    it is MFF: mmpretrain's checkpoints of those load with no missing or unexpected keys and
    give the same loss for the same seed.

    ``neck.num_levels`` defaults to the number of supervised blocks of the backbone; a mismatch
    between backbone levels, decoders and ``head.level_weights`` is a ``ValueError`` at build
    time.
    """

    def __init__(self,
                 backbone: Union[dict, nn.Module],
                 neck: Union[dict, nn.Module],
                 head: Union[dict, nn.Module],
                 target_generator: Optional[Union[dict, nn.Module]] = None,
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if not isinstance(backbone, nn.Module):
            backbone = MODELS.build(backbone)
        if not hasattr(backbone, 'level_names'):
            raise ValueError('DeepMIM: the backbone must return supervised levels '
                             f'(e.g. DeepMIMViT), got {type(backbone).__name__}')
        num_levels = len(backbone.out_indices)
        if isinstance(neck, dict) and 'num_levels' not in neck:
            neck = dict(neck, num_levels=num_levels)
        if isinstance(target_generator, dict):
            _check_registered('target_generator', target_generator)
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=head,
            target_generator=target_generator,
            pretrained=pretrained,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        if getattr(self.neck, 'num_levels', 1) != num_levels:
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
        """Widths, patch grid and prediction size of backbone, neck and head agree (ValueError
        naming both fields otherwise, instead of a tensor-shape error at the first step)."""
        backbone, neck, head = self.backbone, self.neck, self.head
        patch = backbone.patch_embed.projection.kernel_size[0]
        grid = tuple(backbone.patch_resolution)
        embed = getattr(neck, 'decoder_embed', None)
        if embed is not None and embed.in_features != backbone.embed_dims:
            raise ValueError(f'DeepMIM: neck.embed_dim={embed.in_features} but the backbone is '
                             f'{backbone.embed_dims} wide (model.backbone.arch); set '
                             f'model.neck.embed_dim={backbone.embed_dims}')
        num_patches = getattr(neck, 'num_patches', None)
        if num_patches is not None and num_patches != grid[0] * grid[1]:
            raise ValueError(f'DeepMIM: neck.num_patches={num_patches} but the backbone cuts '
                             f'its images into {grid[0]}x{grid[1]} patches (model.backbone.'
                             f'img_size / patch_size); set model.neck.num_patches='
                             f'{grid[0] * grid[1]}')
        teacher = self.target_generator
        head_patch = getattr(head, 'patch_size', None)
        pixel_dim = head_patch**2 * head.in_channels if head_patch else None
        hybrid = isinstance(teacher, MAEHybridTarget)
        if (teacher is None or hybrid) and head_patch is not None and head_patch != patch:
            raise ValueError(f'DeepMIM: head.patch_size={head_patch} but model.backbone.'
                             f'patch_size={patch}; they must be equal')
        if hybrid and pixel_dim is not None and teacher.out_channels != pixel_dim:
            raise ValueError(f'DeepMIM: the teacher (model.target_generator.decoder) predicts '
                             f'{teacher.out_channels} values per patch but the head\'s pixel '
                             f'target has {pixel_dim} (model.head.patch_size / in_channels)')
        pred = getattr(neck, 'decoder_pred', None)
        want = getattr(teacher, 'out_channels', None) if teacher is not None else pixel_dim
        if pred is not None and want is not None and pred.out_features != want:
            what = (f'the teacher\'s {want}-d features' if teacher is not None else
                    f'{head_patch}x{head_patch}x{head.in_channels} pixels per patch')
            raise ValueError(f'DeepMIM: the neck predicts {pred.out_features} values per patch '
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
        """One target per supervised level (shallowest first), each computed once.

        - no ``target_generator``: the head's patch target (pixels, ``norm_pix``) for every level;
        - :class:`MAEHybridTarget`: the teacher reconstructs the patches from the student's
          ``num_visible`` visible ones and mixes that into the pixel target, per level;
        - any other target generator (e.g. :class:`CLIPTeacher`): ``target_generator(inputs)``
          for every level.
        """
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
            blocks = self.backbone.fusion_indices
            losses.update({f'fusion_weight_block{b + 1}': w.detach()
                           for b, w in zip(blocks, fusion_weights)})
        return losses


def _check_registered(field: str, cfg: dict) -> None:
    """A ``type`` that is not registered is a ValueError naming the field and the choices."""
    from .. import target_generators
    kind = cfg.get('type')
    if isinstance(kind, str) and MODELS.get(kind) is None:
        ours = sorted(n for n in target_generators.__all__ if MODELS.get(n) is not None)
        raise ValueError(f'DeepMIM: {field}.type={kind!r} is not a registered model; this '
                         f'plugin provides {ours} (a class '
                         'name from mmpretrain\'s MODELS registry also works)')
