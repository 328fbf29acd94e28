"""deepmim_mm.analysis.probe on generated data with a known answer.

Gaussian classes with equal isotropic covariance and equal priors: the Bayes classifier is the
nearest class mean, and logistic regression is well specified, so a converged probe must come
within a point of the Bayes rule's accuracy on the same evaluation samples. Two classes also have
a closed form: Bayes accuracy = Phi(||mu_0 - mu_1|| / 2) at unit variance.
"""
import math
import random

import numpy as np
import pytest
import torch

from deepmim_mm.analysis import pool_tokens
from deepmim_mm.analysis.probe import (fit_logistic_lbfgs, fit_logistic_minibatch, holdout_split,
                                       knn_classify, knn_probe, linear_probe, standardize)

pytestmark = pytest.mark.usefixtures('one_thread')


def gaussian_classes(num_classes, dim, separation, seed=123):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(num_classes, dim, generator=g, dtype=torch.float64)
    return means / means.norm(dim=1, keepdim=True) * separation


def sample(means, n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, len(means), (n, ), generator=g)
    x = means[y] + torch.randn(n, means.shape[1], generator=g, dtype=torch.float64)
    return x.float(), y


def bayes_accuracy(means, x, y):
    """Accuracy (%) of the Bayes rule (nearest mean) on the given samples."""
    pred = torch.cdist(x.double(), means).argmin(1)
    return (pred == y).double().mean().item() * 100


def test_binary_gaussians_reach_the_closed_form_bayes_accuracy():
    means = gaussian_classes(2, 16, 0.8)
    closed_form = 50 * (1 + math.erf((means[0] - means[1]).norm().item() / 2 / math.sqrt(2)))
    xtr, ytr = sample(means, 4000, seed=1)
    xva, yva = sample(means, 40000, seed=2)
    bayes = bayes_accuracy(means, xva, yva)
    assert abs(bayes - closed_form) < 0.6  # the evaluation sample is large enough
    res = linear_probe(xtr, ytr, xva, yva, 2)
    assert abs(res['top1'] - bayes) <= 1.0, (res['top1'], bayes, closed_form)
    assert res['converged'] and res['reason'] in ('gradient', 'loss change')
    assert 0 < res['iterations'] < 1000
    assert res['top5'] is None  # only with more than 5 classes
    # The L2 was chosen on held-out TRAINING data: one held-out score per value tried.
    assert sorted(res['holdout_top1']) == [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    assert res['l2'] in res['holdout_top1'] and res['holdout_top1'][res['l2']] == max(
        res['holdout_top1'].values())
    # Ties on held-out top-1 go to the lower held-out cross-entropy.
    assert sorted(res['holdout_loss']) == sorted(res['holdout_top1'])
    tied = [v for v, acc in res['holdout_top1'].items() if acc == res['holdout_top1'][res['l2']]]
    assert res['holdout_loss'][res['l2']] == min(res['holdout_loss'][v] for v in tied)


@pytest.mark.parametrize('method', ['lbfgs', 'minibatch'])
def test_multiclass_gaussians_reach_the_bayes_accuracy(method):
    """5 classes, 32 dims: the probe is within a point of the Bayes rule on the same samples
    (and of the population Bayes accuracy, by Monte-Carlo with the true posterior). 3000
    training samples are fewer than the mini-batch fit's 4096 batch: the old defaults' failure
    mode, where epochs meant as many steps."""
    means = gaussian_classes(5, 32, 2.0)
    xtr, ytr = sample(means, 3000, seed=1)
    xva, yva = sample(means, 20000, seed=2)
    bayes = bayes_accuracy(means, xva, yva)
    population = bayes_accuracy(means, *sample(means, 400000, seed=3))
    assert abs(bayes - population) < 1.0
    res = linear_probe(xtr, ytr, xva, yva, 5, method=method)
    assert abs(res['top1'] - bayes) <= 1.0, (method, res['top1'], bayes, population)
    assert res['converged'], res
    assert res['top5'] is None and 0 < res['train_loss'] < math.log(5)
    if method == 'minibatch':
        assert res['reason'] == 'plateau' and res['iterations'] > 100


def test_old_defaults_are_reported_as_not_converged():
    """100 AdamW steps at lr 1e-3 (what `--epochs 100` meant for a set smaller than one batch)
    stop far from the optimum; the fit says so, and the converged L-BFGS objective is lower."""
    means = gaussian_classes(5, 32, 2.0)
    x, y = sample(means, 600, seed=1)
    x, = standardize(x)
    old = fit_logistic_minibatch(x, y, 5, 1e-3, max_steps=100, lr=1e-3)
    assert not old.converged and old.reason == 'max_steps' and old.iterations == 100
    best = fit_logistic_lbfgs(x, y, 5, 1e-3)
    assert best.converged and (best.grad_max <= 1e-5 or best.reason == 'loss change')
    assert old.loss > best.loss + 0.1
    # A too small L-BFGS budget is reported too.
    short = fit_logistic_lbfgs(x, y, 5, 1e-3, max_iter=2)
    assert not short.converged and short.reason == 'max_iter' and short.iterations == 2
    # Warm-started at the optimum, nothing is left to do.
    again = fit_logistic_lbfgs(x, y, 5, 1e-3, init=best)
    assert again.converged and again.iterations <= 2
    assert again.loss == pytest.approx(best.loss, abs=1e-6)


def test_the_evaluation_split_is_only_scored():
    """Shuffling the evaluation labels changes the score, nothing the fit chose or reached."""
    means = gaussian_classes(3, 8, 2.0)
    xtr, ytr = sample(means, 600, seed=1)
    xva, yva = sample(means, 600, seed=2)
    a = linear_probe(xtr, ytr, xva, yva, 3)
    b = linear_probe(xtr, ytr, xva, yva[torch.randperm(len(yva))], 3)
    assert (a['l2'], a['train_loss'], a['train_acc'], a['iterations']) == (
        b['l2'], b['train_loss'], b['train_acc'], b['iterations'])
    assert a['holdout_top1'] == b['holdout_top1'] and a['top1'] > b['top1'] + 20


def test_holdout_split_is_stratified_and_deterministic():
    y = torch.tensor([0] * 10 + [1] * 5 + [2] * 1)
    fit, held = holdout_split(y, 0.2, seed=0)
    assert sorted(torch.cat([fit, held]).tolist()) == list(range(16))
    assert torch.bincount(y[held], minlength=3).tolist() == [2, 1, 0]  # class 2 keeps its one
    assert torch.equal(holdout_split(y, 0.2, seed=0)[1], held)
    with pytest.raises(ValueError, match='holdout'):
        holdout_split(y, 1.5)
    with pytest.raises(ValueError, match='no training sample can be held out'):
        linear_probe(torch.randn(3, 4), torch.arange(3), torch.randn(2, 4), torch.arange(2), 3)


def brute_force_knn(train_x, train_y, query_x, num_classes, k, temperature):
    """DINO's weighted vote, one query at a time, in float64."""
    tx = train_x.double() / train_x.double().norm(dim=1, keepdim=True)
    scores = torch.zeros(len(query_x), num_classes, dtype=torch.float64)
    for q in range(len(query_x)):
        v = query_x[q].double()
        sims = [(float(tx[i] @ (v / v.norm())), i) for i in range(len(tx))]
        for s, i in sorted(sims, reverse=True)[:k]:
            scores[q, int(train_y[i])] += math.exp(s / temperature)
    return scores


@pytest.mark.parametrize('k', [1, 5, 20, 100])
def test_knn_equals_brute_force(k):
    g = torch.Generator().manual_seed(0)
    train_x, train_y = torch.randn(37, 6, generator=g), torch.randint(0, 7, (37, ), generator=g)
    query_x, query_y = torch.randn(11, 6, generator=g), torch.randint(0, 7, (11, ), generator=g)
    ref = brute_force_knn(train_x, train_y, query_x, 7, min(k, 37), 0.07)
    for chunks in (dict(), dict(query_chunk=4, train_chunk=5), dict(train_chunk=1)):
        got = knn_classify(train_x, train_y, query_x, 7, k=k, temperature=0.07, **chunks)
        torch.testing.assert_close(got.double(), ref, rtol=1e-4, atol=1e-6)
    res = knn_probe(train_x, train_y, query_x, query_y, 7, k=k)
    top = ref.argsort(1, descending=True)
    assert res['top1'] == pytest.approx(100 * (top[:, 0] == query_y).double().mean().item())
    if (ref > 0).sum(1).min() > 5:  # top-5 is defined (no tie among zero scores)
        assert res['top5'] == pytest.approx(
            100 * (top[:, :5] == query_y[:, None]).any(1).double().mean().item())
    assert res['k'] == min(k, 37)


def test_knn_on_gaussians_beats_chance_and_trails_bayes():
    means = gaussian_classes(4, 8, 3.0)
    xtr, ytr = sample(means, 2000, seed=1)
    xva, yva = sample(means, 2000, seed=2)
    res = knn_probe(xtr, ytr, xva, yva, 4)
    assert 50 < res['top1'] <= bayes_accuracy(means, xva, yva) + 1.0


def test_pool_tokens():
    t = torch.arange(2 * 3 * 4, dtype=torch.float32).view(2, 3, 4)
    assert torch.equal(pool_tokens(t, 'cls'), t[:, 0])
    assert torch.equal(pool_tokens(t, 'avg'), t[:, 1:].mean(1))
    assert pool_tokens(t, None) is t
    with pytest.raises(ValueError, match="'cls', 'avg'"):
        pool_tokens(t, 'max')


def test_probes_leave_the_global_rng_alone():
    """The probes use their own generators: the caller's (a training run's) streams go on."""
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    expected = torch.rand(3), np.random.rand(3), random.random()
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    means = gaussian_classes(3, 8, 2.0)
    xtr, ytr = sample(means, 300, seed=1)
    linear_probe(xtr, ytr, xtr, ytr, 3, method='minibatch', max_steps=200)
    linear_probe(xtr, ytr, xtr, ytr, 3, method='minibatch', max_steps=20, batch_size=64)
    linear_probe(xtr, ytr, xtr, ytr, 3)
    knn_probe(xtr, ytr, xtr, ytr, 3)
    got = torch.rand(3), np.random.rand(3), random.random()
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2]


def test_probes_name_a_bad_method_or_an_empty_memory():
    x, y = torch.randn(6, 3), torch.tensor([0, 1, 0, 1, 0, 1])
    with pytest.raises(ValueError, match="method must be one of .*got 'sgd'"):
        linear_probe(x, y, x, y, 2, method='sgd')
    with pytest.raises(ValueError, match='knn_classify: empty training set'):
        knn_classify(x[:0], y[:0], x, 2)
