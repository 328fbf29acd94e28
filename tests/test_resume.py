"""Exact resume after SIGKILL (RNGStateHook), and crash-safe checkpoint writing
(AtomicCheckpointHook).

tools/train.py trains the tiny DeepMIM of conftest (2 blocks, 32 px, random crops and flips) with
an IterBasedTrainLoop; the interrupted run is a process killed with SIGKILL by a hook in a
throwaway plugin; the other runs are in-process.
"""
import glob
import os
import os.path as osp

import pytest
import torch

from conftest import (KILL_PLUGIN, ROOT, assert_resumed_exactly, losses, make_data,  # noqa: F401
                      run_killed, run_main, tiny_config, with_pythonpath)


def test_sigkill_mid_epoch_resumes_exactly(tmp_path, capsys, workers=2):
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

    ref = str(tmp_path / 'ref')
    assert run_main('tools/train.py', cfg, '--work-dir', ref) == 0
    assert sorted(losses(ref)) == list(range(1, 17))

    work = str(tmp_path / 'work')
    # Killed at iteration 10 (epoch 2, batch 4 of 6); the last checkpoint is iteration 8.
    run_killed(['tools/train.py', killed_cfg, '--work-dir', work], with_pythonpath(tmp_path))
    with open(osp.join(work, 'last_checkpoint')) as f:
        assert f.read().strip().endswith('iter_8.pth')
    capsys.readouterr()
    assert run_main('tools/train.py', cfg, '--work-dir', work, '--resume') == 0
    assert 'resumed epoch: 0, iter: 8' in ''.join(capsys.readouterr())
    assert_resumed_exactly(ref, work, iters=16)


def test_resume_exact_when_the_loop_skips_in_the_sampler(tmp_path):
    """With an InfiniteSampler, which onedl-mmengine's loop fast-forwards without drawing the
    trained batches (upstream's draws them), a resumed run with 2 workers equals the
    uninterrupted one too."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg_path = tiny_config(tmp_path / 'tiny.py', make_data(tmp_path), iters=12, workers=2)
    for name, resume_from in (('ref', None), ('work', tmp_path / 'ref' / 'iter_8.pth')):
        cfg = Config.fromfile(cfg_path)
        cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
        cfg.work_dir, cfg.experiment_name = str(tmp_path / name), f'sampler_{name}'
        cfg.resume, cfg.load_from = resume_from is not None, resume_from and str(resume_from)
        Runner.from_cfg(cfg).train()
    ref, got = losses(str(tmp_path / 'ref')), losses(str(tmp_path / 'work'))
    assert sorted(got) == [9, 10, 11, 12]
    assert all(got[i] == ref[i] for i in got), (got, ref)


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


def test_crash_while_writing_checkpoint_keeps_last_good(tmp_path, capsys):
    data = make_data(tmp_path)
    (tmp_path / 'crash_plugin.py').write_text(CRASH_PLUGIN)
    crash_cfg = tiny_config(
        tmp_path / 'tiny_crash.py', data, iters=8, ckpt=2, extra_imports=['crash_plugin'],
        extra_hooks="\ncustom_hooks.append(dict(type='CrashDuringSave', at=6))\n"
                    "default_hooks['checkpoint']['max_keep_ckpts'] = 1")
    work = str(tmp_path / 'work')
    run_killed(['tools/train.py', crash_cfg, '--work-dir', work], with_pythonpath(tmp_path))
    # The save of iteration 6 died half-way: iter_4 is still there, complete, and is the one
    # last_checkpoint names; the half-written file is a *.tmp that nothing reads.
    pths = sorted(osp.basename(p) for p in glob.glob(osp.join(work, '*.pth')))
    assert pths == ['iter_4.pth']
    assert glob.glob(osp.join(work, 'iter_6.pth.*.tmp'))
    with open(osp.join(work, 'last_checkpoint')) as f:
        assert f.read().strip() == osp.join(work, 'iter_4.pth')
    torch.load(osp.join(work, 'iter_4.pth'), weights_only=False)  # complete

    cfg = tiny_config(tmp_path / 'tiny.py', data, iters=8, ckpt=2)
    assert run_main('tools/train.py', cfg, '--work-dir', work, '--resume') == 0
    out = ''.join(capsys.readouterr())
    assert 'resumed epoch: 0, iter: 4' in out
    assert osp.isfile(osp.join(work, 'iter_8.pth'))
    # The interrupted save's temporary file is removed when the next run starts, and said so.
    assert 'removed 1 temporary file(s)' in out and 'iter_6.pth.' in out
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
    from deepmim_mm.utils import load_config
    configs = sorted(p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
                     if '_base_' not in p)
    assert len(configs) > 30
    for path in configs:
        cfg = load_config(path)
        assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook', path
        assert 'deepmim_mm.compat.mmengine_checkpoint' in cfg.custom_imports.imports, path
        assert 'CheckpointMatchHook' in [h.type for h in cfg.custom_hooks], path


def test_runner_built_from_arguments_resumes_exactly(tmp_path, capsys):
    """A Runner built in Python (no config: ``runner.cfg`` is empty) resumes exactly too: the
    hook tells a resume from ``load_from`` by the restored iteration, not by the config; so
    does ResumeCheckHook when nothing is left to train."""
    import inspect
    import shutil

    from mmengine.config import Config
    from mmengine.runner import Runner

    cfg_path = tiny_config(tmp_path / 'tiny.py', make_data(tmp_path))
    ref = str(tmp_path / 'ref')
    assert run_main('tools/train.py', cfg_path, '--work-dir', ref) == 0
    work = tmp_path / 'work'
    work.mkdir()
    shutil.copy(osp.join(ref, 'iter_12.pth'), work / 'iter_12.pth')  # (max_keep_ckpts=2)
    (work / 'last_checkpoint').write_text(str(work / 'iter_12.pth'))

    cfg = Config.fromfile(cfg_path)
    accepted = set(inspect.signature(Runner.__init__).parameters) - {'self', 'cfg', 'work_dir'}
    cfg.custom_hooks.append(dict(type='ResumeCheckHook'))
    args = {k: v for k, v in cfg.items() if k in accepted and k != 'resume'}
    runner = Runner(work_dir=str(work), resume=True, experiment_name='args_1', **args)
    assert not runner.cfg.get('resume')
    runner.train()
    ref_losses, got = losses(ref), losses(str(work))
    assert sorted(got) == list(range(13, 17))
    for it in got:
        for key, value in ref_losses[it].items():
            assert got[it][key] == pytest.approx(value, rel=1e-6, abs=1e-6), (it, key)
    capsys.readouterr()
    # Resumed at iteration 16 of 16: ResumeCheckHook says so (it has no runner.cfg either).
    Runner(work_dir=str(work), resume=True, experiment_name='args_2', **args).train()
    assert 'resume: the checkpoint is at iteration 16 of 16' in ''.join(capsys.readouterr())


def test_epoch_loop_resume_says_why_it_is_not_exact(tmp_path, capsys):
    """An EpochBasedTrainLoop restarts an epoch from its first batch: resuming inside an epoch is
    said so; resuming after a complete epoch of a dataloader that since got shorter names both
    lengths (not "inside epoch")."""
    data = make_data(tmp_path, n_per_class=2)  # 6 images, batch 2: 3 batches per epoch
    epochs = "\ntrain_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=2)"
    by_iter = tiny_config(tmp_path / 'by_iter.py', data, iters=6, ckpt=1, extra_hooks=epochs)
    by_epoch = tiny_config(tmp_path / 'by_epoch.py', data, iters=6, ckpt=1, extra_hooks=(
        epochs + "\ndefault_hooks['checkpoint']['by_epoch'] = True"))
    for cfg in (by_iter, by_epoch):
        assert run_main('tools/train.py', cfg, '--work-dir', str(tmp_path / 'ref')) == 0
    capsys.readouterr()
    assert run_main('tools/train.py', by_iter, '--work-dir', str(tmp_path / 'inside'),
                    '--resume', str(tmp_path / 'ref' / 'iter_5.pth')) == 0
    assert 'resumed at iteration 5, inside epoch 2' in ''.join(capsys.readouterr())
    for path in sorted(glob.glob(osp.join(data, '*', '*')))[:2]:
        os.remove(path)  # 4 images left: 2 batches per epoch
    assert run_main('tools/train.py', by_epoch, '--work-dir', str(tmp_path / 'shrunk'),
                    '--resume', str(tmp_path / 'ref' / 'epoch_1.pth')) == 0
    out = ''.join(capsys.readouterr())
    assert 'changed from 3 to 2 batches per epoch' in out and 'inside epoch' not in out
