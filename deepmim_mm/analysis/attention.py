"""Attention maps of a ViT, mean attention distance and head diversity."""
import math
from typing import Sequence, Tuple, Union

import torch
import torch.nn as nn

from .features import capture


def patch_distances(grid: Union[int, Tuple[int, int]], patch_size: float = 1.0) -> torch.Tensor:
    """``(N, N)`` Euclidean distances, in pixels, between the patch centres of a ``(rows, cols)``
    grid in row-major order (ViTs' token order), ``patch_size`` pixels per patch."""
    h, w = (grid, grid) if isinstance(grid, int) else grid
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                            torch.arange(w, dtype=torch.float64), indexing='ij')
    pos = torch.stack([ys.flatten(), xs.flatten()], dim=1) * patch_size
    return torch.cdist(pos, pos)


def _patch_attention(attn: torch.Tensor, grid: Union[int, Tuple[int, int]],
                     num_extra_tokens: int, renormalize: bool) -> torch.Tensor:
    h, w = (grid, grid) if isinstance(grid, int) else grid
    n = h * w
    if attn.shape[-1] != n + num_extra_tokens or attn.shape[-2] != n + num_extra_tokens:
        raise ValueError(f'attention maps of shape {tuple(attn.shape)} do not match a {h}x{w} '
                         f'grid with {num_extra_tokens} extra (CLS) token(s)')
    a = attn[..., num_extra_tokens:, num_extra_tokens:].double()
    if renormalize:
        a = a / a.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return a


def mean_attention_distance(attn: torch.Tensor,
                            grid: Union[int, Tuple[int, int]],
                            patch_size: float,
                            num_extra_tokens: int = 1,
                            renormalize: bool = True) -> torch.Tensor:
    """Mean attention distance of every head, in pixels (ViT, arXiv 2010.11929, Fig. 7): per
    query patch, the attention-weighted distance to the key patches, averaged over queries.
    Extra (CLS) tokens are left out; ``renormalize`` rescales each query's attention over the
    patches to sum to 1, so a head that mostly looks at CLS is not mistaken for a local one.

    Args:
        attn: ``(..., H, T, T)`` softmax attention, ``T = extra + rows * cols``.
        grid: token grid ``(rows, cols)`` (or an int for a square one).
        patch_size: patch side in pixels.

    Returns:
        ``(..., H)`` distances in pixels (float64).
    """
    a = _patch_attention(attn, grid, num_extra_tokens, renormalize)
    dist = patch_distances(grid, patch_size).to(a.device)
    return (a * dist).sum(dim=-1).mean(dim=-1)


def head_dissimilarity(attn: torch.Tensor,
                       grid: Union[int, Tuple[int, int]],
                       num_extra_tokens: int = 1,
                       renormalize: bool = True) -> torch.Tensor:
    """Diversity of the heads of one block: ``1 -`` the cosine similarity of two heads'
    attention rows, averaged over query patches and pairs of distinct heads (DeepViT's
    attention-map similarity, arXiv 2103.11886, across heads); 0 means every head attends alike.

    Args:
        attn: ``(..., H, T, T)`` softmax attention with ``H >= 2``.

    Returns:
        ``(...)`` dissimilarity (float64).
    """
    a = _patch_attention(attn, grid, num_extra_tokens, renormalize)
    heads = a.shape[-3]
    if heads < 2:
        raise ValueError('head_dissimilarity needs at least 2 heads')
    a = torch.nn.functional.normalize(a, dim=-1)  # (..., H, Nq, Nk)
    sim = torch.einsum('...hqk,...gqk->...hgq', a, a).mean(dim=-1)  # (..., H, H)
    off = ~torch.eye(heads, dtype=torch.bool, device=a.device)
    return 1 - sim[..., off].mean(dim=-1)


@torch.no_grad()
def _attention_from_input(attn_module: nn.Module, args: tuple) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d))`` recomputed from the input of an mmpretrain attention."""
    x = args[0]
    B, N, _ = x.shape
    heads, d = attn_module.num_heads, attn_module.head_dims
    qkv = attn_module.qkv(x).reshape(B, N, 3, heads, d).permute(2, 0, 3, 1, 4)
    q, k = qkv[0], qkv[1]
    # mmpretrain's MultiheadAttention always scales by head_dims ** -0.5 (even with qk_scale).
    return torch.softmax((q.float() @ k.float().transpose(-2, -1)) / math.sqrt(d), dim=-1)


def capture_attention(layers: Sequence[nn.Module]):
    """:func:`~.features.capture` of ``{block index: (B, H, T, T)}``, the attention maps
    recomputed from every block's ``qkv`` (mmpretrain's fused attention returns no weights;
    attention dropout is not applied: use eval mode)."""
    for i, layer in enumerate(layers):
        attn = getattr(layer, 'attn', None)
        if attn is None or not hasattr(attn, 'qkv') or not hasattr(attn, 'num_heads'):
            raise ValueError(f'capture_attention: block {i} ({type(layer).__name__}) has no '
                             'attn with qkv / num_heads (an mmpretrain MultiheadAttention)')
    return capture([layer.attn for layer in layers], _attention_from_input, pre=True)
