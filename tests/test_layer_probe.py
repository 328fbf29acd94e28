"""tools/analysis/layer_probe.py on generated colour-separable ImageNet-layout data: both probes
far above chance for every block, converged linear fits reported per block, a well-formed CSV,
JSON and PNG, the feature cache reused on a rerun, `mmpretrain::` configs, bad input."""
import csv
import glob
import importlib
import json
import os
import os.path as osp
import sys

import pytest

from conftest import ROOT, run_main, write_imagenet_folder
from downstream_utils import TINY_VIT, make_pretrain_checkpoint

ANALYSIS = osp.join(ROOT, 'tools', 'analysis')
BASE = osp.join(ROOT, 'configs', 'classification',
                'vit-base-p16_deepmim-pre_8xb128-coslr-100e_in1k.py')


pytestmark = pytest.mark.usefixtures('one_thread')


def _probe(argv):
    if ANALYSIS not in sys.path:
        sys.path.insert(0, ANALYSIS)
    return importlib.import_module('layer_probe').main([str(a) for a in argv])


@pytest.fixture
def setup(tmp_path):
    data = tmp_path / 'imagenet'
    write_imagenet_folder(str(data / 'train'), num_classes=3, per_class=10, size=40)
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
              work, '--device', 'cpu', '--batch-size', '8', '--num-workers', '0']
    rows = _probe(common)  # default: --probe both, --classifier lbfgs
    out = capsys.readouterr().out
    assert '[MAE] train features' in out  # progress
    assert 'Linear-probe top-1' in out and 'kNN top-1' in out  # both tables
    assert '[MAE] block 1 cls: linear top-1' in out and 'converged (' in out  # per-block fit
    assert 'did not converge' not in out

    # One row per checkpoint x block x feature x probe; far above chance (33%) on separable
    # colours; every linear fit converged, its evidence recorded.
    nblocks = TINY_VIT['num_layers']
    assert len(rows) == 2 * nblocks * 2 * 2
    for label in ('MAE', 'DeepMIM'):
        for feat in ('cls', 'avg'):
            for probe in ('linear', 'knn'):
                accs = [r['top1'] for r in rows if r['label'] == label and r['feature'] == feat
                        and r['probe'] == probe]
                assert len(accs) == nblocks
                assert min(accs) >= 75.0, (label, feat, probe, accs)
    linear = [r for r in rows if r['probe'] == 'linear']
    for r in linear:
        assert r['converged'] and r['reason'] in ('gradient', 'loss change'), r
        assert 0 < r['iterations'] < 1000 and r['train_acc'] >= 90.0 and r['train_loss'] > 0
        assert r['reason'] == 'loss change' or r['grad_max'] <= 1e-5
        assert r['l2'] in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    assert all(r['k'] == 20 for r in rows if r['probe'] == 'knn')  # 30 training images

    with open(work / 'layer_probe.csv') as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ['label', 'checkpoint', 'block', 'feature', 'probe', 'top1',
                              'train_loss', 'train_acc', 'iterations', 'converged', 'reason',
                              'grad_max', 'l2', 'k']
    assert len(table) == len(rows)
    assert {(r['label'], int(r['block']), r['feature'], r['probe']) for r in table} == {
        (lab, b, f, p) for lab in ('MAE', 'DeepMIM') for b in range(1, nblocks + 1)
        for f in ('cls', 'avg') for p in ('linear', 'knn')}
    assert all(0 <= float(r['top1']) <= 100 for r in table)
    assert {r['converged'] for r in table if r['probe'] == 'linear'} == {'True'}
    with open(work / 'layer_probe.json') as f:
        js = json.load(f)
    # The L2 was chosen on the held-out part of the training split: one score per value tried.
    assert all(len(r['holdout_top1']) == 7 for r in js if r['probe'] == 'linear')
    png = work / 'layer_probe.png'
    with open(png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    from PIL import Image
    assert Image.open(png).size[0] > 500

    # Cache: one file per checkpoint x split; a rerun (another probe) reuses them.
    cache = sorted(glob.glob(str(work / 'feature_cache' / '*.pt')))
    assert len(cache) == 2 * 2
    mtimes = [os.stat(p).st_mtime_ns for p in cache]
    rows2 = _probe(common + ['--probe', 'linear', '--classifier', 'ridge', '--features', 'avg'])
    out = capsys.readouterr().out
    assert out.count('reusing cached features') == 4 and 'features:' not in out
    assert 'kNN top-1' not in out
    assert [os.stat(p).st_mtime_ns for p in cache] == mtimes
    assert len(rows2) == 2 * nblocks and min(r['top1'] for r in rows2) >= 75.0

    # Features depend on the normalisation too: another mean / std extracts again (one
    # checkpoint, --name / --out-dir as in the other analysis tools), under new cache files.
    _probe([cfg, ckpts[0], '--name', 'MAE', '--data-root', data, '--out-dir', work, '--device',
            'cpu', '--batch-size', '8', '--num-workers', '0', '--probe', 'knn', '--features',
            'avg', '--cfg-options', 'data_preprocessor.mean=[0,0,0]',
            'data_preprocessor.std=[1,1,1]'])
    out = capsys.readouterr().out
    assert 'reusing cached features' not in out
    assert '[MAE] train features' in out
    assert len(glob.glob(str(work / 'feature_cache' / '*.pt'))) == 3 * 2


def test_layer_probe_minibatch_smaller_than_one_batch(tmp_path, setup, capsys):
    """The old defaults' failure mode: 30 training images, batch 4096. Steps, not epochs: the
    mini-batch fit takes as many full-batch steps as it needs, stops on its plateau rule and
    says so; a budget far too small for it (the old 100 steps) is reported as not converged."""
    data, ckpts, cfg = setup
    common = [cfg, ckpts[0], '--data-root', data, '--work-dir', tmp_path / 'mb', '--device',
              'cpu', '--batch-size', '8', '--num-workers', '0', '--probe', 'linear',
              '--classifier', 'minibatch', '--features', 'avg', '--l2', '0.1']
    rows = _probe(common)
    assert all(r['converged'] and r['reason'] == 'plateau' and r['iterations'] > 100
               for r in rows), rows
    assert (tmp_path / 'mb' / 'layer_probe.png').is_file()
    (tmp_path / 'mb' / 'layer_probe.png').unlink()
    rows = _probe(common + ['--max-steps', '20', '--no-plot'])
    assert not any(r['converged'] for r in rows) and all(r['iterations'] == 20 for r in rows)
    assert not (tmp_path / 'mb' / 'layer_probe.png').exists()
    out = capsys.readouterr().out
    assert 'NOT converged (max_steps)' in out and 'did not converge' in out


def test_layer_probe_bad_input(tmp_path, setup):
    data, ckpts, cfg = setup
    with pytest.raises(FileNotFoundError, match='--data-root: .*nowhere'):
        _probe([cfg, ckpts[0], '--data-root', tmp_path / 'nowhere', '--work-dir', tmp_path])
    with pytest.raises(ValueError, match='--labels: 1 names for 2'):  # one label per checkpoint
        _probe([cfg, *ckpts, '--labels', 'only-one', '--data-root', data,
                '--work-dir', tmp_path])
    # An mmpretrain:: config is read (ViT-B linear probing) and its encoder built; the tiny
    # checkpoint does not fit it, which is an error naming the keys.
    with pytest.raises(ValueError, match=r'checkpoints: .*mae\.pth.*layers\.\{4-11\}'):
        _probe(['mmpretrain::mae/benchmarks/vit-base-p16_8xb2048-linear-coslr-90e_in1k.py',
                ckpts[0], '--data-root', data, '--work-dir', tmp_path / 'b', '--img-size', '32',
                '--device', 'cpu', '--num-workers', '0', '--no-cache'])
    with pytest.raises(FileNotFoundError, match='config file not found'):
        _probe([tmp_path / 'missing.py', ckpts[0], '--data-root', data, '--work-dir', tmp_path])
    # Overrides: a key the config does not have (a typo), and one the tool does not read.
    for option, message in (('model.backbone.img_sizee=32', "argument 'img_sizee'"),
                            ('train_dataloader.batch_size=2', 'would change nothing'),
                            ('model.head.num_classes=2', r'reads only model\.backbone'),
                            ('model.backbone.arch.num_layerz=2', r"no 'model\.backbone\.arch"
                             r"\.num_layerz'; did you mean 'model\.backbone\.arch\.num_layers'")):
        with pytest.raises(ValueError, match=message):
            _probe([cfg, ckpts[0], '--data-root', data, '--work-dir', tmp_path / 'o',
                    '--cfg-options', option])
    assert not (tmp_path / 'o').exists()
    # An unreadable image is named (mmcv's loader: a bare cv2.error for an empty file).
    empty = data / 'val' / sorted(os.listdir(data / 'val'))[0] / 'empty.png'
    empty.write_bytes(b'')
    with pytest.raises(ValueError, match=f'cannot decode image {empty}'):
        _probe([cfg, ckpts[0], '--data-root', data, '--work-dir', tmp_path / 'e', '--device',
                'cpu', '--num-workers', '0', '--no-cache'])


def test_layer_probe_cli_errors_are_one_line(tmp_path, setup, capsys):
    """From the command line, every bad input is one `error:` line and exit status 1, as for
    the other analysis tools."""
    import torch
    data, ckpts, cfg = setup
    bad = tmp_path / 'other_width.pth'
    torch.save({'state_dict': {'backbone.cls_token': torch.zeros(1, 1, 48)}}, bad)
    cases = [
        ([cfg, ckpts[0], '--data-root', tmp_path / 'nowhere'], '--data-root'),
        ([cfg, bad, '--data-root', data], str(bad)),
        ([cfg, ckpts[0], '--data-root', data, '--cfg-options', 'model.neck.x=1'],
         '--cfg-options model.neck.x'),
    ]
    for argv, message in cases:
        code = run_main('tools/analysis/layer_probe.py', *argv, '--work-dir', tmp_path / 'w',
                        '--device', 'cpu', '--num-workers', '0')
        err = capsys.readouterr().err
        assert code == 1, (argv, err)
        last = err.strip().splitlines()[-1]
        assert last.startswith('error: ') and message in last, err
        assert 'Traceback' not in err
