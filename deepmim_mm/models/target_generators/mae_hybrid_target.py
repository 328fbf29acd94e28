"""Hybrid targets: a frozen MIM teacher's reconstruction mixed into auxiliary levels' targets."""
import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from mmpretrain.registry import MODELS

from ...checkpoint import load_checked_state, read_state_dict
from ..backbones.deepmim_vit import DeepMIMViT
from .frozen_teacher import FrozenTeacher

# DeepMIM paper (arXiv 2303.08817), hybrid targets: the target of auxiliary level m is
# alpha_m * raw + (1 - alpha_m) * teacher reconstruction, smaller alpha for shallower levels.
# Second-hand numbers (../shared/spec/methods.md, not in the official code): alpha = 0, 1/3, 2/3 for
# ViT-B's blocks 6, 8, 10 (1-indexed); the last level uses the raw target.
DEFAULT_ALPHAS = (0.0, 1 / 3, 2 / 3)

# The teacher DeepMIM's hybrid variant uses: a pretrained MAE ViT-B/16 (He et al., arXiv
# 2111.06377) -- encoder and 8-block, 512-d decoder exactly as mmpretrain's
# configs/_base_/models/mae_vit-base-p16.py, so mmpretrain's MAE checkpoints load as they are.
MAE_VIT_B_ENCODER = dict(type='DeepMIMViT', arch='b', img_size=224, patch_size=16)
MAE_VIT_B_DECODER = dict(type='MAEPretrainDecoder', num_patches=196, patch_size=16, in_chans=3,
                         embed_dim=768, decoder_embed_dim=512, decoder_depth=8,
                         decoder_num_heads=16, mlp_ratio=4.)

_ENCODER_TYPES = ('DeepMIMViT', 'MAEViT')
_DECODER_TYPES = ('MAEPretrainDecoder', 'MultiLevelDecoder')


def _check_alphas(alphas) -> Tuple[float, ...]:
    if isinstance(alphas, (str, bytes)) or not isinstance(alphas, Sequence):
        raise ValueError(f'MAEHybridTarget: alphas must be a sequence of floats in [0, 1], one per '
                         f'auxiliary level, got {alphas!r}')
    out = []
    for a in alphas:
        try:
            a = float(a)
        except (TypeError, ValueError):
            a = float('nan')
        if not math.isfinite(a) or not 0.0 <= a <= 1.0:
            raise ValueError(f'MAEHybridTarget: every alpha must be in [0, 1] (1 = raw target, '
                             f'0 = teacher reconstruction), got alphas={list(alphas)}')
        out.append(a)
    return tuple(out)


def _encoder_cfg(encoder: dict) -> dict:
    if not isinstance(encoder, dict):
        raise ValueError(f'MAEHybridTarget: encoder must be a config dict, got {encoder!r}')
    cfg = dict(encoder)
    kind = cfg.pop('type', 'DeepMIMViT')
    if kind not in _ENCODER_TYPES and kind is not DeepMIMViT:
        raise ValueError(f'MAEHybridTarget: encoder.type={kind!r} is not supported; accepted: '
                         f'{list(_ENCODER_TYPES)} (built as DeepMIMViT, whose keys are MAEViT\'s; '
                         'an MFF teacher sets fusion_indices)')
    # The teacher only needs its deepest level (after the final norm / MFF fusion).
    cfg['out_indices'] = [-1]
    cfg['drop_path_rate'] = 0.0
    cfg['drop_rate'] = 0.0
    cfg['type'] = 'DeepMIMViT'
    return cfg


def _decoder_cfg(decoder: dict) -> dict:
    if not isinstance(decoder, dict):
        raise ValueError(f'MAEHybridTarget: decoder must be a config dict, got {decoder!r}')
    cfg = dict(decoder)
    kind = cfg.pop('type', 'MAEPretrainDecoder')
    if kind not in _DECODER_TYPES:
        raise ValueError(f'MAEHybridTarget: decoder.type={kind!r} is not supported; accepted: '
                         f'{list(_DECODER_TYPES)} (one level: the final decoder of the teacher)')
    levels = cfg.pop('num_levels', 1)
    cfg.pop('aux_decoder_depth', None)
    if levels not in (1, None):
        raise ValueError(f'MAEHybridTarget: decoder.num_levels={levels}; the teacher uses only '
                         'its final decoder (num_levels=1); auxiliary decoders of a DeepMIM '
                         'checkpoint are dropped at load')
    cfg['type'] = 'MAEPretrainDecoder'  # the final level's decoder has exactly its keys
    return cfg


@MODELS.register_module()
class MAEHybridTarget(FrozenTeacher):
    """Hybrid targets of DeepMIM (arXiv 2303.08817) from a frozen MIM teacher.

    A pretrained MIM model (encoder + final decoder: mmpretrain's MAE, or a MAE / DeepMIM / MFF
    pretraining checkpoint of this plugin) encodes the **same visible patches** as the student
    and reconstructs every patch, ``x_hat`` (``B x N x D``). The target of auxiliary level ``m``
    is ``alpha_m * raw + (1 - alpha_m) * x_hat``; the last level uses the raw target. Shallow
    levels (small alpha) thus learn the easier, teacher-smoothed target.

    Adds over mmpretrain's ``MAEViT`` + ``MAEPretrainDecoder`` (which it *is*, frozen:
    :class:`DeepMIMViT` with only its last level, and ``MAEPretrainDecoder``): encoding with
    the student's mask instead of a fresh random one, the alpha mixing, checked loading of
    pretraining checkpoints, and being a frozen, unsaved teacher (:class:`FrozenTeacher`: not in
    the training checkpoint, not optimised, eval mode, ``forward`` under ``torch.no_grad()`` in
    the run's autocast).

    Protocol with :class:`DeepMIM` (:class:`FrozenTeacher`): :meth:`targets` mixes the head's
    raw target with the reconstruction and returns one target per supervised level (shallowest
    first); :meth:`match_student` takes the student's token grid, mask ratio and levels
    (``len(alphas)`` must be the number of auxiliary levels).

    Target space (assumption): the mixture only makes sense when the teacher's decoder predicts
    what the head's raw target holds. A pixel MAE trained with ``norm_pix=True`` (mmpretrain's
    and the official MAE recipe) predicts per-patch normalised pixels, so the student's head
    must use ``norm_pix=True`` (the MAE/DeepMIM pixel configs do); with ``norm_pix=False`` use a
    teacher trained without it. A shape mismatch is an error; a space mismatch cannot be
    detected.

    Visible patches: ``keep = argsort(ids_restore)[:, :len_keep]`` with
    ``len_keep = int(N * (1 - mask_ratio))``, exactly the rule of mmpretrain's
    ``MAEViT.random_masking``; ``mask_ratio`` is the student backbone's: DeepMIM sets it at build
    time (:meth:`match_mask_ratio`), so the teacher never counts the mask (a host sync per step).

    Checkpoints: ``backbone.*`` fills the encoder and ``neck.*`` the decoder (a DeepMIM
    checkpoint's ``neck.aux_decoders.*`` and any other key are dropped and reported in the log);
    missing, unexpected or mis-shaped keys are a ``ValueError`` naming them.

    Args:
        checkpoint (str, optional): local path of the teacher's pretraining checkpoint
            (mmengine format, ``state_dict`` with ``backbone.`` / ``neck.`` keys). Required
            unless ``random_init=True`` (tests).
        encoder (dict): ``DeepMIMViT`` (or ``MAEViT``) config of the teacher's encoder; its
            ``out_indices`` are ignored (the last level is used), ``fusion_indices`` for an MFF
            teacher. Default: MAE ViT-B/16 at 224.
        decoder (dict): ``MAEPretrainDecoder`` config (or ``MultiLevelDecoder`` with one level)
            of the teacher's final decoder. Default: MAE's ViT-B decoder (8 blocks, 512-d).
        alphas (sequence of float): one weight in [0, 1] per auxiliary level, shallowest first.
            Default ``(0, 1/3, 2/3)`` (DeepMIM paper, second-hand).
        mask_ratio (float, optional): the student's mask ratio. ``None`` (default): the
            student backbone's, set by DeepMIM at build time (0.75 before that, MAE's and
            DeepMIM's); a value that differs from the student's is a ``ValueError`` then.
        random_init (bool): random weights without a checkpoint (tests only).
    """

    pixel_targets = True

    def __init__(self,
                 checkpoint: Optional[str] = None,
                 encoder: dict = MAE_VIT_B_ENCODER,
                 decoder: dict = MAE_VIT_B_DECODER,
                 alphas: Sequence[float] = DEFAULT_ALPHAS,
                 mask_ratio: Optional[float] = None,
                 random_init: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.alphas = _check_alphas(alphas)
        self._mask_ratio_given = mask_ratio is not None
        if mask_ratio is None:
            mask_ratio = 0.75
        if not isinstance(mask_ratio, (int, float)) or not 0 < mask_ratio < 1:
            raise ValueError(f'MAEHybridTarget: mask_ratio must be in (0, 1) and equal to the '
                             f"student backbone's, got {mask_ratio!r}")
        self.mask_ratio = float(mask_ratio)
        if checkpoint is None and not random_init:
            raise ValueError('MAEHybridTarget: checkpoint is required (a local path to a MIM '
                             "pretraining checkpoint: this plugin's MAE/DeepMIM/MFF or "
                             "mmpretrain's MAE); random_init=True builds random weights for "
                             'tests only')
        self.checkpoint = checkpoint
        self.level_names: Optional[List[str]] = None

        enc = MODELS.build(dict(_encoder_cfg(encoder), mask_ratio=self.mask_ratio))
        dec = MODELS.build(_decoder_cfg(decoder))
        if dec.decoder_embed.in_features != enc.embed_dims:
            raise ValueError(f'MAEHybridTarget: decoder.embed_dim={dec.decoder_embed.in_features} '
                             f'must equal the encoder width {enc.embed_dims}')
        n = enc.patch_resolution[0] * enc.patch_resolution[1]
        if dec.num_patches != n:
            raise ValueError(f'MAEHybridTarget: decoder.num_patches={dec.num_patches} but the '
                             f'encoder has {n} patches (img_size / patch_size)')
        self.arch = (f'encoder {type(enc).__name__}(embed_dims={enc.embed_dims}, '
                     f'num_layers={len(enc.layers)}, grid={tuple(enc.patch_resolution)}, '
                     f'fusion_indices={enc.fusion_indices}) + decoder MAEPretrainDecoder('
                     f'depth={len(dec.decoder_blocks)}, dim={dec.decoder_embed.out_features}, '
                     f'out={dec.decoder_pred.out_features})')
        if checkpoint is not None:
            self._load(enc, dec, checkpoint)
        else:
            enc.init_weights()
            dec.init_weights()
        self._freeze('encoder', enc)
        self._freeze('decoder', dec)

    # ------------------------------------------------------------------ building and loading
    def _load(self, enc: nn.Module, dec: nn.Module, path: str) -> None:
        state = read_state_dict(path, 'MAEHybridTarget: model.target_generator.checkpoint')
        if not any(k.startswith('backbone.') for k in state) or not any(
                k.startswith('neck.') for k in state):
            raise ValueError(f'MAEHybridTarget: {path} has no backbone.* or no neck.* keys '
                             f'(first keys: {list(state)[:5]}); expected a pretraining checkpoint '
                             "of this plugin (DeepMIM / MAE / MFF) or of mmpretrain's MAE, with "
                             'the encoder under backbone. and the decoder under neck.')
        if enc.fusion_indices is None and any(k.startswith('backbone.proj_') for k in state):
            raise ValueError(f'MAEHybridTarget: {path} holds backbone.proj_layers / proj_weights '
                             'but the teacher encoder fuses nothing (an MFF checkpoint: set '
                             'encoder.fusion_indices to its fused blocks)')
        # Strict: every teacher weight from the file, no encoder key dropped.
        field = f'model.target_generator.checkpoint (teacher {self.arch})'
        enc_report = load_checked_state(enc, state, path, prefix='backbone.', ignore=(),
                                        field_name=field)
        aux = ((r'aux_decoders\..*', 'auxiliary decoder; the teacher uses the final one'), )
        dec_report = load_checked_state(dec, state, path, prefix='neck.', ignore=aux,
                                        field_name=field)
        dropped = set(enc_report.dropped) & set(dec_report.dropped)  # in neither part
        aux_keys = [k for k in dropped if k.startswith('neck.aux_decoders.')]
        other = sorted(dropped - set(aux_keys))
        note = ''
        if aux_keys:
            note += f'; dropped {len(aux_keys)} keys of auxiliary decoders (neck.aux_decoders.*)'
        if other:
            note += f'; dropped {len(other)} other keys {other[:8]}'
        MMLogger.get_current_instance().info(
            f'MAEHybridTarget: loaded the teacher {self.arch} from {path} '
            f'({len(enc_report.loaded)} encoder + {len(dec_report.loaded)} decoder tensors)'
            f'{note}; '
            'frozen, not saved in checkpoints')

    @property
    def out_channels(self) -> int:
        """Size of the teacher's per-patch prediction (768 for ViT-B/16 pixels)."""
        return self.decoder.decoder_pred.out_features

    def match_student(self, backbone: nn.Module) -> None:
        """Follow the student: same token grid, its mask ratio, one alpha per auxiliary level."""
        self.match_token_grid(backbone.patch_resolution)
        self.match_mask_ratio(backbone.mask_ratio)
        self.check_levels(backbone.level_names)

    def match_token_grid(self, grid: Union[int, Sequence[int]]) -> None:
        """The teacher must see the student's patch grid: a mismatch is a ``ValueError``."""
        grid = (grid, grid) if isinstance(grid, int) else tuple(int(g) for g in grid)
        own = tuple(self.encoder.patch_resolution)
        if grid != own:
            raise ValueError(f'MAEHybridTarget: teacher patch grid {own} differs from the '
                             f'student grid {grid}; set encoder.img_size / patch_size (and '
                             'decoder.num_patches) to the student\'s')

    def match_mask_ratio(self, mask_ratio: float) -> None:
        """Use the student's mask ratio (visible patches = the student's); a ``mask_ratio``
        given in the config that differs from it is a ``ValueError``."""
        if self._mask_ratio_given and abs(self.mask_ratio - mask_ratio) > 1e-9:
            raise ValueError(f'MAEHybridTarget: mask_ratio={self.mask_ratio} differs from the '
                             f"student backbone's mask_ratio={mask_ratio}; leave it out to "
                             "follow the student's")
        self.mask_ratio = float(mask_ratio)
        self.encoder.mask_ratio = self.mask_ratio

    def check_levels(self, level_names: Sequence[str]) -> None:
        """One alpha per auxiliary level: ``len(alphas) == len(level_names) - 1``."""
        names = list(level_names)
        if len(self.alphas) != len(names) - 1:
            raise ValueError(
                f'MAEHybridTarget: alphas={list(self.alphas)} has {len(self.alphas)} entries but '
                f'the student supervises {len(names)} levels {names}: give one alpha per '
                f'auxiliary level {names[:-1]} (the last level, {names[-1]}, uses the raw '
                'target)')
        self.level_names = names

    def extra_repr(self) -> str:
        return (f'{self.arch}, alphas={self.alphas}, mask_ratio={self.mask_ratio}, '
                f'checkpoint={self.checkpoint!r}, frozen, not saved in state_dict')

    # ------------------------------------------------------------------ forward
    def mix(self, raw_target: torch.Tensor, recon: torch.Tensor) -> List[torch.Tensor]:
        """``[alpha_m * raw + (1 - alpha_m) * recon for each auxiliary level] + [raw]``."""
        if recon.shape != raw_target.shape:
            raise ValueError(f'MAEHybridTarget: teacher reconstruction {tuple(recon.shape)} and '
                             f'raw target {tuple(raw_target.shape)} differ: the teacher must '
                             'predict what the head reconstructs (same patch size, channels)')
        recon = recon.to(raw_target.dtype)
        return [raw_target * a + recon * (1.0 - a) for a in self.alphas] + [raw_target]

    @torch.no_grad()
    def reconstruct(self, inputs: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """The teacher's reconstruction ``B x N x D`` from the student's visible patches."""
        enc = self.encoder
        levels, _ = enc.encode_visible(inputs.to(enc.pos_embed.dtype), ids_restore)
        return self.decoder(levels[-1], ids_restore)

    def targets(self, inputs: torch.Tensor, ids_restore: torch.Tensor,
                head: nn.Module) -> List[torch.Tensor]:
        """One target per level: the head's raw target mixed with the reconstruction."""
        return self(inputs, ids_restore=ids_restore, raw_target=head.construct_target(inputs))

    @torch.no_grad()
    def forward(self, inputs: torch.Tensor, ids_restore: torch.Tensor,
                raw_target: torch.Tensor) -> List[torch.Tensor]:
        """One target per supervised level, shallowest first (see the class doc)."""
        if inputs.dim() != 4:
            raise ValueError(f'MAEHybridTarget: expected images B x C x H x W, got '
                             f'{tuple(inputs.shape)}')
        return self.mix(raw_target, self.reconstruct(inputs, ids_restore))
