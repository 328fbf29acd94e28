"""Frozen OpenAI-CLIP image tower as the DeepMIM-CLIP feature target."""
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import MMLogger
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.registry import MODELS

from ...checkpoint import load_checked_state, read_checkpoint, state_dict_of
from ...checkpoint.keys import clip_visual_to_mmpretrain
from ...checkpoint.loading import describe_keys
from .frozen_teacher import FrozenTeacher

# OpenAI CLIP image towers (github.com/openai/CLIP, clip/model.py: heads = width // 64).
CLIP_ARCHS: Dict[str, dict] = {
    'ViT-B/32': dict(width=768, layers=12, heads=12, patch_size=32, output_dim=512),
    'ViT-B/16': dict(width=768, layers=12, heads=12, patch_size=16, output_dim=512),
    'ViT-L/14': dict(width=1024, layers=24, heads=16, patch_size=14, output_dim=768),
}
_ARCH_KEYS = ('width', 'layers', 'heads', 'patch_size', 'output_dim')

# Statistics of the images the teacher receives (mmpretrain's SelfSupDataPreprocessor, ImageNet,
# 0-255 scale) and of the images CLIP was trained on (github.com/openai/CLIP, clip/clip.py).
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _normalise_arch(arch: Union[str, dict]) -> Tuple[str, dict]:
    name = arch.replace('-', '/', 2).replace('ViT/', 'ViT-', 1) if isinstance(arch, str) else ''
    if name in CLIP_ARCHS:  # open_clip's spelling too: 'ViT-B-16' -> 'ViT-B/16'
        return name, dict(CLIP_ARCHS[name])
    if not isinstance(arch, dict):
        raise ValueError(f'CLIPTeacher: arch={arch!r} is unknown; accepted: '
                         f'{sorted(CLIP_ARCHS)} or a dict with keys {list(_ARCH_KEYS)}')
    missing = [k for k in _ARCH_KEYS if k not in arch]
    extra = [k for k in arch if k not in _ARCH_KEYS + ('mlp_ratio', )]
    if missing or extra:
        raise ValueError(f'CLIPTeacher: arch dict needs keys {list(_ARCH_KEYS)} (optional '
                         f'mlp_ratio); missing {missing}, unknown {extra}')
    if arch['width'] % arch['heads']:
        raise ValueError(f"CLIPTeacher: arch width {arch['width']} is not divisible by "
                         f"heads {arch['heads']}")
    return 'custom', dict(arch)


def load_clip_visual_state_dict(path: str) -> 'OrderedDict[str, torch.Tensor]':
    """The ``visual.*`` tensors, prefix stripped, of any file the plugin's one reader takes
    (OpenAI's TorchScript ``.pt``, state dicts with ``visual.*`` keys, open_clip's, nested or
    not); a ValueError for a file without the image tower."""
    field = 'CLIPTeacher: model.target_generator.checkpoint'
    state = state_dict_of(read_checkpoint(path, field))
    visual = OrderedDict((k[len('visual.'):], v) for k, v in state.items()
                         if k.startswith('visual.') and (v.dim() > 0 or v.is_floating_point()))
    if not visual:
        text = any(k.startswith(('token_embedding.', 'text_projection')) for k in state)
        what = ('a CLIP checkpoint without the image tower (text encoder only)' if text else
                f'not a CLIP checkpoint ({describe_keys(state)})')
        raise ValueError(f'{field}: {path} holds no visual.* keys: {what}; the teacher needs '
                         'OpenAI / open_clip CLIP weights with the image tower (an OpenAI .pt, a '
                         'state dict with visual.* keys, or an open_clip state dict)')
    return visual


@MODELS.register_module()
class CLIPTeacher(FrozenTeacher):
    """Frozen CLIP image tower producing DeepMIM-CLIP's per-patch feature targets (DeepMIM,
    arXiv 2303.08817, official code).

    The tower is mmpretrain's ``VisionTransformer`` configured as CLIP's (``_build_tower``).
    Adds over it: loading OpenAI / open_clip checkpoints (keys renamed by
    :func:`~deepmim_mm.checkpoint.keys.clip_visual_to_mmpretrain`, checked by
    ``load_checked_state``), the re-normalisation, the ``proj`` matrix, and being a frozen,
    unsaved teacher (:class:`FrozenTeacher`); under autocast it runs in the autocast dtype.

    Args:
        checkpoint (str, optional): local path of the CLIP weights. Required unless
            ``random_init=True`` (tests).
        arch (str | dict): ``'ViT-B/16'`` (default), ``'ViT-L/14'``, ``'ViT-B/32'``, or a dict with
            ``width, layers, heads, patch_size, output_dim`` (optional ``mlp_ratio``, default 4).
        img_size (int): resolution the tower runs at; inputs of another size are resized
            (bicubic) to it. Token grid = ``img_size // patch_size``.
        interpolate_pos (bool): allow a token grid different from the checkpoint's positional
            embedding (bicubic resize at load) and from the student's (:meth:`match_token_grid`).
            Default False: a mismatch is a ``ValueError``.
        quick_gelu (bool): QuickGELU as in OpenAI's models (default); False for open_clip towers
            trained with GELU (e.g. LAION ``ViT-B-16``).
        mean, std (sequence of 3 floats): statistics of the incoming images, 0-255 scale.
        random_init (bool): build random weights without a checkpoint (tests only).
    """

    def __init__(self,
                 checkpoint: Optional[str] = None,
                 arch: Union[str, dict] = 'ViT-B/16',
                 img_size: int = 224,
                 interpolate_pos: bool = False,
                 quick_gelu: bool = True,
                 mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD,
                 random_init: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.arch_name, self.arch = _normalise_arch(arch)
        patch = self.arch['patch_size']
        if not isinstance(img_size, int) or img_size < patch or img_size % patch:
            raise ValueError(f'CLIPTeacher: img_size={img_size!r} must be a positive multiple of '
                             f'the patch size {patch} of arch {self.arch_name!r}')
        if checkpoint is None and not random_init:
            raise ValueError('CLIPTeacher: checkpoint is required (a local path to CLIP weights: '
                             "OpenAI .pt, a state dict with visual.* keys, or open_clip's); "
                             'random_init=True builds random weights for tests only')
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f'CLIPTeacher: mean/std need 3 values (RGB), got {mean}, {std}')
        self.checkpoint = checkpoint
        self.img_size = img_size
        self.interpolate_pos = interpolate_pos
        self.quick_gelu = quick_gelu

        # x_clip = ((x * std + mean) / 255 - clip_mean) / clip_std = x * scale + shift
        in_mean, in_std = torch.tensor(mean), torch.tensor(std)
        c_mean, c_std = torch.tensor(CLIP_MEAN), torch.tensor(CLIP_STD)
        self.register_buffer('scale', (in_std / 255 / c_std).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('shift', ((in_mean / 255 - c_mean) / c_std).view(1, 3, 1, 1),
                             persistent=False)

        tower = self._build_tower(img_size)
        if checkpoint is not None:
            self._load(tower, checkpoint)
        else:
            tower.vit.init_weights()
            nn.init.normal_(tower.proj, std=self.arch['width']**-0.5)
            self._ckpt_pos_embed = tower.vit.pos_embed.detach().clone()
        self._freeze('tower', tower)

    # ------------------------------------------------------------------ building and loading
    def _build_tower(self, img_size: int) -> nn.Module:
        a = self.arch
        vit = VisionTransformer(
            arch=dict(embed_dims=a['width'], num_layers=a['layers'], num_heads=a['heads'],
                      feedforward_channels=int(a['width'] * a.get('mlp_ratio', 4))),
            img_size=img_size,
            patch_size=a['patch_size'],
            norm_cfg=dict(type='LN', eps=1e-5),  # torch's default, as in CLIP
            final_norm=True,  # = ln_post
            pre_norm=True,  # = ln_pre; also drops the patch-embedding bias
            out_type='raw',
            with_cls_token=True,
            layer_cfgs=dict(act_cfg=dict(type='mmpretrain.QuickGELU')
                            if self.quick_gelu else dict(type='GELU')))
        tower = nn.Module()
        tower.vit = vit
        tower.proj = nn.Parameter(torch.zeros(a['width'], a['output_dim']))
        return tower

    @property
    def grid_size(self) -> Tuple[int, int]:
        """The token grid the teacher outputs, ``(img_size // patch,) * 2``."""
        g = self.img_size // self.arch['patch_size']
        return (g, g)

    @property
    def out_channels(self) -> int:
        """Feature size of the targets (512 for ViT-B/16): what the decoders must predict."""
        return self.arch['output_dim']

    def _load(self, tower: nn.Module, path: str) -> None:
        visual = load_clip_visual_state_dict(path)
        state, unmapped = clip_visual_to_mmpretrain(visual)
        state.update((k, visual[k]) for k in unmapped)  # reported as keys the tower lacks
        name = f'arch {self.arch_name!r} ({", ".join(f"{k}={self.arch[k]}" for k in _ARCH_KEYS)})'
        pos = self._ckpt_pos_embed = state.get('vit.pos_embed')
        patch = self.arch['patch_size']
        if (pos is not None and not self.interpolate_pos and pos.shape[-1] == self.arch['width']
                and pos.shape[1] != self.grid_size[0] * self.grid_size[1] + 1):
            g = int(round((pos.shape[1] - 1)**0.5))
            raise ValueError(f'CLIPTeacher: {path} has a {g}x{g} positional grid but '
                             f'model.target_generator.img_size={self.img_size} with patch {patch} '
                             f'needs {self.grid_size[0]}x{self.grid_size[1]}; set img_size='
                             f'{g * patch} or interpolate_pos=True')
        report = load_checked_state(
            tower, state, path, prefix='', ignore=(),
            resizable=('vit.pos_embed', ) if self.interpolate_pos else (),  # mmpretrain resizes
            field_name=f'model.target_generator.checkpoint (CLIP {name})')
        MMLogger.get_current_instance().info(
            f'CLIPTeacher: loaded the {name} image tower ({len(report.loaded)} tensors) from '
            f'{path}; frozen, not saved in checkpoints')

    def match_student(self, backbone: nn.Module) -> None:
        """The teacher's tokens must line up with the student's patch grid."""
        self.match_token_grid(backbone.patch_resolution)

    def match_token_grid(self, grid: Union[int, Sequence[int]]) -> None:
        """Run at the student's ``grid`` (e.g. (14, 14)): with ``interpolate_pos=True`` at
        ``grid * patch_size`` pixels, positional embedding resized (bicubic) from the
        checkpoint's; otherwise another grid is a ValueError."""
        grid = (grid, grid) if isinstance(grid, int) else tuple(int(g) for g in grid)
        if grid == self.grid_size:
            return
        patch = self.arch['patch_size']
        if not self.interpolate_pos or grid[0] != grid[1]:
            raise ValueError(
                f'CLIPTeacher: teacher token grid {self.grid_size} (img_size={self.img_size}, '
                f'patch {patch}) differs from the student grid {grid}; set img_size='
                f'{grid[0] * patch} with interpolate_pos=True (square grids only)')
        vit = self.tower.vit
        src = self._ckpt_pos_embed
        g = int(round((src.shape[1] - 1)**0.5))
        pos = resize_pos_embed(src.float(), (g, g), grid, 'bicubic', 1)
        vit.pos_embed = nn.Parameter(pos.to(vit.pos_embed), requires_grad=False)
        vit.patch_resolution = grid
        vit.patch_embed.init_out_size = grid
        self.img_size = grid[0] * patch

    def extra_repr(self) -> str:
        return (f'arch={self.arch_name!r}, {self.arch}, img_size={self.img_size}, '
                f'checkpoint={self.checkpoint!r}, frozen, not saved in state_dict')

    # ------------------------------------------------------------------ forward
    @torch.no_grad()
    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Patch tokens ``B x N x output_dim`` (ln_post, then proj; CLS dropped) of the data
        preprocessor's ``B x 3 x H x W`` images (``mean``/``std``, 0-255 scale), re-normalised to
        CLIP's statistics: ``B x 196 x 512`` for ViT-B/16 at 224."""
        if inputs.dim() != 4 or inputs.shape[1] != 3:
            raise ValueError(f'CLIPTeacher: expected images B x 3 x H x W, got '
                             f'{tuple(inputs.shape)}')
        x = inputs.to(self.scale.dtype) * self.scale + self.shift
        if tuple(x.shape[-2:]) != (self.img_size, self.img_size):
            x = F.interpolate(x, size=(self.img_size, self.img_size), mode='bicubic',
                              align_corners=False)
        # Under autocast the convolution, attention and matmuls run in the autocast dtype.
        tokens = self.tower.vit(x.to(self.tower.proj.dtype))[0][:, 1:]
        return tokens @ self.tower.proj.to(tokens.dtype)
