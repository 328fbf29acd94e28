"""Bad input around the happy path: every error names the file or field and what is accepted;
nothing is trained silently wrong and no file is lost.

Through the real entry points (tools/train.py, tools/test.py), the real Runner and the plugin's
one checkpoint reader, on tiny inputs.
"""
import errno
import os
import os.path as osp
import pickle
import subprocess
import sys

import pytest
import torch
from test_resume import make_data, tiny_config

from deepmim_mm.checkpoint import NotACheckpointError, atomic_save, load_file, read_checkpoint

from conftest import ROOT, run_tool

DEMO = osp.join(ROOT, 'configs', 'pretrain', 'deepmim_vit-tiny-p16_1xb8-coslr-20e_demo.py')


def run_failing(args, env=None):
    """Run ``python args`` from the repository root, expecting it to fail; return its output."""
    full_env = dict(os.environ, OMP_NUM_THREADS='2', **(env or {}))
    proc = subprocess.run([sys.executable] + list(args), cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode != 0, proc.stdout[-3000:]
    return proc.stdout + proc.stderr


# ------------------------------------------------------------------------------------------
# Files that are not checkpoints: one reader, one message
# ------------------------------------------------------------------------------------------
class _Custom:
    """A non-tensor object a checkpoint may hold (a real torch file, not allowed by default)."""


def _bad_files(tmp_path):
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    text = tmp_path / 'notes.pth'
    text.write_text('these are my notes, not weights\n')
    noise = tmp_path / 'noise.pth'
    noise.write_bytes(bytes(range(7, 256)) * 4)
    as_list = tmp_path / 'list.pth'
    torch.save([torch.zeros(2)], as_list)
    plain = tmp_path / 'pickled.pth'
    with open(plain, 'wb') as f:
        pickle.dump([1, 2, 3], f, protocol=4)
    return [(empty, 'an empty file, 0 bytes'), (text, 'a text file of'),
            (noise, 'of an unknown format'), (as_list, 'it holds a list, not a dict'),
            (plain, 'a Python pickle, not a torch.save file; it is not unpickled')]


def test_reader_names_every_kind_of_bad_file(tmp_path):
    for path, found in _bad_files(tmp_path):
        with pytest.raises(NotACheckpointError) as info:
            read_checkpoint(str(path), 'checkpoint')
        msg = str(info.value)
        assert f'not a checkpoint: {path}' in msg and found in msg, msg
        assert 'DEEPMIM_TRUST_CHECKPOINTS' not in msg  # no hint to unpickle garbage
    # A real checkpoint holding another object: the trust hint, with the object named.
    real = tmp_path / 'custom.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'extra': _Custom()}, real)
    with pytest.raises(pickle.UnpicklingError) as info:
        load_file(str(real))
    msg = str(info.value)
    assert str(real) in msg and '_Custom' in msg and 'DEEPMIM_TRUST_CHECKPOINTS=1' in msg
    with pytest.raises(FileNotFoundError, match='model.backbone.init_cfg.checkpoint: checkpoint '
                       'not found: .*nope.pth .*--cfg-options model.backbone.init_cfg.checkpoint'):
        load_file(str(tmp_path / 'nope.pth'), 'model.backbone.init_cfg.checkpoint')


@pytest.mark.parametrize('kind', range(5))
def test_bad_load_from_through_train_py(tmp_path, kind):
    """load_from / resume go through the same reader (the compat loader), before anything
    trains: each kind named, no checkpoint written."""
    path, found = _bad_files(tmp_path)[kind]
    cfg = tiny_config(tmp_path / 'tiny.py', make_data(tmp_path, n_per_class=1), iters=2)
    work = str(tmp_path / 'work')
    out = run_failing(['tools/train.py', cfg, '--work-dir', work, '--cfg-options',
                       f'load_from={path}'])
    assert f'not a checkpoint: {path}' in out and found in out, out[-2000:]
    assert not osp.isdir(work) or not [f for f in os.listdir(work) if f.endswith('.pth')]


# ------------------------------------------------------------------------------------------
# Configuration and command-line mistakes: errors before anything is built
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize('option, message', [
    ('train_dataloder.batch_size=2',
     "the config has no 'train_dataloder'; did you mean 'train_dataloader'?"),
    ('train_dataloader.batch_sise=2',
     "the config has no 'train_dataloader.batch_sise'; did you mean "
     "'train_dataloader.batch_size'?"),
    ('custom_hooks.9.enable=True', 'custom_hooks is a list of 5 items'),
    ('default_hooks.checkpoint.max_keep_ckpt=1',
     "unknown argument(s) 'max_keep_ckpt' (did you mean 'max_keep_ckpts'?)"),
    # ... also with a scoped type, in custom_hooks, and in any hook class the Runner builds.
    ('default_hooks.checkpoint.type=mmengine.CheckpointHook '
     'default_hooks.checkpoint.max_keep_ckpt=1',
     "default_hooks.checkpoint (CheckpointHook): unknown argument(s) 'max_keep_ckpt'"),
    ('custom_hooks.0.intervall=2',
     "custom_hooks.0 (DeepMIMReconstructionHook): unknown argument(s) 'intervall' (did you "
     "mean 'interval'?)"),
    ('default_hooks.logger.intervl=2',
     "default_hooks.logger (LoggerHook): unknown argument(s) 'intervl' (did you mean "
     "'interval'?)"),
    ('model.backbone.img_size=64',
     'model.backbone.img_size=64 but the train pipeline\'s RandomResizedCrop(scale=224) gives '
     '224x224 images'),
])
def test_config_mistakes_through_train_py(tmp_path, option, message):
    out = run_failing(['tools/train.py', DEMO, '--work-dir', str(tmp_path / 'w'),
                       '--cfg-options', *option.split()])
    assert message in out, out[-2000:]
    assert not osp.exists(str(tmp_path / 'w')) or not any(
        f.endswith('.pth') for f in os.listdir(tmp_path / 'w'))


def test_cfg_options_rules():
    from mmengine.config import Config

    from deepmim_mm.engine.config_checks import check_cfg_options
    cfg = Config.fromfile(DEMO)
    # Existing keys, list items, and a new argument of a class (checked when it is built).
    check_cfg_options(cfg, {'train_dataloader.batch_size': 2, 'custom_hooks.0.enable': True,
                            'optim_wrapper.accumulative_counts': 2,
                            'optim_wrapper.clip_grad.max_norm': 3.0,
                            'model.backbone.init_cfg': None})
    # New arguments the Runner takes in its untyped dicts and at the top level are accepted.
    check_cfg_options(cfg, {'val_dataloader.persistent_workers': False,
                            'train_dataloader.prefetch_factor': 4, 'train_cfg.val_begin': 2,
                            'randomness.deterministic': True, 'find_unused_parameters': True,
                            'env_cfg.dist_cfg.backend': 'gloo', 'auto_scale_lr.enable': True})
    for key, close in (('find_unused_parameter', 'find_unused_parameters'),
                       ('train_dataloader.persistant_workers', 'persistent_workers'),
                       ('env_cfg.cudnn_benchmrk', 'env_cfg.cudnn_benchmark'),
                       ('my_own_key', None)):
        with pytest.raises(ValueError, match='--allow-new-keys') as e:
            check_cfg_options(cfg, {key: True})
        assert close is None or "did you mean '" in str(e.value) and close in str(e.value)
        check_cfg_options(cfg, {key: True}, allow_new=True)
    with pytest.raises(ValueError, match='train_cfg.max_epochs is a int'):
        check_cfg_options(cfg, {'train_cfg.max_epochs.x': 1})


def test_cfg_options_typo_through_test_py(tmp_path):
    ckpt = tmp_path / 'x.pth'
    atomic_save({'state_dict': {}}, str(ckpt))
    out = run_failing(['tools/test.py', DEMO, str(ckpt), '--cfg-options',
                       'test_dataloder.batch_size=1'])
    assert "the config has no 'test_dataloder'" in out, out[-2000:]


def test_launcher_without_its_environment(tmp_path):
    clean = {k: v for k, v in os.environ.items()
             if k not in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')}
    proc = subprocess.run([sys.executable, 'tools/train.py', DEMO, '--launcher', 'pytorch'],
                          cwd=ROOT, env=clean, capture_output=True, text=True,
                          timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert ('--launcher pytorch: the environment lacks RANK, WORLD_SIZE, MASTER_ADDR, '
            'MASTER_PORT' in out), out[-2000:]
    assert 'tools/dist_train.sh' in out and "KeyError: 'RANK'" not in out


def test_resume_missing_file(tmp_path):
    out = run_failing(['tools/train.py', DEMO, '--resume', str(tmp_path / 'gone.pth')])
    assert f'--resume {tmp_path / "gone.pth"}: no such checkpoint file' in out


def test_work_dir_mistakes(tmp_path):
    """A work dir that is a file, and a last_checkpoint that is empty or names a deleted file,
    are one line each naming the path (mmengine: FileExistsError, or an empty path)."""
    afile = tmp_path / 'afile'
    afile.write_text('x')
    for tool in ('tools/train.py', 'tools/test.py'):
        args = [tool, DEMO] + (['ckpt.pth'] if tool.endswith('test.py') else [])
        out = run_failing(args + ['--work-dir', str(afile)])
        assert f'--work-dir {afile}: a file, not a folder' in out, out[-2000:]
    work = tmp_path / 'work'
    work.mkdir()
    pointer = work / 'last_checkpoint'
    pointer.write_text('')
    out = run_failing(['tools/train.py', DEMO, '--work-dir', str(work), '--resume'])
    assert f'--resume: {pointer} is empty' in out and 'remove' in out, out[-2000:]
    pointer.write_text(str(work / 'iter_9.pth'))
    out = run_failing(['tools/train.py', DEMO, '--work-dir', str(work), '--resume'])
    assert f'--resume: {pointer} names {work / "iter_9.pth"}, which does not exist' in out


def test_resume_says_what_it_resumes(tmp_path):
    data = make_data(tmp_path, n_per_class=1)
    cfg = tiny_config(tmp_path / 'tiny.py', data, iters=2, ckpt=2)
    work = str(tmp_path / 'work')
    first = run_tool(['tools/train.py', cfg, '--work-dir', work, '--resume'])
    assert (f'resume: {work} holds no checkpoint to resume from (no last_checkpoint file): '
            'training starts from scratch') in first.stdout + first.stderr
    again = run_tool(['tools/train.py', cfg, '--work-dir', work, '--resume'])
    out = again.stdout + again.stderr
    assert 'resume: the checkpoint is at iteration 2 of 2' in out
    assert 'nothing is left to train' in out and 'train_cfg.max_epochs / max_iters' in out


# ------------------------------------------------------------------------------------------
# Writing checkpoints: file mode, full disk
# ------------------------------------------------------------------------------------------
def test_checkpoints_honour_the_umask(tmp_path):
    """torch.save gives 0o666 & ~umask; so do the atomic writes (not mkstemp's 0o600)."""
    data = make_data(tmp_path, n_per_class=1)
    cfg = tiny_config(tmp_path / 'tiny.py', data, iters=2, ckpt=2)
    work = str(tmp_path / 'work')
    code = ('import os, runpy, sys; os.umask(0o002); '
            f'sys.argv = ["tools/train.py", {cfg!r}, "--work-dir", {work!r}]; '
            'runpy.run_path("tools/train.py", run_name="__main__")')
    run_tool(['-c', code])
    for name in ('iter_2.pth', 'last_checkpoint'):
        assert oct(os.stat(osp.join(work, name)).st_mode & 0o777) == oct(0o664), name


def test_full_disk_names_the_file_and_keeps_the_previous_one(tmp_path, monkeypatch):
    path = str(tmp_path / 'epoch_1.pth')
    atomic_save({'a': torch.ones(2)}, path)

    class Full:
        def __init__(self, fd, mode):
            os.close(fd)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, data):
            raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(os, 'fdopen', lambda fd, mode: Full(fd, mode))
    with pytest.raises(OSError) as info:
        atomic_save({'a': torch.zeros(2)}, path)
    monkeypatch.undo()
    msg = str(info.value)
    assert f'cannot write {path}: no space left on device' in msg and 'MiB free' in msg
    assert torch.equal(load_file(path)['a'], torch.ones(2))
    assert os.listdir(tmp_path) == ['epoch_1.pth']
