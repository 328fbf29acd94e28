"""Linear centred kernel alignment (CKA) between layer representations."""
from typing import Sequence

import torch


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA (arXiv 1905.00414, Eq. 5) in float64 of ``(n, ...)`` representations of the
    same ``n`` examples (further dimensions are features)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f'linear_cka: x and y must have the same number of examples (rows), '
                         f'got {tuple(x.shape)} and {tuple(y.shape)}')
    x = x.reshape(x.shape[0], -1).double()
    y = y.reshape(y.shape[0], -1).to(x)
    x = x - x.mean(dim=0, keepdim=True)
    y = y - y.mean(dim=0, keepdim=True)
    if x.shape[0] < max(x.shape[1], y.shape[1]):
        # Fewer examples than features: the Gram (n x n) form is cheaper; same value.
        kx, ky = x @ x.T, y @ y.T
        hsic, nx, ny = (kx * ky).sum(), kx.norm(), ky.norm()
    else:
        hsic = (y.T @ x).pow(2).sum()
        nx, ny = (x.T @ x).norm(), (y.T @ y).norm()
    denom = nx * ny
    if denom <= 0:
        raise ValueError('linear_cka: a representation is constant over the examples '
                         '(zero variance); CKA is undefined')
    return float(hsic / denom)


def cka_matrix(feats_a: Sequence[torch.Tensor], feats_b: Sequence[torch.Tensor]) -> torch.Tensor:
    """``(len(feats_a), len(feats_b))`` matrix of :func:`linear_cka` between every pair."""
    out = torch.empty(len(feats_a), len(feats_b), dtype=torch.float64)
    for i, a in enumerate(feats_a):
        for j, b in enumerate(feats_b):
            out[i, j] = linear_cka(a, b)
    return out
