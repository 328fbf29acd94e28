"""Tests of deepmim_mm.utils.compat: the pinned OpenMMLab stack on torch 2.14 and numpy 2.

Each test exercises the real upstream code path that breaks without the fix.
"""
import os.path as osp
import pickle
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import Dataset

import deepmim_mm  # noqa: F401  applies the fixes
from deepmim_mm.utils import compat

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

    # The checkpoint holds HistoryBuffers and numpy arrays; plain torch.load (weights_only) works.
    raw = torch.load(ckpt, weights_only=True)
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
    monkeypatch.delenv(compat.TRUST_ENV, raising=False)
    _CALLS.clear()

    with pytest.raises(pickle.UnpicklingError) as err:
        CheckpointLoader.load_checkpoint(path, map_location='cpu')
    message = str(err.value)
    assert f'{_record.__module__}._record' in message  # names the global
    assert path in message  # and the file
    assert 'torch.serialization.add_safe_globals' in message
    assert f'{compat.TRUST_ENV}=1' in message
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)  # the registered allowlist does not open plain torch.load either
    assert _CALLS == []

    monkeypatch.setenv(compat.TRUST_ENV, '1')
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
    assert torch.load(good)['m'] is HistoryBuffer.mean

    bad = str(tmp_path / 'bad.pth')
    torch.save({'m': _GetattrPayload('__init__')}, bad)
    with pytest.raises(pickle.UnpicklingError, match='builtins.getattr'):
        torch.load(bad)
    with pytest.raises(pickle.UnpicklingError, match=compat.TRUST_ENV):
        CheckpointLoader.load_checkpoint(bad, map_location='cpu')


# ------------------------------------------------------------------------------------------------
# 2. numpy 2 in mmcv / mmpretrain
# ------------------------------------------------------------------------------------------------
def _image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)


def _expected_hue_cv2(img, shift):
    h, s, v = cv2.split(cv2.cvtColor(img, cv2.COLOR_BGR2HSV_FULL))
    h = ((h.astype(np.int64) + shift) % 256).astype(np.uint8)
    return cv2.cvtColor(cv2.merge([h, s, v]), cv2.COLOR_HSV2BGR_FULL)


def _expected_hue_pillow(img, shift):
    from PIL import Image
    pil = Image.fromarray(img[..., ::-1], mode='RGB')
    h, s, v = pil.convert('HSV').split()
    h = ((np.array(h).astype(np.int64) + shift) % 256).astype(np.uint8)
    out = Image.merge('HSV', (Image.fromarray(h, 'L'), s, v)).convert('RGB')
    return np.array(out, dtype=np.uint8)[..., ::-1]


@pytest.mark.parametrize('factor', [-0.5, -0.3, 0.3])
def test_mmcv_adjust_hue_negative_factor(factor):
    import mmcv
    import mmcv.image
    import mmcv.image.photometric
    assert mmcv.adjust_hue is mmcv.image.adjust_hue is mmcv.image.photometric.adjust_hue
    img = _image()
    shift = int(factor * 255)  # numpy 1's np.uint8(factor * 255), wrapped around mod 256
    np.testing.assert_array_equal(
        mmcv.adjust_hue(img, factor, backend='cv2'), _expected_hue_cv2(img, shift))
    np.testing.assert_array_equal(
        mmcv.adjust_hue(img, factor, backend='pillow'), _expected_hue_pillow(img, shift))
    with pytest.raises(ValueError, match='hue_factor'):
        mmcv.adjust_hue(img, 0.7)


def test_mmpretrain_color_jitter_with_hue():
    from mmpretrain.datasets.transforms import ColorJitter
    np.random.seed(0)  # ColorJitter draws its factors from numpy's global RNG
    jitter = ColorJitter(hue=0.5)
    img = _image()
    for _ in range(8):  # hue factors uniform in [-0.5, 0.5]: about half are negative
        out = jitter(dict(img=img.copy()))['img']
        assert out.shape == img.shape and out.dtype == np.uint8


def test_mmpretrain_retrieval_metrics_without_in1d():
    from mmpretrain.evaluation.metrics import RetrievalAveragePrecision, RetrievalRecall
    pred = torch.tensor([[0.9, 0.1, 0.5, 0.3], [0.1, 0.8, 0.3, 0.2]])
    target = [torch.tensor([2]), torch.tensor([1])]
    recall = RetrievalRecall.calculate(pred, target, topk=(1, 2), target_indices=True)
    assert [float(r) for r in recall] == [50.0, 100.0]
    # Ranks of the positives: sample 0 -> 1 (precision 1/2), sample 1 -> 0 (precision 1).
    ap = RetrievalAveragePrecision.calculate(pred, target, topk=4, target_indices=True)
    assert ap == pytest.approx(75.0)


def test_mmcv_pixel_group_numpy_alias_and_cpu_op():
    import mmcv.ops  # noqa: F401
    module = sys.modules['mmcv.ops.pixel_group']  # mmcv.ops.pixel_group is the function
    assert module.np.float is float  # used on its parrots branch; numpy removed np.float
    assert module.np.float32 is np.float32 and module.np.ndarray is np.ndarray
    score = np.full((8, 8), 0.9, np.float32)
    mask = np.zeros((8, 8), bool)
    mask[1:4, 1:4] = mask[5:8, 5:8] = True
    embedding = np.zeros((8, 8, 2), np.float32)
    label = np.zeros((8, 8), np.int32)
    label[2, 2], label[6, 6] = 1, 2
    contour = (label > 0).astype(np.uint8)  # expansion starts from the kernels' contours
    groups = module.pixel_group(score, mask, embedding, label, contour, 3, 0.8)
    # Per instance: mean score, pixel count, then the coordinates of its pixels.
    assert [g[1] for g in groups[1:]] == [9.0, 9.0]
    assert groups[1][0] == pytest.approx(0.9)


# ------------------------------------------------------------------------------------------------
# apply() is lazy and works whichever is imported first
# ------------------------------------------------------------------------------------------------
_LOAD_COMPAT = (
    'import importlib.util, sys\n'
    f'spec = importlib.util.spec_from_file_location("compat_alone", {compat.__file__!r})\n'
    'compat = importlib.util.module_from_spec(spec); spec.loader.exec_module(compat)\n')
_CHECK_PATCHED = (
    'import mmcv, mmengine.runner.checkpoint as ckpt\n'
    'import mmpretrain.evaluation.metrics.retrieval as retrieval\n'
    'assert mmcv.adjust_hue is compat._adjust_hue, mmcv.adjust_hue\n'
    'assert ckpt.torch.load is compat._mmengine_torch_load\n'
    'assert retrieval.np.in1d is compat._in1d\n'
    'import torch, numpy as np\n'
    'assert np.ndarray in torch.serialization.get_safe_globals()\n'
    'print("ok")\n')


@pytest.mark.parametrize('order', ['apply_first', 'import_first'])
def test_apply_lazy_and_order_independent(order):
    heavy = ['mmcv', 'mmcv.ops', 'mmengine.runner', 'mmpretrain', 'mmseg', 'mmdet']
    if order == 'apply_first':
        code = (_LOAD_COMPAT + 'compat.apply(); compat.apply()\n'
                f'loaded = [m for m in {heavy!r} if m in sys.modules]\n'
                'assert not loaded, loaded\n' + _CHECK_PATCHED)
    else:
        code = (_CHECK_PATCHED.split('assert')[0] + _LOAD_COMPAT + 'compat.apply()\n' +
                _CHECK_PATCHED)
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith('ok'), proc.stderr[-3000:]
