"""The batched multi-level decoder computes what the per-level loop computes (losses and the
gradient of every parameter), keeps the per-decoder checkpoint keys, uses fused attention, and
the DeepMIM training step has no host-synchronising operator."""
import copy
import logging
import os.path as osp
import sys

import pytest
import torch
from mmengine.logging import MMLogger
from mmpretrain.registry import MODELS

import deepmim_mm  # noqa: F401
from deepmim_mm.models.necks import MultiLevelDecoder

from conftest import ROOT

sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis'))
from benchmark_utils import HostSyncRecorder  # noqa: E402

MMLogger.get_current_instance().setLevel(logging.ERROR)  # init_weights' per-key reports
TOL = dict(atol=1e-5, rtol=1e-5)


def tiny_neck(**kw):
    args = dict(num_levels=4, decoder_depth=2, num_patches=16, embed_dim=48,
                decoder_embed_dim=32, decoder_num_heads=4)
    args.update(kw)
    neck = MultiLevelDecoder(**args)
    neck.init_weights()
    torch.manual_seed(1)
    for p in neck.parameters():  # non-trivial values everywhere (also norms, biases)
        if p.requires_grad:
            p.data.normal_(0, 0.2)
    return neck


def tiny_deepmim(batched, aux_depth=None, fusion=None):
    cfg = dict(
        type='DeepMIM',
        backbone=dict(type='DeepMIMViT', arch=dict(embed_dims=48, num_layers=4, num_heads=4,
                                                   feedforward_channels=96),
                      img_size=32, patch_size=8, out_indices=[1, 2, 3],
                      fusion_indices=fusion),
        neck=dict(type='MultiLevelDecoder', num_patches=16, patch_size=8, embed_dim=48,
                  decoder_embed_dim=32, decoder_depth=2, aux_decoder_depth=aux_depth,
                  decoder_num_heads=4, batched=batched),
        head=dict(type='DeepMIMHead', norm_pix=True, patch_size=8,
                  loss=dict(type='PixelReconstructionLoss', criterion='L2')),
        data_preprocessor=dict(type='SelfSupDataPreprocessor', mean=[123.675, 116.28, 103.53],
                               std=[58.395, 57.12, 57.375], to_rgb=True))
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model


def run_both(neck, xs, ids):
    results = {}
    for mode in (False, True):
        neck.batched = mode
        neck.zero_grad()
        xs_ = [x.detach().clone().requires_grad_() for x in xs]
        preds = neck(xs_, ids)
        loss = sum((p**2).mean() * (k + 1) for k, p in enumerate(preds))
        loss.backward()
        results[mode] = ([p.detach() for p in preds],
                         {n: p.grad.clone() for n, p in neck.named_parameters()
                          if p.grad is not None}, [x.grad for x in xs_])
    return results[False], results[True]


@pytest.mark.parametrize('aux_depth', [None, 1, 3])
def test_batched_neck_equals_loop(aux_depth):
    neck = tiny_neck(aux_decoder_depth=aux_depth)
    assert neck.batched is None  # the default: auto
    B, N, T = 3, 16, 5
    torch.manual_seed(2)
    xs = [torch.randn(B, T, 48) for _ in range(4)]
    ids = torch.stack([torch.randperm(N) for _ in range(B)])
    (p0, g0, x0), (p1, g1, x1) = run_both(neck, xs, ids)
    for a, b in zip(p0, p1):
        assert a.shape == b.shape == (B, N, 16 * 16 * 3)  # default patch 16
        torch.testing.assert_close(a, b, **TOL)
    trainable = {n for n, p in neck.named_parameters() if p.requires_grad}
    assert set(g0) == set(g1) == trainable  # every decoder parameter gets a gradient
    for n in g0:
        torch.testing.assert_close(g0[n], g1[n], **TOL, msg=n)
    for a, b in zip(x0, x1):
        torch.testing.assert_close(a, b, **TOL)


@pytest.mark.parametrize('aux_depth,fusion', [(None, None), (1, [0, 3])])
def test_deepmim_losses_and_gradients_equal_loop(aux_depth, fusion):
    models = {m: tiny_deepmim(m, aux_depth, fusion) for m in (False, True)}
    models[True].load_state_dict(models[False].state_dict())
    imgs = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    out = {}
    for mode, model in models.items():
        torch.manual_seed(5)  # same random mask
        data = model.data_preprocessor(dict(inputs=imgs, data_samples=[None, None]), True)
        losses = model(data['inputs'], data['data_samples'], mode='loss')
        loss, _ = model.parse_losses(losses)
        loss.backward()
        out[mode] = (losses, {n: p.grad for n, p in model.named_parameters()
                              if p.grad is not None})
    (l0, g0), (l1, g1) = out[False], out[True]
    assert set(l0) == set(l1) and len([k for k in l0 if k.startswith('loss_')]) == 3
    for k in l0:
        torch.testing.assert_close(l0[k], l1[k], **TOL, msg=k)
    assert set(g0) == set(g1) and any(n.startswith('neck.aux_decoders.1.') for n in g0)
    for n in g0:
        torch.testing.assert_close(g0[n], g1[n], **TOL, msg=n)


def test_state_dict_keys_and_mae_checkpoint():
    neck = tiny_neck()
    loop = copy.deepcopy(neck)
    loop.batched = False
    keys = set(neck.state_dict())
    assert keys == set(loop.state_dict())
    assert 'decoder_blocks.0.attn.qkv.weight' in keys
    assert 'aux_decoders.2.decoder_pred.bias' in keys
    assert not any('stack' in k or 'batched' in k for k in keys)
    # mmpretrain's MAE checkpoint (one level) loads strictly with batched=True
    torch.manual_seed(0)
    mae = MODELS.build(dict(
        type='MAE',
        backbone=dict(type='MAEViT', arch=dict(embed_dims=48, num_layers=2, num_heads=4,
                                               feedforward_channels=96),
                      img_size=32, patch_size=8),
        neck=dict(type='MAEPretrainDecoder', num_patches=16, patch_size=8, embed_dim=48,
                  decoder_embed_dim=32, decoder_depth=2, decoder_num_heads=4),
        head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=8,
                  loss=dict(type='PixelReconstructionLoss', criterion='L2'))))
    ours = MODELS.build(dict(
        type='DeepMIM',
        backbone=dict(type='DeepMIMViT', arch=dict(embed_dims=48, num_layers=2, num_heads=4,
                                                   feedforward_channels=96),
                      img_size=32, patch_size=8, out_indices=[1]),
        neck=dict(type='MultiLevelDecoder', num_patches=16, patch_size=8, embed_dim=48,
                  decoder_embed_dim=32, decoder_depth=2, decoder_num_heads=4, batched=True),
        head=dict(type='DeepMIMHead', norm_pix=True, patch_size=8,
                  loss=dict(type='PixelReconstructionLoss', criterion='L2'))))
    res = ours.load_state_dict(mae.state_dict(), strict=True)
    assert not res.missing_keys and not res.unexpected_keys


def test_batched_true_needs_layernorm():
    neck = MultiLevelDecoder(num_levels=2, decoder_depth=1, num_patches=16, embed_dim=32,
                             decoder_embed_dim=32, decoder_num_heads=4,
                             norm_cfg=dict(type='BN1d'))
    assert neck.batched is False  # auto falls back to the loop
    with pytest.raises(ValueError, match='batched'):
        MultiLevelDecoder(num_levels=2, decoder_depth=1, num_patches=16, embed_dim=32,
                          decoder_embed_dim=32, decoder_num_heads=4,
                          norm_cfg=dict(type='BN1d'), batched=True)
    with pytest.raises(ValueError, match="batched must be None.*'auto'"):
        MultiLevelDecoder(num_levels=2, batched='auto')


def test_fused_attention_and_no_python_loop_kernels():
    """One fused SDPA call per block for all levels (no softmax), and fewer GEMMs."""
    neck = tiny_neck()
    xs = [torch.randn(2, 5, 48) for _ in range(4)]
    ids = torch.stack([torch.randperm(16) for _ in range(2)])
    from collections import Counter

    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.c = Counter()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.c[func._schema.name] += 1
            return func(*args, **(kwargs or {}))

    counts = {}
    for mode in (False, True):
        neck.batched = mode
        with Ops() as ops:
            neck(xs, ids)
        counts[mode] = ops.c
    neck.batched = None  # auto: the loop on the CPU
    with Ops() as ops:
        neck(xs, ids)
    counts[None] = ops.c
    sdpa = [k for k in counts[True] if 'scaled_dot_product' in k]
    assert sum(counts[None][k] for k in sdpa) == 8
    assert sdpa and sum(counts[True][k] for k in sdpa) == 2  # depth 2, all 4 levels at once
    assert sum(counts[False][k] for k in sdpa) == 8
    assert not any('softmax' in k for k in counts[True])
    gemms = lambda c: sum(v for k, v in c.items() if k in ('aten::mm', 'aten::addmm',  # noqa
                                                           'aten::bmm', 'aten::baddbmm'))
    assert gemms(counts[True]) * 4 == gemms(counts[False])


def test_deepmim_step_has_no_host_sync():
    """Forward + backward of DeepMIM (encoder, batched decoders, head) never waits for the
    device: no .item(), nonzero, boolean indexing, ... (audited with a dispatch mode)."""
    for batched, fusion in ((True, None), (True, [0, 3]), (False, None)):
        model = tiny_deepmim(batched, fusion=fusion)
        imgs = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
        with HostSyncRecorder() as rec:
            data = model.data_preprocessor(dict(inputs=imgs, data_samples=[None, None]), True)
            losses = model(data['inputs'], data['data_samples'], mode='loss')
            loss, _ = model.parse_losses(losses)
            loss.backward()
        assert not rec.counts, dict(rec.counts)
    # the recorder does catch syncs
    with HostSyncRecorder() as rec:
        t = torch.arange(4.)
        t.sum().item()
        t[t > 1]
    assert rec.counts['aten::_local_scalar_dense'] == 1 and rec.counts['aten::index'] == 1


def test_batched_neck_compiles_without_graph_breaks():
    neck = tiny_neck(aux_decoder_depth=1)
    neck.batched = True
    xs = [torch.randn(2, 5, 48) for _ in range(4)]
    ids = torch.stack([torch.randperm(16) for _ in range(2)])
    torch._dynamo.reset()
    ex = torch._dynamo.explain(neck)(xs, ids)
    assert ex.graph_count == 1 and ex.graph_break_count == 0, ex.break_reasons
