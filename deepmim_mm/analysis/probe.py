"""Probes of frozen features ``(N, D)`` with integer labels ``(N,)``: linear classifiers trained
to a stated convergence criterion, their ``l2`` chosen on held-out training data, and DINO's
weighted kNN classifier."""
import math
from dataclasses import dataclass
from functools import partial
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

#: ``l2`` values tried on the held-out part of the training split (our choice: one per decade).
DEFAULT_L2_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def standardize(train: torch.Tensor, *others: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """Standardise every matrix with ``train``'s column statistics (MAE's affine-free BatchNorm)."""
    mean = train.mean(0, keepdim=True)
    std = train.std(0, keepdim=True).clamp_min(1e-6) if len(train) > 1 else torch.ones_like(mean)
    return tuple((x - mean) / std for x in (train, ) + others)


@dataclass
class LinearFit:
    """``logits = x @ weight + bias``, its final objective and the criterion it met (``reason``)."""
    weight: torch.Tensor
    bias: torch.Tensor
    l2: float
    loss: float
    iterations: int
    converged: bool
    reason: str
    grad_max: Optional[float] = None  # largest gradient entry at the end (L-BFGS only)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.weight) @ self.weight + self.bias


def _objective(x, y, weight, bias, l2, chunk: int = 65536):
    ce = sum(F.cross_entropy(x[i:i + chunk] @ weight + bias, y[i:i + chunk], reduction='sum')
             for i in range(0, len(x), chunk))
    return ce / len(x) + 0.5 * l2 * weight.pow(2).sum()


def _params(x, num_classes, init: Optional[LinearFit]):
    """Trainable ``(weight, bias)``: zeros, or a copy of ``init``'s (a warm start)."""
    w = x.new_zeros(x.shape[1], num_classes) if init is None else init.weight.clone()
    b = x.new_zeros(num_classes) if init is None else init.bias.clone()
    return w.requires_grad_(), b.requires_grad_()


def fit_logistic_lbfgs(x: torch.Tensor,
                       y: torch.Tensor,
                       num_classes: int,
                       l2: float,
                       max_iter: int = 1000,
                       tol_grad: float = 1e-5,
                       tol_change: float = 1e-9,
                       history_size: int = 20,
                       init: Optional[LinearFit] = None) -> LinearFit:
    """Multinomial logistic regression (mean cross-entropy + ``l2 / 2 * ||W||^2``) by full-batch
    L-BFGS; converged: ``reason`` ``'gradient'`` or ``'loss change'``; ``init``: a warm start."""
    w, b = _params(x, num_classes, init)
    max_eval = 3 * max_iter
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, max_eval=max_eval,
                            tolerance_grad=tol_grad, tolerance_change=tol_change,
                            history_size=history_size, line_search_fn='strong_wolfe')

    def closure():
        opt.zero_grad(set_to_none=False)
        loss = _objective(x, y, w, b, l2)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
        loss = closure()  # objective and gradient at the final point
    grad_max = max(w.grad.abs().max().item(), b.grad.abs().max().item())
    state = opt.state[w]
    iters, evals = int(state.get('n_iter', 0)), int(state.get('func_evals', 0))
    if grad_max <= tol_grad:
        reason = 'gradient'
    elif iters >= max_iter:
        reason = 'max_iter'
    elif evals >= max_eval:
        reason = 'max_eval'
    else:
        reason = 'loss change'
    return LinearFit(w.detach(), b.detach(), l2, loss.item(), iters,
                     reason in ('gradient', 'loss change'), reason, grad_max)


def fit_logistic_minibatch(x: torch.Tensor,
                           y: torch.Tensor,
                           num_classes: int,
                           l2: float,
                           max_steps: int = 20000,
                           batch_size: int = 4096,
                           lr: float = 1e-2,
                           eval_every: int = 100,
                           tol: float = 1e-4,
                           lr_decays: int = 2,
                           seed: int = 0,
                           init: Optional[LinearFit] = None) -> LinearFit:
    """:func:`fit_logistic_lbfgs`'s objective by mini-batch AdamW: a relative fall under ``tol``
    over ``eval_every`` steps divides the lr by 10; the plateau after ``lr_decays`` decays is
    ``reason='plateau'``."""
    w, b = _params(x, num_classes, init)

    @torch.no_grad()
    def full_objective():
        return _objective(x, y, w, b, l2).item()

    opt = torch.optim.AdamW([w, b], lr=lr, weight_decay=0.0)
    g = torch.Generator(device='cpu').manual_seed(seed)
    n = len(x)
    prev, decays, step, reason = full_objective(), 0, 0, 'max_steps'
    with torch.enable_grad():
        while step < max_steps:
            if batch_size >= n:
                xb, yb = x, y
            else:
                idx = torch.randint(0, n, (batch_size, ), generator=g).to(x.device)
                xb, yb = x[idx], y[idx]
            loss = _objective(xb, yb, w, b, l2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % eval_every == 0:
                cur = full_objective()
                if prev - cur < tol * max(abs(prev), 1e-12):
                    if decays == lr_decays:
                        reason = 'plateau'
                        break
                    decays += 1
                    for group in opt.param_groups:
                        group['lr'] *= 0.1
                prev = cur
    return LinearFit(w.detach(), b.detach(), l2, full_objective(), step, reason == 'plateau',
                     reason)


def fit_ridge(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float,
              init: Optional[LinearFit] = None) -> LinearFit:
    """Closed-form least squares on one-hot targets (``l2 * ||W||^2``); ``init`` is ignored."""
    t = F.one_hot(y, num_classes).double()
    xb = torch.cat([x, torch.ones_like(x[:, :1])], 1).double()
    reg = l2 * torch.eye(xb.shape[1], dtype=xb.dtype, device=xb.device)
    reg[-1, -1] = 0
    n = len(xb)
    sol = torch.linalg.solve(xb.T @ xb / n + reg, xb.T @ t / n)
    loss = ((xb @ sol - t).pow(2).sum(1).mean() + l2 * sol[:-1].pow(2).sum()).item()
    sol = sol.to(x.dtype)
    return LinearFit(sol[:-1], sol[-1], l2, loss, 1, True, 'closed form')


def holdout_split(y: torch.Tensor, fraction: float = 0.2,
                  seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """Stratified ``(fit_idx, holdout_idx)``; every class keeps at least one sample for fitting."""
    if not 0 < fraction < 1:
        raise ValueError(f'holdout fraction must be in (0, 1), got {fraction}')
    g = torch.Generator().manual_seed(seed)
    y = y.cpu()
    fit, held = [], []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = min(int(math.floor(fraction * len(idx))), len(idx) - 1)
        held.append(idx[:k])
        fit.append(idx[k:])
    return torch.cat(fit).sort().values, torch.cat(held).sort().values


def topk_accuracy(scores: torch.Tensor, y: torch.Tensor, k: int = 1) -> float:
    """Percentage of rows whose label is among the ``k`` highest scores."""
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    hits = (top == y[:, None].to(top.device)).any(1).sum().item()
    return 100.0 * hits / max(len(y), 1)


FITTERS = dict(lbfgs=fit_logistic_lbfgs, minibatch=fit_logistic_minibatch, ridge=fit_ridge)


def linear_probe(x_train: torch.Tensor,
                 y_train: torch.Tensor,
                 x_eval: torch.Tensor,
                 y_eval: torch.Tensor,
                 num_classes: int,
                 method: str = 'lbfgs',
                 l2: Optional[float] = None,
                 l2_grid: Sequence[float] = DEFAULT_L2_GRID,
                 holdout: float = 0.2,
                 seed: int = 0,
                 device: str = 'cpu',
                 **options) -> dict:
    """Standardise, choose ``l2``, fit with ``FITTERS[method](**options)``: top-1 (top-5) on
    ``x_eval`` and the fit's evidence. ``l2=None`` picks from ``l2_grid`` the best top-1 on a
    ``holdout`` part of the training split (ties: lower held-out loss, then larger ``l2``)."""
    if method not in FITTERS:
        raise ValueError(f'method must be one of {tuple(FITTERS)}, got {method!r}')
    if method == 'minibatch':
        options.setdefault('seed', seed)
    fit = partial(FITTERS[method], num_classes=num_classes, **options)
    dtype = x_train.dtype if x_train.dtype in (torch.float32, torch.float64) else torch.float32
    x_train, x_eval = standardize(x_train.to(device, dtype), x_eval.to(device, dtype))
    y_train, y_eval = y_train.long().to(device), y_eval.long().to(device)
    scores: Dict[float, float] = {}
    losses: Dict[float, float] = {}
    if l2 is None:
        fit_idx, held_idx = holdout_split(y_train, holdout, seed)
        if len(held_idx) == 0:
            raise ValueError(f'linear_probe: no training sample can be held out to choose the '
                             f'regularisation (holdout={holdout}, {len(y_train)} samples); give '
                             'more samples per class, a larger holdout or a fixed l2')
        fit_idx, held_idx = fit_idx.to(device), held_idx.to(device)
        warm = None
        for value in sorted(l2_grid, reverse=True):
            warm = fit(x_train[fit_idx], y_train[fit_idx], l2=value, init=warm)
            with torch.no_grad():
                held_logits = warm.logits(x_train[held_idx])
                losses[value] = F.cross_entropy(held_logits, y_train[held_idx]).item()
            scores[value] = topk_accuracy(held_logits, y_train[held_idx])
        l2 = max(scores, key=lambda v: (scores[v], -losses[v], v))
    result = fit(x_train, y_train, l2=l2)  # from zero: its iteration count is its own
    with torch.no_grad():
        train_acc = topk_accuracy(result.logits(x_train), y_train)
        logits = result.logits(x_eval)
    return dict(top1=topk_accuracy(logits, y_eval),
                top5=topk_accuracy(logits, y_eval, 5) if num_classes > 5 else None,
                train_loss=result.loss, train_acc=train_acc, iterations=result.iterations,
                converged=result.converged, reason=result.reason, l2=l2,
                grad_max=result.grad_max, holdout_top1=scores, holdout_loss=losses)


# -- Weighted kNN (DINO) -----------------------------------------------------------------------
@torch.no_grad()
def knn_classify(train_x: torch.Tensor,
                 train_y: torch.Tensor,
                 query_x: torch.Tensor,
                 num_classes: int,
                 k: int = 20,
                 temperature: float = 0.07,
                 query_chunk: int = 1024,
                 train_chunk: int = 65536) -> torch.Tensor:
    """``(Q, num_classes)`` scores: the ``k`` most cosine-similar training samples vote with
    weight ``exp(s / T)``, ``query_chunk`` x ``train_chunk`` at a time on ``train_x``'s device."""
    if len(train_x) == 0:
        raise ValueError('knn_classify: empty training set')
    device = train_x.device
    train_x = F.normalize(train_x.float(), dim=1)
    train_y = train_y.long().to(device)
    k = min(k, len(train_x))
    out = []
    for q0 in range(0, len(query_x), query_chunk):
        q = F.normalize(query_x[q0:q0 + query_chunk].float().to(device), dim=1)
        top_s, top_i = [], []  # the top k of every training chunk, then of them all
        for t0 in range(0, len(train_x), train_chunk):
            sim = q @ train_x[t0:t0 + train_chunk].T
            s, i = sim.topk(min(k, sim.shape[1]), dim=1)
            top_s.append(s)
            top_i.append(i + t0)
        best_s, j = torch.cat(top_s, 1).topk(k, dim=1)
        best_i = torch.cat(top_i, 1).gather(1, j)
        weights = (best_s / temperature).exp()
        votes = q.new_zeros(len(q), num_classes)
        votes.scatter_add_(1, train_y[best_i], weights)
        out.append(votes)
    return torch.cat(out)


def knn_probe(x_train: torch.Tensor,
              y_train: torch.Tensor,
              x_eval: torch.Tensor,
              y_eval: torch.Tensor,
              num_classes: int,
              k: int = 20,
              temperature: float = 0.07,
              device: str = 'cpu',
              **chunks) -> Dict[str, Optional[float]]:
    """``{'top1', 'top5', 'k'}`` of :func:`knn_classify`, as :func:`linear_probe` returns them."""
    scores = knn_classify(x_train.to(device), y_train, x_eval, num_classes, k, temperature,
                          **chunks)
    return dict(top1=topk_accuracy(scores, y_eval),
                top5=topk_accuracy(scores, y_eval, 5) if num_classes > 5 else None,
                k=min(k, len(x_train)))
