"""Several independent transformer stacks of identical shape, run as one batched computation.

Activations carry a leading level dimension ``(L, B, N, C)``; each layer's ``L`` weights are
stacked (at every forward: they stay in their own modules) into one ``baddbmm``, and attention
folds the levels into the batch of one fused SDPA call: mmpretrain's ``TransformerEncoderLayer``
as ``MAEPretrainDecoder`` builds it, operation for operation (only its ``norm_cfg`` varies:
:func:`layer_norm_supported`).
"""
from typing import List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def batched_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``L`` linear layers, one ``baddbmm``: ``x`` (L, ..., in), ``weight`` (L, out, in)."""
    L = x.shape[0]
    shape = x.shape[1:-1]
    out = torch.baddbmm(bias.unsqueeze(1), x.reshape(L, -1, x.shape[-1]), weight.transpose(1, 2))
    return out.view(L, *shape, weight.shape[1])


def batched_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                       eps: float) -> torch.Tensor:
    """``L`` LayerNorms over the last dimension, each with its own affine ``(L, C)`` parameters."""
    L, C = weight.shape
    y = F.layer_norm(x, (C, ), eps=eps)
    view = (L, ) + (1, ) * (x.dim() - 2) + (C, )
    return torch.addcmul(bias.view(view), y, weight.view(view))


def layer_norm_supported(norm: nn.Module) -> bool:
    """True for an affine ``nn.LayerNorm`` over one dimension (what the batched path computes)."""
    return (isinstance(norm, nn.LayerNorm) and norm.elementwise_affine
            and len(norm.normalized_shape) == 1 and norm.bias is not None)


# The 12 parameters of a TransformerEncoderLayer, in batched_encoder_layer's order.
_LAYER_PARAMS = [f'{m}.{p}' for m in ('ln1', 'attn.qkv', 'attn.proj', 'ln2', 'ffn.layers.0.0',
                                      'ffn.layers.1') for p in ('weight', 'bias')]


def stacked_layer_params(layers: Sequence[nn.Module]) -> List[torch.Tensor]:
    """Each parameter of ``L`` ``TransformerEncoderLayer`` s, stacked to ``(L, ...)``."""
    return [torch.stack([m.get_parameter(n) for m in layers]) for n in _LAYER_PARAMS]


def batched_encoder_layer(x: torch.Tensor, params: Sequence[torch.Tensor], num_heads: int,
                          eps: float) -> torch.Tensor:
    """``L`` pre-norm transformer layers on ``x`` (L, B, N, C), one per level, with the
    ``params`` of :func:`stacked_layer_params`: ``x + proj(SDPA(qkv(ln1(x))))``, then
    ``x + fc2(gelu(fc1(ln2(x))))``."""
    (ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc1_w, fc1_b, fc2_w,
     fc2_b) = params
    L, B, N, C = x.shape
    head_dims = C // num_heads
    qkv = batched_linear(batched_layer_norm(x, ln1_w, ln1_b, eps), qkv_w, qkv_b)
    qkv = qkv.reshape(L * B, N, 3, num_heads, head_dims).permute(2, 0, 3, 1, 4)
    attn = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
    attn = attn.transpose(1, 2).reshape(L, B, N, C)
    x = x + batched_linear(attn, proj_w, proj_b)
    h = F.gelu(batched_linear(batched_layer_norm(x, ln2_w, ln2_b, eps), fc1_w, fc1_b))
    return x + batched_linear(h, fc2_w, fc2_b)
