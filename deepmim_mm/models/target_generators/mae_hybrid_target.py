"""Hybrid targets: a frozen MIM teacher's reconstruction mixed into auxiliary levels' targets."""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from mmengine.logging import MMLogger
from mmpretrain.registry import MODELS

from ...checkpoint import fold_keys, load_checked_state, read_state_dict
from .frozen_teacher import FrozenTeacher

# DeepMIM (arXiv 2303.08817) hybrid targets for ViT-B's blocks 6, 8, 10: docs/en/notes/models.md.
DEFAULT_ALPHAS = (0.0, 1 / 3, 2 / 3)

# The teacher of DeepMIM's hybrid variant: MAE ViT-B/16 (arXiv 2111.06377) as mmpretrain's
# configs/_base_/models/mae_vit-base-p16.py, so mmpretrain's MAE checkpoints load as they are.
MAE_VIT_B_ENCODER = dict(type='DeepMIMViT', arch='b', img_size=224, patch_size=16)
MAE_VIT_B_DECODER = dict(type='MAEPretrainDecoder', num_patches=196, patch_size=16, in_chans=3,
                         embed_dim=768, decoder_embed_dim=512, decoder_depth=8,
                         decoder_num_heads=16, mlp_ratio=4.)


def _check_type(cfg, field: str, accepted: Tuple[str, ...], hint: str = '') -> None:
    """``cfg`` builds one of ``accepted`` (a class counts by its name; no ``type``: the first)."""
    kind = cfg.get('type', accepted[0]) if isinstance(cfg, dict) else None
    kind = getattr(kind, '__name__', kind)
    if kind not in accepted:
        got = f'{field}.type={kind!r}' if isinstance(cfg, dict) else f'{field}={cfg!r}'
        raise ValueError(f'MAEHybridTarget: {field} must be a config dict of type '
                         f'{" or ".join(accepted)}{hint}, got {got}')


def _check_alphas(alphas) -> Tuple[float, ...]:
    if (isinstance(alphas, (str, bytes)) or not isinstance(alphas, Sequence)
            or not all(isinstance(a, (int, float)) and 0 <= a <= 1 for a in alphas)):  # NaN too
        raise ValueError(f'MAEHybridTarget: alphas must be a sequence of floats in [0, 1] (1 = '
                         f'raw target, 0 = teacher reconstruction), one per auxiliary level, '
                         f'got {alphas!r}')
    return tuple(float(a) for a in alphas)


@MODELS.register_module()
class MAEHybridTarget(FrozenTeacher):
    """Hybrid targets of DeepMIM (arXiv 2303.08817) from a frozen MIM teacher.

    A pretrained MIM model (encoder + final decoder: mmpretrain's MAE, or this plugin's MAE /
    DeepMIM / MFF) encodes the **student's visible patches** and reconstructs every patch,
    ``x_hat`` (``B x N x D``); auxiliary level ``m``'s target is ``alpha_m * raw + (1 - alpha_m)
    * x_hat`` (:meth:`mix`), the last level's the raw target. The teacher must predict what the
    head's raw target holds (a ``norm_pix`` MAE needs ``norm_pix=True`` in the student's head).

    Adds over mmpretrain's ``MAEViT`` + ``MAEPretrainDecoder`` (which it is, frozen): encoding
    the patches the student kept instead of a fresh mask, the alpha mixing, checked loading
    (``backbone.*`` fills the encoder, ``neck.*`` the decoder; a DeepMIM checkpoint's
    ``neck.aux_decoders.*`` are dropped and logged) and being an unsaved :class:`FrozenTeacher`.

    Args:
        checkpoint (str, optional): the teacher's pretraining checkpoint (local path).
        encoder (dict): ``DeepMIMViT`` (or ``MAEViT``) config; its last level is used;
            ``fusion_indices`` for an MFF teacher. Default: MAE ViT-B/16 at 224.
        decoder (dict): ``MAEPretrainDecoder`` (or one-level ``MultiLevelDecoder``) config.
            Default: MAE's ViT-B decoder (8 blocks, 512-d).
        alphas (sequence of float): one weight in [0, 1] per auxiliary level, shallowest first.
        mask_ratio (float, optional): if given, must equal the student backbone's.
        random_init (bool): random weights without a checkpoint (tests only).
    """

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
        self.mask_ratio = mask_ratio
        if checkpoint is None and not random_init:
            raise ValueError('MAEHybridTarget: checkpoint is required (a local path to a MIM '
                             "pretraining checkpoint: this plugin's MAE/DeepMIM/MFF or "
                             "mmpretrain's MAE); random_init=True builds random weights for "
                             'tests only')
        self.checkpoint = checkpoint
        _check_type(encoder, 'encoder', ('DeepMIMViT', 'MAEViT'),
                    ' (an MFF teacher sets fusion_indices)')
        _check_type(decoder, 'decoder', ('MAEPretrainDecoder', 'MultiLevelDecoder'))
        if decoder.get('num_levels', 1) not in (1, None):
            raise ValueError(f'MAEHybridTarget: decoder.num_levels={decoder["num_levels"]}; the '
                             'teacher uses only its final decoder (num_levels=1); auxiliary '
                             'decoders of a DeepMIM checkpoint are dropped at load')
        # A DeepMIMViT that returns only its deepest level, and the final decoder alone.
        enc = MODELS.build(dict(encoder, type='DeepMIMViT', out_indices=[-1], drop_rate=0.,
                                drop_path_rate=0.))
        dec_cfg = {k: v for k, v in decoder.items() if k not in ('num_levels', 'aux_decoder_depth')}
        dec = MODELS.build(dict(dec_cfg, type='MAEPretrainDecoder'))
        if dec.decoder_embed.in_features != enc.embed_dims:  # random_init: no checkpoint check
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

    def _load(self, enc: nn.Module, dec: nn.Module, path: str) -> None:
        """Every teacher weight from the file, strictly; auxiliary decoders dropped."""
        state = read_state_dict(path, 'MAEHybridTarget: model.target_generator.checkpoint')
        field = f'model.target_generator.checkpoint (teacher {self.arch})'
        enc_report = load_checked_state(enc, state, path, prefix='backbone.', ignore=(),
                                        field_name=field)
        aux = ((r'aux_decoders\..*', 'auxiliary decoder; the teacher uses the final one'), )
        dec_report = load_checked_state(dec, state, path, prefix='neck.', ignore=aux,
                                        field_name=field)
        dropped = sorted(set(enc_report.dropped) & set(dec_report.dropped))  # used by neither
        MMLogger.get_current_instance().info(
            f'MAEHybridTarget: loaded the teacher {self.arch} from {path} '
            f'({len(enc_report.loaded)} encoder + {len(dec_report.loaded)} decoder tensors; '
            f'dropped {fold_keys(dropped)}); frozen, not saved in checkpoints')

    @property
    def out_channels(self) -> int:
        """Size of the teacher's per-patch prediction (768 for ViT-B/16 pixels)."""
        return self.decoder.decoder_pred.out_features

    def match_student(self, backbone: nn.Module) -> None:
        """The student's token grid and mask ratio, one alpha per auxiliary level."""
        grid, own = tuple(backbone.patch_resolution), tuple(self.encoder.patch_resolution)
        if grid != own:
            raise ValueError(f'MAEHybridTarget: teacher patch grid {own} differs from the '
                             f'student grid {grid}; set model.target_generator.encoder.img_size '
                             '/ patch_size (and decoder.num_patches) to the student\'s')
        if self.mask_ratio is not None and self.mask_ratio != backbone.mask_ratio:
            raise ValueError(f'MAEHybridTarget: model.target_generator.mask_ratio='
                             f'{self.mask_ratio} differs from model.backbone.mask_ratio='
                             f'{backbone.mask_ratio}; leave it out (the teacher sees the '
                             "student's visible patches)")
        names = backbone.level_names
        if len(self.alphas) != len(names) - 1:
            raise ValueError(
                f'MAEHybridTarget: model.target_generator.alphas={list(self.alphas)} has '
                f'{len(self.alphas)} entries but the student supervises {len(names)} levels '
                f'{names}: give one alpha per auxiliary level {names[:-1]} (the last level, '
                f'{names[-1]}, uses the raw target)')

    def extra_repr(self) -> str:
        return (f'{self.arch}, alphas={self.alphas}, checkpoint={self.checkpoint!r}, frozen, '
                'not saved in state_dict')

    def mix(self, raw_target: torch.Tensor, recon: torch.Tensor) -> List[torch.Tensor]:
        """``[alpha_m * raw + (1 - alpha_m) * recon for each auxiliary level] + [raw]``."""
        recon = recon.to(raw_target.dtype)
        return [raw_target * a + recon * (1.0 - a) for a in self.alphas] + [raw_target]

    @torch.no_grad()
    def forward(self, inputs: torch.Tensor, ids_keep: torch.Tensor,
                ids_restore: torch.Tensor) -> torch.Tensor:
        """The ``B x N x D`` reconstruction from the student's visible patches ``ids_keep``."""
        levels, _ = self.encoder.encode_visible(inputs.to(self.encoder.pos_embed.dtype), ids_keep)
        return self.decoder(levels[-1], ids_restore)
