"""The plugin through mim (openmim, installed by the set-up), as a model-zoo user runs it.

``mim`` finds the plugin's configs, tools and model index in ``deepmim_mm/.mim`` (setup.py links
them there); with the set-up's editable install it reaches that folder through
``site-packages/deepmim_mm`` (tools/setup_env.sh links it to the source tree), so these tests
also check the install.
"""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
import yaml

from conftest import ROOT, write_imagenet_folder
from downstream_utils import TINY_VIT

DEMO = 'deepmim_vit-tiny-p16_1xb8-coslr-20e_demo'


def mim(args, cwd=ROOT, timeout=900):
    """Run ``python -m mim <args>``; fail the test with its output when it exits non-zero."""
    env = dict(os.environ, OMP_NUM_THREADS='2')
    proc = subprocess.run([sys.executable, '-m', 'mim'] + list(args), cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        pytest.fail(f'mim {args} exited {proc.returncode}\nSTDOUT:\n{proc.stdout[-6000:]}\n'
                    f'STDERR:\n{proc.stderr[-6000:]}')
    return proc


def _model_names():
    index = yaml.safe_load(open(osp.join(ROOT, 'model-index.yml')))
    return [m['Name'] for p in index['Import']
            for m in yaml.safe_load(open(osp.join(ROOT, p)))['Models']]


def test_mim_search_lists_every_model(tmp_path):
    # From another directory: mim must find the package through its installation.
    out = mim(['search', 'deepmim_mm', '--valid-config'], cwd=tmp_path).stdout
    listed = out.split('valid config ids:', 1)[1]
    for name in _model_names():
        assert f"'{name}'" in listed, name
    table = mim(['search', 'deepmim_mm', '--model', 'deepmim', '--field', 'epochs', 'flops'],
                cwd=tmp_path).stdout
    assert f'config id: {DEMO}' in table and 'config id: mae_vit' not in table


def test_mim_train_the_demo_for_one_epoch(tmp_path):
    """`mim train deepmim_mm <config name>`: the config is found by name in the package."""
    work = tmp_path / 'work'
    proc = mim(['train', 'deepmim_mm', f'{DEMO}.py', '--work-dir', str(work), '--cfg-options',
                'train_cfg.max_epochs=1', 'train_dataloader.dataset.times=1',
                'train_dataloader.dataset.dataset.indices=2', 'train_dataloader.batch_size=2',
                'train_dataloader.num_workers=0', 'default_hooks.checkpoint.interval=1',
                'custom_hooks.0.enable=False'])
    assert f'configs/pretrain/{DEMO}.py' in proc.stdout
    assert osp.isfile(work / 'epoch_1.pth'), proc.stdout[-3000:]
    scalars = [json.loads(line) for s in work.glob('*/vis_data/scalars.json') for line in open(s)]
    losses = [r for r in scalars if 'loss' in r]
    assert losses and all(k in losses[-1] for k in ('loss_block3', 'loss_block6'))


def test_mim_test_a_classifier(tmp_path):
    """`mim test deepmim_mm <config> --checkpoint <file>` evaluates through tools/test.py."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    import deepmim_mm.classification  # noqa: F401
    data = tmp_path / 'imagenet'
    write_imagenet_folder(str(data / 'val'), num_classes=3, per_class=2, size=40, seed=1)
    base = osp.join(ROOT, 'configs', 'classification',
                    'vit-base-p16_deepmim-pre_8xb128-coslr-100e_in1k.py')
    cfg_path = tmp_path / 'tiny_classifier.py'
    cfg_path.write_text(f'''
_base_ = {base!r}
model = dict(backbone=dict(arch=dict(_delete_=True, **{dict(TINY_VIT)!r}), img_size=32,
                           init_cfg=None),
             head=dict(num_classes=3, in_channels=64))
data_preprocessor = dict(num_classes=3)
test_dataloader = dict(
    batch_size=3, num_workers=0, persistent_workers=False,
    dataset=dict(data_root={str(data)!r}, metainfo=dict(classes=['class0', 'class1', 'class2']),
                 pipeline=[dict(type='LoadImageFromFile'),
                           dict(type='ResizeEdge', scale=36, edge='short'),
                           dict(type='CenterCrop', crop_size=32), dict(type='PackInputs')]))
test_evaluator = dict(type='Accuracy', topk=(1, ))
''')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(Config.fromfile(str(cfg_path)).model)
    ckpt = str(tmp_path / 'classifier.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    proc = mim(['test', 'deepmim_mm', str(cfg_path), '--checkpoint', ckpt,
                '--work-dir', str(tmp_path / 'test')])
    assert 'accuracy/top1' in proc.stdout + proc.stderr


def test_mim_run_a_tool():
    """`mim run deepmim_mm <tool>` finds tools/misc/metafile_stats.py by name."""
    proc = mim(['run', 'deepmim_mm', 'metafile_stats', 'configs/pretrain/metafile.yml',
                '--models', DEMO, '--check'])
    assert 'metafile_stats.py' in proc.stdout and DEMO in proc.stdout
