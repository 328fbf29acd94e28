"""Shared pytest fixtures: tiny data written to tmp dirs, the repository root, a CPU-only guard."""
import glob
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_IMAGES = osp.join(ROOT, 'deepmim_mm', 'demo', 'images')
DEMO = osp.join(ROOT, 'configs', 'pretrain', 'deepmim_vit-tiny-p16_1xb8-coslr-20e_demo.py')

# Two cores on CI: keep torch from oversubscribing them when tests start subprocesses.
torch.set_num_threads(min(2, os.cpu_count() or 1))


def write_imagenet_folder(root, num_classes=3, per_class=4, size=64, seed=0):
    """Write an ImageNet-style folder of real JPEG files: ``root/<class>/<n>.JPEG``.

    Class ``k`` images are smooth noise around a class-specific colour, so classes are separable
    by simple features. Returns ``root``.
    """
    from PIL import Image
    rng = np.random.default_rng(seed)
    for k in range(num_classes):
        d = osp.join(root, f'class{k}')
        os.makedirs(d, exist_ok=True)
        base = np.array([(k * 97) % 256, (k * 53 + 80) % 256, (k * 191 + 30) % 256], np.float32)
        for n in range(per_class):
            img = base + rng.normal(0, 25, (size, size, 3))
            img = np.clip(img, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(osp.join(d, f'{n}.JPEG'), quality=90)
    return root


def perturb_weights(model, seed=0, embeddings=()):
    """Random biases and LayerNorm affines (and the parameters whose name contains one of
    ``embeddings``), so no weight sits at a trivial value an equivalence test could not see."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith('bias'):
                p.copy_(0.1 * noise)
            elif 'ln' in name and name.endswith('weight'):
                p.copy_(1 + 0.2 * noise)
            elif any(e in name for e in embeddings):
                p.copy_(0.5 * noise)
    return model


@pytest.fixture
def one_thread():
    """One torch thread for the test: on a loaded 2-core machine, tiny matrices (probes, tiny
    ViTs) run several times faster than with two competing threads."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def imagenet_folder(tmp_path):
    """A tiny ImageNet-style folder of real JPEGs (3 classes x 4 images, 64 px)."""
    return write_imagenet_folder(str(tmp_path / 'imagenet'))


def free_port():
    """A free TCP port on localhost (for a torchrun rendezvous)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_tool(args, cwd=ROOT, env=None, timeout=900, check=True):
    """Run ``python <args>`` from the repository root and return the CompletedProcess.

    Fails the test with the tool's output when it exits non-zero (unless ``check=False``: then
    the caller asserts on the exit status).
    """
    full_env = dict(os.environ)
    full_env.setdefault('OMP_NUM_THREADS', '2')
    if env:
        full_env.update(env)
    proc = subprocess.run([sys.executable] + list(args), cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f'{args} exited {proc.returncode}\nSTDOUT:\n{proc.stdout[-6000:]}\n'
                    f'STDERR:\n{proc.stderr[-6000:]}')
    return proc


def run_main(script, *argv, cwd=ROOT):
    """Run ``python <script> <argv>`` in this process and return its exit status.

    ``script`` is relative to the repository root (e.g. ``'tools/train.py'``); its folder goes
    first on ``sys.path`` as for a script started by the interpreter. Output goes to the test's
    ``capsys``/``capfd``. Use it wherever the process itself is not what is tested: it saves the
    interpreter start and the imports (seconds per call on 2 cores).
    """
    import runpy
    path = osp.join(ROOT, script)
    saved_argv, saved_path, saved_cwd = sys.argv, list(sys.path), os.getcwd()
    sys.argv = [path] + [str(a) for a in argv]
    sys.path.insert(0, osp.dirname(path))
    os.chdir(cwd)
    try:
        runpy.run_path(path, run_name='__main__')
    except SystemExit as e:  # as the interpreter does: a message goes to stderr, status 1
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        os.chdir(saved_cwd)
    return 0


@pytest.fixture
def mmpretrain_scope():
    """Build from registries in mmpretrain's scope, whatever scope an earlier test left current.

    (A Runner makes its ``default_scope`` the current one process-wide.)
    """
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        yield


@pytest.fixture(autouse=True)
def _isolated_default_scope():
    """Give every test the process's default-scope state from before it ran.

    A Runner built in one test makes its ``default_scope`` current process-wide, so a later test
    building from ``mmpretrain.registry.MODELS`` would otherwise look in another library's
    registry (e.g. ``mmengine::model``) depending only on test order.
    """
    from mmengine.registry import DefaultScope
    saved = DefaultScope._instance_dict.copy()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)


@pytest.fixture(autouse=True)
def _open_log_stream():
    """An MMLogger made during an earlier test writes to that test's captured stdout, closed
    since: each log line would then print a "--- Logging error ---" traceback, depending only on
    which tests ran before in this process. Point such handlers at this test's stdout."""
    import logging

    from mmengine.logging import MMLogger
    for handler in MMLogger.get_current_instance().handlers:
        if isinstance(handler, logging.StreamHandler) and getattr(handler.stream, 'closed', False):
            handler.stream = sys.stdout  # (setStream would flush the closed one first)


@pytest.fixture(autouse=True)
def _restore_torch_determinism():
    """A Runner with ``randomness.deterministic`` turns torch's deterministic mode on
    process-wide; give later tests the mode they would have had."""
    saved = torch.are_deterministic_algorithms_enabled()
    yield
    torch.use_deterministic_algorithms(saved)


# ------------------------------------------------------------------------------------------
# One tiny DeepMIM training config and one tiny image folder, shared by the training tests
# ------------------------------------------------------------------------------------------
TINY = '''
_base_ = {demo!r}
custom_imports = dict(
    imports=['deepmim_mm', 'deepmim_mm.compat.mmengine_checkpoint'{extra_imports}],
    allow_failed_imports=False)
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=32, num_layers=2, num_heads=2,
                            feedforward_channels=64),
                  img_size=32, patch_size=8, out_indices=None),
    neck=dict(embed_dim=32, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2,
              patch_size=8, num_patches=16),
    head=dict(patch_size=8))
train_dataloader = dict(
    batch_size={batch}, num_workers={workers}, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(_delete_=True, type='CustomDataset', data_root={data!r}, with_label=False,
                 pipeline=[dict(type='LoadImageFromFile'),
                           dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.2, 1.0),
                                backend='pillow', interpolation='bicubic'),
                           dict(type='RandomFlip', prob=0.5),
                           dict(type='PackInputs')]))
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters={iters})
param_scheduler = [dict(type='CosineAnnealingLR', T_max={iters}, by_epoch=False, begin=0,
                        end={iters})]
default_hooks = dict(logger=dict(type='LoggerHook', interval=1),
                     checkpoint=dict(type='AtomicCheckpointHook', interval={ckpt},
                                     by_epoch=False, max_keep_ckpts=2))
log_processor = dict(window_size=1, by_epoch=False)
custom_hooks = [dict(type='RNGStateHook'), dict(type='NonFiniteLossHook'),
                dict(type='CheckpointMatchHook')]{extra_hooks}
randomness = dict(seed=0, deterministic=True, diff_rank_seed={diff_rank})
env_cfg = dict(dist_cfg=dict(backend='gloo'))
'''


def tiny_config(path, data, iters=16, ckpt=4, batch=2, workers=0, diff_rank=False,
                extra_imports=(), extra_hooks=''):
    """Write a tiny DeepMIM config (2 blocks, 32 px, random crops and flips, IterBasedTrainLoop,
    deterministic, AtomicCheckpointHook + RNGStateHook) on ``data``; return its path."""
    imports = ''.join(f', {m!r}' for m in extra_imports)
    with open(path, 'w') as f:
        f.write(TINY.format(demo=DEMO, data=data, iters=iters, ckpt=ckpt, batch=batch,
                            workers=workers, diff_rank=diff_rank, extra_imports=imports,
                            extra_hooks=extra_hooks))
    return str(path)


def make_data(tmp_path, n_per_class=4):
    """A tiny image folder for :func:`tiny_config`: 3 classes x ``n_per_class`` JPEGs, 48 px."""
    root = osp.join(str(tmp_path), 'data', 'train')
    return write_imagenet_folder(root, num_classes=3, per_class=n_per_class, size=48)


def losses(work_dir):
    """{iter: {key: value}} of every loss record in every run under work_dir."""
    out = {}
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if 'loss' in rec:
                    out[rec['iter']] = {k: v for k, v in rec.items() if k.startswith('loss')}
    return out


def assert_resumed_exactly(ref, work, iters):
    """Every loss of the resumed run in ``work`` equals the uninterrupted run's in ``ref``, and
    so do the final checkpoint's weights."""
    ref_losses, got = losses(ref), losses(work)
    assert sorted(got) == sorted(ref_losses) == list(range(1, iters + 1))
    for it in range(1, iters + 1):
        for key, value in ref_losses[it].items():
            assert got[it][key] == pytest.approx(value, rel=1e-6, abs=1e-6), (it, key)
    a = torch.load(osp.join(ref, f'iter_{iters}.pth'), weights_only=False)['state_dict']
    b = torch.load(osp.join(work, f'iter_{iters}.pth'), weights_only=False)['state_dict']
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-6, atol=1e-7)


KILL_PLUGIN = '''
import os, signal
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class KillAtIter(Hook):
    """Test only: SIGKILL this process after iteration ``at`` (1-based)."""
    priority = 'LOWEST'

    def __init__(self, at):
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.at:
            os.kill(os.getpid(), signal.SIGKILL)
'''


def with_pythonpath(folder, env=None):
    """``env`` with ``folder`` (a test's plugin) put before the inherited ``PYTHONPATH``."""
    paths = [str(folder)] + [p for p in [os.environ.get('PYTHONPATH')] if p]
    return dict(env or {}, PYTHONPATH=os.pathsep.join(paths))


def run_killed(args, env=None):
    """Run ``python args``, expecting the process to die of SIGKILL."""
    proc = run_tool(args, env=env, check=False)
    assert proc.returncode == -9, (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc
