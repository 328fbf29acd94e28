"""ViTDet's simple feature pyramid (Li et al., arXiv 2203.16527, Sec. 3)."""
from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import nn


@MODELS.register_module()
class SimpleFPN(BaseModule):
    """Strides 4-32 (and 64 with ``num_outs=5``) from a plain ViT's last stride-16 map, as in
    ViTDet: mmdet has no such neck, mmseg's ``Feature2Pyramid`` rescales four block outputs
    without ViTDet's convolutions and norms.

    Args:
        backbone_channel: channels of the backbone map (768 for ViT-B).
        in_channels: channels of the four rescaled maps, ``[C/4, C/2, C, C]``.
        out_channels: output channels of every level.
        num_outs: 4 or 5 output levels.
        norm_cfg: norm of the convs and of the stride-4 branch (ViTDet: ``'LN2d'``).
    """

    def __init__(self, backbone_channel: int, in_channels: Sequence[int], out_channels: int,
                 num_outs: int = 5, norm_cfg: dict = dict(type='LN2d', eps=1e-6),
                 act_cfg=None, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        c = backbone_channel
        expected = [c // 4, c // 2, c, c]
        if list(in_channels) != expected:
            raise ValueError(f'SimpleFPN: in_channels must be {expected} for backbone_channel='
                             f'{c}, got {list(in_channels)}')
        if num_outs not in (4, 5):
            raise ValueError(f'SimpleFPN: num_outs must be 4 or 5, got {num_outs}')
        self.num_outs = num_outs
        self.fpn1 = nn.Sequential(
            nn.ConvTranspose2d(c, c // 2, 2, 2),
            build_norm_layer(norm_cfg, c // 2)[1],
            nn.GELU(),
            nn.ConvTranspose2d(c // 2, c // 4, 2, 2))
        self.fpn2 = nn.Sequential(nn.ConvTranspose2d(c, c // 2, 2, 2))
        self.fpn3 = nn.Sequential(nn.Identity())
        self.fpn4 = nn.Sequential(nn.MaxPool2d(kernel_size=2, stride=2))
        self.lateral_convs = nn.ModuleList(
            ConvModule(ch, out_channels, 1, norm_cfg=norm_cfg, act_cfg=act_cfg)
            for ch in in_channels)
        self.fpn_convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, padding=1, norm_cfg=norm_cfg,
                       act_cfg=act_cfg) for _ in in_channels)

    def forward(self, inputs: Tuple[torch.Tensor]) -> Tuple[torch.Tensor]:
        x = inputs[-1]
        feats: List[torch.Tensor] = [self.fpn1(x), self.fpn2(x), self.fpn3(x), self.fpn4(x)]
        outs = [fpn(lat(f)) for f, lat, fpn in zip(feats, self.lateral_convs, self.fpn_convs)]
        if self.num_outs == 5:
            outs.append(F.max_pool2d(outs[-1], kernel_size=1, stride=2))
        return tuple(outs)
