"""Attention maps of a ViT, mean attention distance and head diversity."""
import math
from contextlib import contextmanager
from typing import Dict, Iterator, Sequence, Tuple, Union

import torch
import torch.nn as nn


def patch_distances(grid: Union[int, Tuple[int, int]], patch_size: float = 1.0) -> torch.Tensor:
    """``(N, N)`` Euclidean distances between patch centres, in pixels.

    ``grid`` is ``(rows, cols)`` of the token grid (row-major token order, as ViTs flatten
    patches); with ``patch_size`` pixels per patch, neighbouring centres are ``patch_size`` apart.
    """
    h, w = (grid, grid) if isinstance(grid, int) else grid
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                            torch.arange(w, dtype=torch.float64), indexing='ij')
    pos = torch.stack([ys.flatten(), xs.flatten()], dim=1) * patch_size
    return torch.cdist(pos, pos)


def _patch_attention(attn: torch.Tensor, grid: Tuple[int, int], num_extra_tokens: int,
                     renormalize: bool) -> torch.Tensor:
    h, w = grid
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
    """Mean attention distance of every head, in pixels.

    As in ViT (Dosovitskiy et al., ICLR 2021, arXiv 2010.11929, Fig. 7 and App. D.7) and the
    DeepMIM paper (arXiv 2303.08817): for every query patch, the attention-weighted average of
    the distances from its centre to the key patches' centres; then the mean over query patches.
    The CLS (extra) tokens are left out as queries and keys; with ``renormalize`` (default) each
    query's attention over patches is rescaled to sum to 1, so a head that mostly looks at CLS
    is not mistaken for a local one.

    Args:
        attn: ``(..., H, T, T)`` softmax attention, ``T = extra + rows * cols``.
        grid: token grid ``(rows, cols)`` (or an int for a square one).
        patch_size: patch side in pixels.

    Returns:
        ``(..., H)`` distances in pixels (float64).
    """
    grid = (grid, grid) if isinstance(grid, int) else tuple(grid)
    a = _patch_attention(attn, grid, num_extra_tokens, renormalize)
    dist = patch_distances(grid, patch_size).to(a.device)
    return (a * dist).sum(dim=-1).mean(dim=-1)


def head_dissimilarity(attn: torch.Tensor,
                       grid: Union[int, Tuple[int, int]],
                       num_extra_tokens: int = 1,
                       renormalize: bool = True) -> torch.Tensor:
    """Diversity of the heads of one block: ``1 - mean pairwise cosine similarity``.

    For every query patch, the attention rows (over key patches) of two heads are compared by
    cosine similarity, averaged over query patches and over all pairs of distinct heads; the
    attention-map similarity of Zhou et al., "DeepViT: Towards Deeper Vision Transformer"
    (arXiv 2103.11886, Sec. 3), taken across heads instead of across blocks. 0 means every head
    attends alike; larger is more diverse (at most 1 for non-negative attention).

    Args:
        attn: ``(..., H, T, T)`` softmax attention with ``H >= 2``.

    Returns:
        ``(...)`` dissimilarity (float64).
    """
    grid = (grid, grid) if isinstance(grid, int) else tuple(grid)
    a = _patch_attention(attn, grid, num_extra_tokens, renormalize)
    heads = a.shape[-3]
    if heads < 2:
        raise ValueError('head_dissimilarity needs at least 2 heads')
    a = torch.nn.functional.normalize(a, dim=-1)  # (..., H, Nq, Nk)
    sim = torch.einsum('...hqk,...gqk->...hgq', a, a).mean(dim=-1)  # (..., H, H)
    off = ~torch.eye(heads, dtype=torch.bool, device=a.device)
    return 1 - sim[..., off].mean(dim=-1)


def _attention_from_input(attn_module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``softmax(q k^T / sqrt(d))`` recomputed from the input of an mmpretrain attention."""
    B, N, _ = x.shape
    heads, d = attn_module.num_heads, attn_module.head_dims
    qkv = attn_module.qkv(x).reshape(B, N, 3, heads, d).permute(2, 0, 3, 1, 4)
    q, k = qkv[0], qkv[1]
    # mmpretrain's MultiheadAttention always scales by head_dims ** -0.5 (even with qk_scale).
    return torch.softmax((q.float() @ k.float().transpose(-2, -1)) / math.sqrt(d), dim=-1)


@contextmanager
def capture_attention(layers: Sequence[nn.Module]) -> Iterator[Dict[int, torch.Tensor]]:
    """Record the attention maps of every block while a forward pass runs.

    mmpretrain's ``MultiheadAttention`` runs fused ``scaled_dot_product_attention`` and does not
    return its weights, so a forward pre-hook on each ``layer.attn`` takes its input and
    recomputes ``softmax(QK^T / sqrt(d))`` from the layer's own ``qkv`` projection (attention
    dropout is not applied: use eval mode). Yields a dict ``{block index: (B, H, T, T)}`` filled
    by the forward pass (the latest pass overwrites).
    """
    maps: Dict[int, torch.Tensor] = {}
    handles = []
    for i, layer in enumerate(layers):
        attn = getattr(layer, 'attn', None)
        if attn is None or not hasattr(attn, 'qkv') or not hasattr(attn, 'num_heads'):
            raise ValueError(f'capture_attention: block {i} ({type(layer).__name__}) has no '
                             'attn with qkv / num_heads (an mmpretrain MultiheadAttention)')

        def hook(module, args, i=i):
            with torch.no_grad():
                maps[i] = _attention_from_input(module, args[0])

        handles.append(attn.register_forward_pre_hook(hook))
    try:
        yield maps
    finally:
        for h in handles:
            h.remove()
