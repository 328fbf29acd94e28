"""KNNMonitorHook in real mmengine Runners on a tiny DeepMIM: kNN top-1 of every supervised level
logged as scalars and a plot; training (losses at every iteration) identical with and without
it, even when its work draws from every global RNG; a run with it resumes exactly."""
import glob
import json
import os.path as osp
import random

import numpy as np
import pytest
import torch
from test_resume import losses as _losses
from test_resume import tiny_config

from conftest import write_imagenet_folder

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture
def data(tmp_path):
    train = write_imagenet_folder(str(tmp_path / 'pretrain'), num_classes=3, per_class=4,
                                  size=48)
    monitor = str(tmp_path / 'monitor')
    write_imagenet_folder(osp.join(monitor, 'train'), num_classes=3, per_class=6, size=40)
    write_imagenet_folder(osp.join(monitor, 'val'), num_classes=3, per_class=3, size=40, seed=1)
    return train, monitor


def _run(tmp_path, name, data_root, hooks=(), resume_from=None, options=None):
    """Train test_resume's tiny DeepMIM (2 blocks, IterBasedTrainLoop, 12 iterations, a
    checkpoint every 4) in this process; returns the work dir."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(tiny_config(tmp_path / f'{name}.py', data_root, iters=12, ckpt=4))
    cfg.randomness.deterministic = False  # in-process: leave torch's global flags alone
    cfg.custom_hooks = list(cfg.custom_hooks) + list(hooks)
    cfg.work_dir = str(tmp_path / name)
    cfg.experiment_name = name
    cfg.merge_from_dict(options or {})
    if resume_from:
        cfg.resume, cfg.load_from = True, resume_from
    runner = Runner.from_cfg(cfg)
    runner.train()
    return cfg.work_dir


def _records(work_dir):
    (path, ) = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _knn(work_dir):
    return {r['step']: r for r in _records(work_dir) if any(k.startswith('knn') for k in r)}


def test_hook_logs_levels_and_leaves_training_and_resume_exact(tmp_path, data, monkeypatch):
    from deepmim_mm.engine.hooks import knn_monitor_hook
    real = knn_monitor_hook.knn_probe

    def drawing_probe(*args, **kwargs):  # the hook's work may draw from every global RNG
        torch.rand(7)
        np.random.rand(7)
        random.random()
        return real(*args, **kwargs)

    monkeypatch.setattr(knn_monitor_hook, 'knn_probe', drawing_probe)
    train, monitor = data
    hook = dict(type='KNNMonitorHook', enable=True, data_root=monitor, interval=3,
                by_epoch=False, batch_size=4)

    ref = _run(tmp_path, 'ref', train)
    on = _run(tmp_path, 'on', train, hooks=[hook])
    ref_losses = _losses(ref)
    assert sorted(ref_losses) == list(range(1, 13))
    assert _losses(on) == ref_losses  # bit for bit
    assert not _knn(ref)

    knn = _knn(on)
    assert sorted(knn) == [3, 6, 9, 12]
    for rec in knn.values():
        levels = sorted(k for k in rec if k.startswith('knn_top1/'))
        assert levels == ['knn_top1/block1', 'knn_top1/block2']  # the supervised blocks
        # Colour-separable classes: far above chance (33%) for every level.
        assert all(60.0 <= rec[k] <= 100.0 for k in levels), rec
        assert rec['knn_monitor/seconds'] > 0 and rec['knn_monitor/epoch_fraction'] > 0
    plots = sorted(osp.basename(p) for p in glob.glob(
        osp.join(on, '*', 'vis_data', 'vis_image', 'knn_top1_*.png')))
    assert plots == ['knn_top1_12.png', 'knn_top1_3.png', 'knn_top1_6.png', 'knn_top1_9.png']
    ckpt = torch.load(osp.join(on, 'iter_12.pth'), weights_only=False)
    assert [h['step'] for h in ckpt['knn_monitor']['history']] == [3, 6, 9, 12]

    # Resumed from iteration 8 with the hook: the same losses as the run without it, the
    # monitor goes on where it stood (its history travels in the checkpoint).
    resumed = _run(tmp_path, 'resumed', train, hooks=[hook],
                   resume_from=osp.join(on, 'iter_8.pth'))
    got = _losses(resumed)
    assert sorted(got) == [9, 10, 11, 12]
    assert all(got[i] == ref_losses[i] for i in got)
    assert sorted(_knn(resumed)) == [9, 12]
    for step in (9, 12):
        assert _knn(resumed)[step]['knn_top1/block2'] == pytest.approx(
            knn[step]['knn_top1/block2'], abs=1e-6)
    ckpt = torch.load(osp.join(resumed, 'iter_12.pth'), weights_only=False)
    assert [h['step'] for h in ckpt['knn_monitor']['history']] == [3, 6, 9, 12]


def test_hook_by_epoch_every_block(tmp_path, data):
    """The default schedule (after epochs) in an EpochBasedTrainLoop, every block's raw output
    (``blocks='all'``: block 1 too, which is not supervised here), the cost as a fraction of the
    epoch measured in the same run."""
    train, monitor = data
    hook = dict(type='KNNMonitorHook', enable=True, data_root=monitor, blocks='all',
                feature='cls', k=5, max_per_class=4)
    work = _run(tmp_path, 'epochs', train, hooks=[hook], options={
        'model.backbone.out_indices': [1],
        'train_cfg': dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=2),
        'param_scheduler': [dict(type='ConstantLR', factor=1.0, by_epoch=True)],
        'default_hooks.checkpoint': dict(by_epoch=True, interval=1),
        'log_processor.by_epoch': True})
    knn = _knn(work)
    assert sorted(knn) == [6, 12]  # 12 images / batch 2 per epoch
    for rec in knn.values():
        assert sorted(k for k in rec if k.startswith('knn_top1/')) == [
            'knn_top1/block1', 'knn_top1/block2']
        assert 0 < rec['knn_monitor/epoch_fraction']
    assert sorted(_losses(work)[1]) == ['loss', 'loss_block2']  # one supervised level


def test_hook_arguments(tmp_path, data):
    from mmengine.registry import HOOKS

    from deepmim_mm.engine.hooks import KNNMonitorHook
    hook = HOOKS.build(dict(type='KNNMonitorHook'))
    assert isinstance(hook, KNNMonitorHook) and not hook.enable  # off by default
    for bad, match in ((dict(interval=0), 'interval'), (dict(blocks='some'), 'blocks'),
                       (dict(feature='max'), 'feature'), (dict(k=0), 'k must'),
                       (dict(temperature=0), 'temperature'),
                       (dict(enable=True), 'data_root is required')):
        with pytest.raises(ValueError, match=match):
            KNNMonitorHook(**bad)
    train, monitor = data
    with pytest.raises(ValueError, match='by_epoch=False'):
        _run(tmp_path, 'iterloop', train,
             hooks=[dict(type='KNNMonitorHook', enable=True, data_root=monitor)])
    with pytest.raises(FileNotFoundError, match=r'KNNMonitorHook.data_root: .*nowhere/train'):
        _run(tmp_path, 'nowhere', train,
             hooks=[dict(type='KNNMonitorHook', enable=True, by_epoch=False, interval=1,
                         data_root=str(tmp_path / 'nowhere'))])
