"""Plain ViT backbone for detection, ViTDet style (Li et al., arXiv 2203.16527)."""
import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.drop import DropPath
from mmdet.registry import MODELS
from mmpretrain.models.backbones.vit_sam import (Attention, TransformerEncoderLayer, ViTSAM,
                                                 get_rel_pos, window_partition,
                                                 window_unpartition)

from deepmim_mm.utils.checkpoint import upstream_init_then_pretrained_cfg
from deepmim_mm.utils.pretrain_loading import load_pretrained_encoder


class SDPARelPosAttention(Attention):
    """mmpretrain's SAM/ViTDet ``Attention`` computed with ``F.scaled_dot_product_attention``.

    Same parameters (``qkv``, ``proj``, ``rel_pos_h``, ``rel_pos_w``) and the same result; the
    decomposed relative position term (MViTv2, as in ViTDet) is passed to SDPA as an additive
    mask, so the fused kernels (flash / memory-efficient on GPU) replace the explicit
    ``softmax(q k^T)`` of the upstream class, which materialises a (B*heads, N, N) matrix per
    block in fp32 on the 64x64 grid of the global blocks.
    """

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
    """mmpretrain's ViTSAM layer with stochastic depth on the attention branch too.

    mmpretrain's layer applies drop path to the FFN branch only; ViTDet (and every ViT fine-tune
    recipe) drops both residual branches. Parameter names are unchanged.
    """

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
class PlainViT(ViTSAM):
    """ViTDet's plain ViT backbone for mmdet: mmpretrain's ``ViTSAM`` without its neck, plus
    pretraining-checkpoint loading, SDPA attention and drop path on both branches.

    mmpretrain's ``ViTSAM`` is ViTDet's backbone (Li et al., arXiv 2203.16527, Sec. 3): window
    attention (``window_size=14``) with global attention in blocks ``global_attn_indexes``
    ([2, 5, 8, 11] for ViT-B), decomposed relative positions, an absolute position embedding on
    the patch grid, no class token, one output map at stride 16. mmdet 3.3.0 ships no ViTDet
    (it lives in mmdetection's ``projects/``, outside the wheel), so this class registers it in
    mmdet's ``MODELS``. What it changes over ``ViTSAM``:

    - ``out_channels=0`` (no SAM neck): the last block's map goes to :class:`SimpleFPN`;
    - attention through :class:`SDPARelPosAttention` and layers :class:`ViTDetLayer` (same
      parameter names, so checkpoints and ``get_layer_depth`` for layer decay are unchanged);
    - ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')`` loads a
      DeepMIM/MFF/MAE pretraining checkpoint: encoder keys from under ``prefix``; class token,
      final norm, MFF and decoder/teacher keys dropped; the (1, 1+N, C) position embedding
      without its class slot resized to the ``img_size / patch_size`` grid (64x64 at 1024);
      relative positions and everything else new; the report is logged and kept in
      ``self.pretrain_report``
      (:func:`~deepmim_mm.utils.pretrain_loading.load_pretrained_encoder`).
    """

    def __init__(self, arch='base', img_size=1024, out_channels=0, drop_path_rate=0.1,
                 **kwargs):
        if out_channels != 0:
            raise ValueError('PlainViT: out_channels must be 0 (the feature pyramid is the '
                             f'neck, SimpleFPN), got {out_channels}')
        if isinstance(arch, dict) and 'global_attn_indexes' not in arch:
            raise ValueError('PlainViT: a custom arch needs global_attn_indexes (list of block '
                             'indices with global attention)')
        super().__init__(arch=arch, img_size=img_size, out_channels=0,
                         drop_path_rate=drop_path_rate, **kwargs)
        for layer in self.layers:
            layer.__class__ = ViTDetLayer
            layer.attn.__class__ = SDPARelPosAttention
            layer.drop_path = DropPath(float(getattr(layer.ffn.dropout_layer, 'drop_prob', 0.)))

    def init_weights(self):
        init_cfg = upstream_init_then_pretrained_cfg(self, super().init_weights)
        if init_cfg is None:
            return
        self.pretrain_report = load_pretrained_encoder(
            self, init_cfg.get('checkpoint'), prefix=init_cfg.get('prefix', 'backbone.'),
            num_extra_tokens=1)
