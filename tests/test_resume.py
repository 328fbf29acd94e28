"""Exact resume after SIGKILL (RNGStateHook), and crash-safe checkpoint writing
(AtomicCheckpointHook).

Runs tools/train.py on a tiny DeepMIM (2 blocks, 32 px, random crops and flips) with an
IterBasedTrainLoop; the interrupted run is killed with SIGKILL by a hook in a throwaway plugin.
"""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, run_tool, write_imagenet_folder

DEMO = osp.join(ROOT, 'configs', 'pretrain', 'deepmim_vit-tiny-p16_1xb8-coslr-20e_demo.py')

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


def tiny_config(path, data, iters=16, ckpt=4, batch=2, workers=0, diff_rank=False,
                extra_imports=(), extra_hooks=''):
    """Write a tiny DeepMIM config (IterBasedTrainLoop, deterministic) and return its path."""
    imports = ''.join(f', {m!r}' for m in extra_imports)
    with open(path, 'w') as f:
        f.write(TINY.format(demo=DEMO, data=data, iters=iters, ckpt=ckpt, batch=batch,
                            workers=workers, diff_rank=diff_rank, extra_imports=imports,
                            extra_hooks=extra_hooks))
    return str(path)


def make_data(tmp_path, n_per_class=4):
    root = str(tmp_path / 'data')
    write_imagenet_folder(osp.join(root, 'train'), num_classes=3, per_class=n_per_class, size=48)
    return osp.join(root, 'train')


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


def run_killed(args, env=None):
    """Run python args, expecting the process to die of SIGKILL."""
    full_env = dict(os.environ, OMP_NUM_THREADS='2', **(env or {}))
    proc = subprocess.run([sys.executable] + args, cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == -9, (proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc


def test_sigkill_mid_epoch_resumes_exactly(tmp_path, workers=2):
    """Killed mid-epoch, resumed: every later loss equals the uninterrupted run's.

    2 dataloader workers, as users run; with ``workers=0`` (augmentation RNG in the main
    process) it passes too. Without ``RNGStateHook`` the losses differ from the first resumed
    iteration on (different masks).
    """
    data = make_data(tmp_path)  # 12 images, batch 2: 6 iterations per epoch
    cfg = tiny_config(tmp_path / 'tiny.py', data, workers=workers)
    (tmp_path / 'kill_plugin.py').write_text(KILL_PLUGIN)
    killed_cfg = tiny_config(tmp_path / 'tiny_killed.py', data, workers=workers,
                             extra_imports=['kill_plugin'],
                             extra_hooks="\ncustom_hooks.append(dict(type='KillAtIter', at=10))")
    env = {'PYTHONPATH': str(tmp_path)}

    ref = str(tmp_path / 'ref')
    run_tool(['tools/train.py', cfg, '--work-dir', ref])
    ref_losses = losses(ref)
    assert sorted(ref_losses) == list(range(1, 17))

    work = str(tmp_path / 'work')
    # Killed at iteration 10 (epoch 2, batch 4 of 6); the last checkpoint is iteration 8.
    run_killed(['tools/train.py', killed_cfg, '--work-dir', work], env=env)
    with open(osp.join(work, 'last_checkpoint')) as f:
        assert f.read().strip().endswith('iter_8.pth')
    proc = run_tool(['tools/train.py', cfg, '--work-dir', work, '--resume'])
    assert 'resumed epoch: 0, iter: 8' in proc.stdout + proc.stderr
    assert_resumed_exactly(ref, work, iters=16)


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


CRASH_PLUGIN = '''
import os, signal
from mmengine.hooks import Hook
from mmpretrain.registry import HOOKS


@HOOKS.register_module()
class CrashDuringSave(Hook):
    """Test only: the checkpoint save at iteration ``at`` writes half the file, then SIGKILL."""
    priority = 'LOWEST'

    def __init__(self, at):
        self.at = at

    def before_save_checkpoint(self, runner, checkpoint):
        if runner.iter + 1 != self.at:
            return
        import io
        real_open = io.open

        class HalfThenDie(io.FileIO):
            def write(self, data):
                super().write(bytes(data)[:len(data) // 2])
                self.flush()
                os.fsync(self.fileno())
                os.kill(os.getpid(), signal.SIGKILL)

        def fdopen(fd, mode='r', *args, **kwargs):  # how the atomic writer opens its file
            if 'w' in mode:
                return HalfThenDie(fd, mode.replace('b', ''), closefd=True)
            return real_open(fd, mode, *args, **kwargs)

        os.fdopen = fdopen
'''


def test_crash_while_writing_checkpoint_keeps_last_good(tmp_path):
    data = make_data(tmp_path)
    (tmp_path / 'crash_plugin.py').write_text(CRASH_PLUGIN)
    crash_cfg = tiny_config(
        tmp_path / 'tiny_crash.py', data, iters=8, ckpt=2, extra_imports=['crash_plugin'],
        extra_hooks="\ncustom_hooks.append(dict(type='CrashDuringSave', at=6))\n"
                    "default_hooks['checkpoint']['max_keep_ckpts'] = 1")
    work = str(tmp_path / 'work')
    run_killed(['tools/train.py', crash_cfg, '--work-dir', work],
               env={'PYTHONPATH': str(tmp_path)})
    # The save of iteration 6 died half-way: iter_4 is still there, complete, and is the one
    # last_checkpoint names; the half-written file is a *.tmp that nothing reads.
    pths = sorted(osp.basename(p) for p in glob.glob(osp.join(work, '*.pth')))
    assert pths == ['iter_4.pth']
    assert glob.glob(osp.join(work, 'iter_6.pth.*.tmp'))
    with open(osp.join(work, 'last_checkpoint')) as f:
        assert f.read().strip() == osp.join(work, 'iter_4.pth')
    torch.load(osp.join(work, 'iter_4.pth'), weights_only=False)  # complete

    cfg = tiny_config(tmp_path / 'tiny.py', data, iters=8, ckpt=2)
    proc = run_tool(['tools/train.py', cfg, '--work-dir', work, '--resume'])
    out = proc.stdout + proc.stderr
    assert 'resumed epoch: 0, iter: 4' in out
    assert osp.isfile(osp.join(work, 'iter_8.pth'))
    # The interrupted save's temporary file is removed when the next run starts, and said so.
    assert 'removed 1 temporary file(s) left by an interrupted checkpoint save' in out
    assert not glob.glob(osp.join(work, '*.tmp'))


def test_atomic_save_leaves_old_file_on_failure(tmp_path, monkeypatch):
    """In-process: a torch.save that fails half-way leaves the previous file untouched."""
    from deepmim_mm.checkpoint import atomic_save
    path = str(tmp_path / 'ckpt.pth')
    atomic_save({'a': torch.ones(3)}, path)

    def broken(obj, f, *args, **kwargs):
        f.write(b'PK\x03\x04 half a zip')
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', broken)
    with pytest.raises(OSError, match='disk full'):
        atomic_save({'a': torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(torch.load(path)['a'], torch.ones(3))
    assert os.listdir(tmp_path) == ['ckpt.pth']  # the temporary file was removed


def test_shipped_configs_select_the_atomic_checkpoint_hook():
    """Every shipped training config saves through AtomicCheckpointHook (save, then pointer,
    then removal of old checkpoints; atomic writes) and checks what it loads with
    CheckpointMatchHook."""
    from mmengine.config import Config
    configs = sorted(p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
                     if '_base_' not in p)
    assert len(configs) > 30
    for path in configs:
        cfg = Config.fromfile(path)
        assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook', path
        assert 'deepmim_mm.compat.mmengine_checkpoint' in cfg.custom_imports.imports, path
        assert 'CheckpointMatchHook' in [h.type for h in cfg.custom_hooks], path
