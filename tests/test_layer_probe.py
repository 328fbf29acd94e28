"""tools/analysis/layer_probe.py on generated colour-separable ImageNet-layout data: accuracy well
above chance for every block, a well-formed CSV and PNG, the feature cache reused on a rerun."""
import csv
import glob
import importlib
import os
import os.path as osp
import sys

import pytest

from conftest import ROOT, write_imagenet_folder
from downstream_utils import TINY_VIT, make_pretrain_checkpoint

ANALYSIS = osp.join(ROOT, 'tools', 'analysis')
BASE = osp.join(ROOT, 'configs', 'classification',
                'vit-base-p16_deepmim-pre_8xb128-coslr-100e_in1k.py')


def _probe(argv):
    if ANALYSIS not in sys.path:
        sys.path.insert(0, ANALYSIS)
    return importlib.import_module('layer_probe').main([str(a) for a in argv])


@pytest.fixture
def setup(tmp_path):
    data = tmp_path / 'imagenet'
    write_imagenet_folder(str(data / 'train'), num_classes=3, per_class=8, size=40)
    write_imagenet_folder(str(data / 'val'), num_classes=3, per_class=4, size=40, seed=1)
    ckpts = []
    for seed, name in ((0, 'mae'), (1, 'deepmim')):
        path = str(tmp_path / f'{name}.pth')
        make_pretrain_checkpoint(path, seed=seed)
        ckpts.append(path)
    cfg = tmp_path / 'tiny.py'
    cfg.write_text(f'_base_ = {BASE!r}\n'
                   f'model = dict(backbone=dict(arch=dict(_delete_=True, **{dict(TINY_VIT)!r}), '
                   'img_size=32))\n')
    return data, ckpts, cfg


def test_layer_probe_two_checkpoints(tmp_path, setup, capsys):
    data, ckpts, cfg = setup
    work = tmp_path / 'probe'
    common = [cfg, *ckpts, '--labels', 'MAE', 'DeepMIM', '--data-root', data, '--work-dir',
              work, '--device', 'cpu', '--batch-size', '8', '--num-workers', '0',
              '--epochs', '30', '--lr', '0.01']
    rows = _probe(common)
    out = capsys.readouterr().out
    assert '[MAE] train features' in out and 'Linear-probe top-1' in out  # progress and table

    # One row per checkpoint x block x feature; far above chance (33%) on separable colours.
    nblocks = TINY_VIT['num_layers']
    assert len(rows) == 2 * nblocks * 2
    for label in ('MAE', 'DeepMIM'):
        for feat in ('cls', 'avg'):
            accs = [r['top1'] for r in rows if r['label'] == label and r['feature'] == feat]
            assert len(accs) == nblocks
            assert min(accs) >= 75.0, (label, feat, accs)

    with open(work / 'layer_probe.csv') as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ['label', 'checkpoint', 'block', 'feature', 'top1']
    assert len(table) == len(rows)
    assert {(r['label'], int(r['block']), r['feature']) for r in table} == {
        (lab, b, f) for lab in ('MAE', 'DeepMIM') for b in range(1, nblocks + 1)
        for f in ('cls', 'avg')}
    assert all(0 <= float(r['top1']) <= 100 for r in table)
    png = work / 'layer_probe.png'
    with open(png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    from PIL import Image
    assert Image.open(png).size[0] > 500

    # Cache: one file per checkpoint x split x block; a rerun (another classifier) reuses them.
    cache = sorted(glob.glob(str(work / 'feature_cache' / '*.pt')))
    assert len(cache) == 2 * 2 * nblocks
    mtimes = [os.stat(p).st_mtime_ns for p in cache]
    rows2 = _probe(common + ['--classifier', 'ridge', '--features', 'avg'])
    out = capsys.readouterr().out
    assert out.count('reusing cached features') == 4 and 'features:' not in out
    assert [os.stat(p).st_mtime_ns for p in cache] == mtimes
    assert len(rows2) == 2 * nblocks and min(r['top1'] for r in rows2) >= 75.0


def test_layer_probe_bad_input(tmp_path, setup):
    data, ckpts, cfg = setup
    with pytest.raises(FileNotFoundError, match='train/ and val/'):
        _probe([cfg, ckpts[0], '--data-root', tmp_path / 'nowhere', '--work-dir', tmp_path])
    with pytest.raises(SystemExit):  # one label per checkpoint
        _probe([cfg, *ckpts, '--labels', 'only-one', '--data-root', data,
                '--work-dir', tmp_path])
