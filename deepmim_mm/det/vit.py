"""Plain ViT backbone for detection, ViTDet style (Li et al., arXiv 2203.16527)."""
from typing import Dict, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks.drop import DropPath
from mmdet.registry import MODELS
from mmpretrain.models.backbones.vit_sam import (Attention, TransformerEncoderLayer, ViTSAM,
                                                 get_rel_pos, window_partition, window_unpartition)
from mmpretrain.models.utils import resize_pos_embed

from ..checkpoint import DENSE_NEW_KEYS, PretrainedEncoderMixin


class SDPARelPosAttention(Attention):
    """mmpretrain's SAM/ViTDet ``Attention`` (same parameters, same result) through
    ``F.scaled_dot_product_attention``, the relative position term as its additive mask, instead
    of upstream's explicit fp32 ``softmax(q k^T)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, _ = x.shape
        qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, N, d)
        bias = None
        if self.use_rel_pos:
            Rh = get_rel_pos(H, H, self.rel_pos_h).to(q.dtype)
            Rw = get_rel_pos(W, W, self.rel_pos_w).to(q.dtype)
            r_q = q.reshape(B, self.num_heads, H, W, -1)
            rel_h = torch.einsum('bnhwc,hkc->bnhwk', r_q, Rh)
            rel_w = torch.einsum('bnhwc,wkc->bnhwk', r_q, Rw)
            bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(
                B, self.num_heads, H * W, H * W)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale)
        x = x.transpose(1, 2).reshape(B, H, W, -1)
        return self.proj(x)


class ViTDetLayer(TransformerEncoderLayer):
    """mmpretrain's ViTSAM layer (FFN-only drop path) with drop path on the attention branch
    too, as ViTDet; parameter names unchanged."""

    def forward(self, x):
        shortcut = x
        x = self.ln1(x)
        if self.window_size > 0:
            H, W = x.shape[1], x.shape[2]
            x, pad_hw = window_partition(x, self.window_size)
        x = self.attn(x)
        if self.window_size > 0:
            x = window_unpartition(x, self.window_size, pad_hw, (H, W))
        x = shortcut + self.drop_path(x)
        return self.ffn(self.ln2(x), identity=x)


@MODELS.register_module()
class PlainViT(PretrainedEncoderMixin, ViTSAM):
    """ViTDet's plain ViT for mmdet (whose wheel has none), over mmpretrain's ``ViTSAM``: no SAM
    neck, ViTDet's pretraining-grid position embedding (class slot included) interpolated to the
    input at every forward, :class:`SDPARelPosAttention` and :class:`ViTDetLayer`, and a checked
    ``Pretrained`` load (relative positions may be new; ``pos_embed`` resized)."""

    def __init__(self, arch='base', img_size=1024, pretrain_img_size=224, patch_size=16,
                 drop_path_rate=0.1, **kwargs):
        super().__init__(arch=arch, img_size=img_size, patch_size=patch_size, out_channels=0,
                         drop_path_rate=drop_path_rate, **kwargs)
        for layer in self.layers:
            layer.__class__ = ViTDetLayer
            layer.attn.__class__ = SDPARelPosAttention
            layer.drop_path = DropPath(float(getattr(layer.ffn.dropout_layer, 'drop_prob', 0.)))
        self.pretrain_grid = (pretrain_img_size // patch_size, ) * 2
        if self.use_abs_pos:
            self.pos_embed = nn.Parameter(
                torch.zeros(1, 1 + self.pretrain_grid[0] * self.pretrain_grid[1],
                            self.embed_dims))

    def encoder_load_policy(self) -> dict:
        return dict(allow_new=DENSE_NEW_KEYS, prepare=self._fit_pos_embed)

    def _fit_pos_embed(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """A checkpoint ``pos_embed`` of another square grid, resized to the pretraining one."""
        pos = state.get('pos_embed')
        if pos is None or not self.use_abs_pos or pos.shape == self.pos_embed.shape:
            return state
        side = int(round((pos.shape[1] - 1) ** 0.5))
        if side * side == pos.shape[1] - 1:  # otherwise the shape check names it
            state['pos_embed'] = resize_pos_embed(pos, (side, side), self.pretrain_grid,
                                                  self.interpolate_mode, 1)
        return state

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor]:
        B = x.shape[0]
        x, patch_resolution = self.patch_embed(x)
        x = x.view(B, patch_resolution[0], patch_resolution[1], self.embed_dims)
        if self.use_abs_pos:
            pos = resize_pos_embed(self.pos_embed, self.pretrain_grid, patch_resolution,
                                   mode=self.interpolate_mode, num_extra_tokens=1)[:, 1:]
            x = self.drop_after_pos(x + pos.view(1, *patch_resolution, self.embed_dims))
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.out_indices:
                outs.append(self._format_output(x.permute(0, 3, 1, 2)))
        return tuple(outs)
