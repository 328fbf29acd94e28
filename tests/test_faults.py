"""Bad input around the happy path: every error names the file or field and what is accepted;
nothing is trained silently wrong and no file is lost.

Through the entry points' ``main`` (tools/train.py, tools/test.py, in-process), the real Runner
and the plugin's one checkpoint reader, on tiny inputs.
"""
import errno
import os
import os.path as osp
import pickle

import pytest
import torch

from deepmim_mm.checkpoint import NotACheckpointError, atomic_save, load_file, read_checkpoint

from conftest import DEMO, make_data, run_main, tiny_config


def no_checkpoint_in(work):
    return not osp.isdir(work) or not [f for f in os.listdir(work) if f.endswith('.pth')]


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
                       'not found: .*nope.pth'):
        load_file(str(tmp_path / 'nope.pth'), 'model.backbone.init_cfg.checkpoint')


@pytest.mark.parametrize('kind', range(5))
def test_bad_load_from_through_train_py(tmp_path, kind):
    """load_from / resume go through the same reader (the compat loader), before anything
    trains: each kind named, no checkpoint written."""
    path, found = _bad_files(tmp_path)[kind]
    cfg = tiny_config(tmp_path / 'tiny.py', make_data(tmp_path, n_per_class=1), iters=2)
    work = str(tmp_path / 'work')
    with pytest.raises(NotACheckpointError) as info:
        run_main('tools/train.py', cfg, '--work-dir', work, '--cfg-options', f'load_from={path}')
    assert str(path) in str(info.value) and found in str(info.value)
    assert no_checkpoint_in(work)


class _Opens:
    """Unpickling this calls ``open(path, 'w')``: stands for code a malicious pickle runs."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, 'w')


@pytest.mark.parametrize('how', ['load_from', '--resume'])
def test_untrusted_checkpoint_through_train_py_runs_nothing(tmp_path, how):
    """A torch file carrying a non-allowlisted global is refused with the plugin's message on
    every stack (onedl-mmengine's loader would retry it with full pickle)."""
    ran = tmp_path / 'ran'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': _Opens(str(ran))}, path)
    cfg = tiny_config(tmp_path / 'tiny.py', make_data(tmp_path, n_per_class=1), iters=2)
    work = str(tmp_path / 'work')
    argv = ['--resume', path] if how == '--resume' else ['--cfg-options', f'load_from={path}']
    with pytest.raises(pickle.UnpicklingError) as info:
        run_main('tools/train.py', cfg, '--work-dir', work, *argv)
    assert str(path) in str(info.value) and 'io.open' in str(info.value)
    assert not ran.exists() and no_checkpoint_in(work)


# ------------------------------------------------------------------------------------------
# Configuration and command-line mistakes: errors before anything is built
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize('option, named', [
    # (--cfg-options, what the error names: the key and the closest accepted one)
    ('train_dataloder.batch_size=2', ["'train_dataloder'", "'train_dataloader'"]),
    ('train_dataloader.batch_sise=2',
     ["'train_dataloader.batch_sise'", "'train_dataloader.batch_size'"]),
    ('custom_hooks.9.enable=True', ['custom_hooks', '5 items']),
    ('default_hooks.checkpoint.max_keep_ckpt=1', ["'max_keep_ckpt'", "'max_keep_ckpts'"]),
    # ... also with a scoped type (mmengine would fail at the first save only).
    ('default_hooks.checkpoint.type=mmengine.CheckpointHook '
     'default_hooks.checkpoint.max_keep_ckpt=1',
     ['default_hooks.checkpoint (CheckpointHook)', "'max_keep_ckpt'"]),
    # The model's own check, at its first forward.
    ('model.backbone.img_size=64 model.neck.num_patches=16',
     ['224x224', 'model.backbone.img_size', 'crop']),
])
def test_config_mistakes_through_train_py(tmp_path, option, named):
    work = str(tmp_path / 'w')
    with pytest.raises(ValueError) as info:
        run_main('tools/train.py', DEMO, '--work-dir', work, '--cfg-options', *option.split())
    assert all(n in str(info.value) for n in named), str(info.value)
    assert no_checkpoint_in(work)


@pytest.mark.parametrize('option, named', [
    ('custom_hooks.0.intervall=2', ['DeepMIMReconstructionHook', "'intervall'"]),
    ('default_hooks.logger.intervl=2', ['LoggerHook', "'intervl'"]),
])
def test_other_hooks_refuse_unknown_arguments_when_built(tmp_path, option, named):
    """The Runner builds them before anything trains, and mmengine names class and argument."""
    work = str(tmp_path / 'w')
    with pytest.raises(TypeError) as info:
        run_main('tools/train.py', DEMO, '--work-dir', work, '--cfg-options', option)
    assert all(n in str(info.value) for n in named), str(info.value)
    assert no_checkpoint_in(work)


def test_cfg_options_rules():
    from mmengine.config import Config

    from deepmim_mm.utils import check_cfg_options
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


def _entry_point_cases(tmp_path):
    """{case: (tool, argv, exception, what the message names)} for mistakes of the command
    line and the work dir."""
    ckpt = tmp_path / 'x.pth'
    atomic_save({'state_dict': {}}, str(ckpt))
    afile = tmp_path / 'afile'
    afile.write_text('x')
    empty, gone = tmp_path / 'empty', tmp_path / 'gone'
    for work, target in ((empty, ''), (gone, str(gone / 'iter_9.pth'))):
        work.mkdir()
        (work / 'last_checkpoint').write_text(target)
    test = ['tools/test.py', DEMO, str(ckpt)]
    train = ['tools/train.py', DEMO]
    return {
        'test.py typo': (test + ['--cfg-options', 'test_dataloder.batch_size=1'], ValueError,
                         ["'test_dataloder'"]),
        'launcher env': (train + ['--launcher', 'pytorch'], ValueError,
                         ['--launcher pytorch', 'RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT',
                          'tools/dist_train.sh']),
        'resume file': (train + ['--resume', str(tmp_path / 'no.pth')], FileNotFoundError,
                        [str(tmp_path / 'no.pth')]),
        'train work dir': (train + ['--work-dir', str(afile)], ValueError,
                           [f'--work-dir {afile}', 'not a folder']),
        'test work dir': (test + ['--work-dir', str(afile)], ValueError,
                          [f'--work-dir {afile}', 'not a folder']),
        'empty pointer': (train + ['--work-dir', str(empty), '--resume'], ValueError,
                          [str(empty / 'last_checkpoint'), 'empty']),
        'pointer to nothing': (train + ['--work-dir', str(gone), '--resume'], FileNotFoundError,
                               [str(gone / 'last_checkpoint'), str(gone / 'iter_9.pth')]),
    }


@pytest.mark.parametrize('case', ['test.py typo', 'launcher env', 'resume file', 'train work dir',
                                  'test work dir', 'empty pointer', 'pointer to nothing'])
def test_entry_point_mistakes(tmp_path, monkeypatch, case):
    """Each is one error naming the argument or file, before anything is built (mmengine: a
    bare KeyError: 'RANK', FileExistsError, or an empty path)."""
    for var in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.setenv(var, '0')  # restored after the test, whatever the tool sets
        monkeypatch.delenv(var)
    argv, error, named = _entry_point_cases(tmp_path)[case]
    with pytest.raises(error) as info:
        run_main(*argv)
    assert all(n in str(info.value) for n in named), str(info.value)


def test_resume_says_what_it_resumes(tmp_path, capsys):
    data = make_data(tmp_path, n_per_class=1)
    cfg = tiny_config(tmp_path / 'tiny.py', data, iters=2, ckpt=2)
    work = str(tmp_path / 'work')
    assert run_main('tools/train.py', cfg, '--work-dir', work, '--resume') == 0
    out = ''.join(capsys.readouterr())
    assert f'resume: {work} holds no checkpoint to resume from' in out
    assert run_main('tools/train.py', cfg, '--work-dir', work, '--resume') == 0
    out = ''.join(capsys.readouterr())
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
    saved = os.umask(0o002)
    try:
        assert run_main('tools/train.py', cfg, '--work-dir', work) == 0
    finally:
        os.umask(saved)
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
