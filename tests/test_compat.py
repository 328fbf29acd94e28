"""Tests of deepmim_mm.compat (opt-in fixes for the pinned stack on torch 2.14) and of the one
checkpoint reader they route mmengine through.

Each test exercises the real upstream code path that breaks without the fix.
"""
import contextlib
import os.path as osp
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import Dataset

from deepmim_mm import compat
from deepmim_mm.checkpoint import TRUST_ENV, checkpoint_safe_globals, load_file

compat.apply_all()

# ------------------------------------------------------------------------------------------------
# 1. mmengine checkpoints under torch.load(weights_only=True)
# ------------------------------------------------------------------------------------------------
from mmengine.logging import HistoryBuffer  # noqa: E402
from mmengine.model import BaseModel  # noqa: E402
from mmengine.runner import CheckpointLoader, Runner, load_checkpoint  # noqa: E402


class _ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 1)

    def forward(self, inputs, labels=None, mode='tensor'):
        out = self.linear(torch.stack(inputs)).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((out - torch.stack(labels))**2).mean())
        return out


class _ToyDataset(Dataset):
    METAINFO = dict(classes=('a', 'b'))

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(16, 4, generator=g)
        self.y = torch.randn(16, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i], labels=self.y[i])


def _runner(work_dir, name, max_iters, **kwargs):
    # A distinct experiment_name per Runner: MessageHub/MMLogger instances are global by name.
    return Runner(
        model=_ToyModel(),
        work_dir=work_dir,
        experiment_name=name,
        train_dataloader=dict(
            dataset=_ToyDataset(), sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=4, num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=6),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=2, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        **kwargs)


def test_runner_checkpoint_resume_and_load(tmp_path):
    work_dir = str(tmp_path / 'work')
    first = _runner(work_dir, 'compat_first', max_iters=4)
    first.train()
    ckpt = osp.join(work_dir, 'iter_4.pth')
    assert osp.isfile(ckpt)
    first_losses = first.message_hub.get_scalar('train/loss').data[0].copy()
    assert len(first_losses) == 4

    # The checkpoint holds HistoryBuffers and numpy arrays; the plugin's reader loads it with
    # weights_only=True inside its scoped allowlist.
    raw = load_file(ckpt)
    buffer = raw['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    np.testing.assert_allclose(buffer.data[0], first_losses)
    assert buffer.statistics('mean') == pytest.approx(first_losses.mean())

    # A new Runner resumes from it: iteration counter, message hub and optimizer state restored.
    second = _runner(work_dir, 'compat_second', max_iters=6, resume=True, load_from=ckpt)
    second.train()
    assert second.iter == 6
    losses = second.message_hub.get_scalar('train/loss').data[0]
    assert len(losses) == 6
    np.testing.assert_allclose(losses[:4], first_losses)
    state = second.optim_wrapper.optimizer.state_dict()['state']
    assert int(state[0]['step']) == 6
    assert osp.isfile(osp.join(work_dir, 'iter_6.pth'))

    # load_checkpoint of that file restores the weights.
    model = _ToyModel()
    load_checkpoint(model, ckpt, map_location='cpu')
    torch.testing.assert_close(model.state_dict(), raw['state_dict'])


def test_numpy1_checkpoint_names_load():
    """Checkpoints written under numpy 1 name numpy.core.multiarray, not numpy._core."""
    import io
    buffer = io.BytesIO()
    values = {'f64': np.float64(1.5), 'f32': np.float32(2.0), 'i32': np.arange(3, dtype=np.int32)}
    torch.save(values, buffer, _use_new_zipfile_serialization=False)  # one plain pickle stream
    data = buffer.getvalue()
    assert data.count(b'numpy._core.multiarray') == 2
    numpy1 = data.replace(b'numpy._core.multiarray', b'numpy.core.multiarray')
    with checkpoint_safe_globals():
        loaded = torch.load(io.BytesIO(numpy1), weights_only=True)
    assert loaded['f64'] == 1.5 and loaded['f64'].dtype == np.float64
    assert loaded['f32'].dtype == np.float32
    np.testing.assert_array_equal(loaded['i32'], values['i32'])


_CALLS = []


def _record(value):
    _CALLS.append(value)
    return value


class _Payload:
    """Unpickling this runs ``_record('ran')``: stands for arbitrary code in a pickle."""

    def __reduce__(self):
        return (_record, ('ran', ))


def test_untrusted_global_refused_with_clear_message(tmp_path, monkeypatch):
    path = str(tmp_path / 'untrusted.pth')
    torch.save({'state_dict': {}, 'meta': {'payload': _Payload()}}, path)
    monkeypatch.delenv(TRUST_ENV, raising=False)
    _CALLS.clear()

    with pytest.raises(pickle.UnpicklingError) as err:
        CheckpointLoader.load_checkpoint(path, map_location='cpu')
    message = str(err.value)
    assert f'{_record.__module__}._record' in message  # names the global
    assert path in message  # and the file
    assert 'torch.serialization.add_safe_globals' in message
    assert f'{TRUST_ENV}=1' in message
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)  # and plain torch.load refuses it too
    assert _CALLS == []

    monkeypatch.setenv(TRUST_ENV, '1')
    checkpoint = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    assert checkpoint['meta']['payload'] == 'ran'
    assert _CALLS == ['ran']


class _GetattrPayload:

    def __init__(self, name):
        self.name = name

    def __reduce__(self):
        return (getattr, (HistoryBuffer, self.name))


def test_getattr_allowed_only_for_history_buffer_statistics(tmp_path):
    good = str(tmp_path / 'good.pth')
    torch.save({'m': _GetattrPayload('mean')}, good)
    assert load_file(good)['m'] is HistoryBuffer.mean

    bad = str(tmp_path / 'bad.pth')
    torch.save({'m': _GetattrPayload('__init__')}, bad)
    with pytest.raises(pickle.UnpicklingError, match='builtins.getattr'):
        with checkpoint_safe_globals():
            torch.load(bad)
    with pytest.raises(pickle.UnpicklingError, match=TRUST_ENV):
        CheckpointLoader.load_checkpoint(bad, map_location='cpu')


# ------------------------------------------------------------------------------------------------
# The fix is opt-in, scoped and feature-detected
# ------------------------------------------------------------------------------------------------
_FRESH = (
    'import torch, torch._dynamo, mmengine.runner.checkpoint as ckpt  # dynamo: torch\'s own\n'
    'safe = len(torch.serialization.get_safe_globals())\n'
    'before = ckpt.CheckpointLoader._get_checkpoint_loader("x.pth")\n')


def _run(code):
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith('ok'), proc.stderr[-3000:]


def test_fix_applies_only_when_imported_and_registers_no_global():
    _run(_FRESH + 'import deepmim_mm, deepmim_mm.seg, deepmim_mm.det\n'
         'assert ckpt.CheckpointLoader._get_checkpoint_loader("x.pth") is before\n'
         'from deepmim_mm.compat import mmengine_checkpoint as fix\n'  # importing applies it
         'assert ckpt.CheckpointLoader._get_checkpoint_loader("x.pth") is fix.load_from_local\n'
         'assert len(torch.serialization.get_safe_globals()) == safe\n'
         'assert fix.apply() is True\n'  # idempotent
         'print("ok")\n')


@contextlib.contextmanager
def _local_loader(loader):
    """``loader`` registered for local paths, the one registered before restored after."""
    from deepmim_mm.compat import mmengine_checkpoint as fix
    before = CheckpointLoader._get_checkpoint_loader('x.pth')
    applied = fix._applied
    CheckpointLoader.register_scheme(prefixes='', loader=loader, force=True)
    fix._applied = False
    try:
        yield fix
    finally:
        CheckpointLoader.register_scheme(prefixes='', loader=before, force=True)
        fix._applied = applied


def test_fix_does_nothing_where_the_defect_is_gone():
    """A stack whose local loader reads mmengine checkpoints weights-only: no change."""
    def fixed_loader(filename, map_location=None):
        with checkpoint_safe_globals():
            return torch.load(filename, map_location=map_location, weights_only=True)

    with _local_loader(fixed_loader) as fix:
        assert not fix.defect_present() and fix.apply() is False
        assert CheckpointLoader._get_checkpoint_loader('x.pth') is fixed_loader


def test_fix_applies_where_the_loader_falls_back_to_full_pickle():
    """A local loader that retries what weights_only=True refuses with full pickle (as
    onedl-mmengine 0.10.12's does) is replaced; the probe's global is all that ran."""
    def falling_back(filename, map_location=None):
        try:
            return torch.load(filename, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError:
            return torch.load(filename, map_location=map_location, weights_only=False)

    with _local_loader(falling_back) as fix:
        assert fix.apply() is True
        assert CheckpointLoader._get_checkpoint_loader('x.pth') is fix.load_from_local
        assert fix._probe_calls == [True]
