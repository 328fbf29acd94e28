"""Attention maps of a ViT, mean attention distance and head diversity."""
import math
from typing import Sequence, Tuple

import torch
import torch.nn as nn

from .features import capture


def patch_distances(grid: Tuple[int, int], patch_size: float = 1.0) -> torch.Tensor:
    """``(N, N)`` distances in pixels between the patch centres of a grid, in token order."""
    h, w = grid
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                            torch.arange(w, dtype=torch.float64), indexing='ij')
    pos = torch.stack([ys.flatten(), xs.flatten()], dim=1) * patch_size
    return torch.cdist(pos, pos)


def _patch_attention(attn: torch.Tensor, grid: Tuple[int, int], num_extra_tokens: int,
                     renormalize: bool) -> torch.Tensor:
    if attn.shape[-2:] != (math.prod(grid) + num_extra_tokens, ) * 2:
        raise ValueError(f'attention maps of shape {tuple(attn.shape)} do not match a '
                         f'{grid[0]}x{grid[1]} grid with {num_extra_tokens} extra (CLS) token(s)')
    a = attn[..., num_extra_tokens:, num_extra_tokens:].double()
    if renormalize:
        a = a / a.sum(dim=-1, keepdim=True).clamp_min(1e-12)
    return a


def mean_attention_distance(attn: torch.Tensor,
                            grid: Tuple[int, int],
                            patch_size: float,
                            num_extra_tokens: int = 1,
                            renormalize: bool = True) -> torch.Tensor:
    """``(..., H)`` mean attention distance in pixels of ``(..., H, T, T)`` attention (ViT, arXiv
    2010.11929, Fig. 7), over the patches only; ``renormalize``: each query's patch weights sum
    to 1, so a head that mostly looks at CLS is not mistaken for a local one."""
    a = _patch_attention(attn, grid, num_extra_tokens, renormalize)
    dist = patch_distances(grid, patch_size).to(a.device)
    return (a * dist).sum(dim=-1).mean(dim=-1)


def head_dissimilarity(attn: torch.Tensor,
                       grid: Tuple[int, int],
                       num_extra_tokens: int = 1,
                       renormalize: bool = True) -> torch.Tensor:
    """``(...)``: 1 - the mean cosine similarity of two distinct heads' attention rows (DeepViT,
    arXiv 2103.11886, across heads) of ``(..., H, T, T)`` attention, ``H >= 2``."""
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
    """:func:`~.features.capture` of ``{block index: (B, H, T, T)}`` maps recomputed from each
    block's ``attn.qkv`` (mmpretrain's fused attention returns none; no dropout: eval mode)."""
    return capture([layer.attn for layer in layers], _attention_from_input, pre=True)
