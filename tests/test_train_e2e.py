"""tools/train.py end to end (in-process): a DeepMIM ViT-B config shrunk through --cfg-options,
real JPEGs."""
import glob
import json
import os
import os.path as osp

import torch

from conftest import ROOT, run_main, write_imagenet_folder

CONFIG = osp.join(ROOT, 'configs/pretrain/deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k.py')

# A tiny ViT (deit-t widths, 12 blocks, so the config's blocks 6/8/10/12 stay valid) at 64 px.
SHRINK = [
    'model.backbone.arch=deit-t', 'model.backbone.img_size=64',
    'model.neck.embed_dim=192', 'model.neck.num_patches=16', 'model.neck.decoder_embed_dim=32',
    'model.neck.decoder_depth=1', 'model.neck.decoder_num_heads=2',
    'train_dataloader.dataset.pipeline.1.scale=64',
    'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=1',
    'randomness.seed=0', 'env_cfg.dist_cfg.backend=gloo',
]


def scalars(work_dir):
    """Training records of every run in work_dir, in order."""
    records = []
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))):
        with open(path) as f:
            records += [json.loads(line) for line in f if 'loss' in line]
    return records


def test_train_then_resume(tmp_path, capsys):
    data = str(tmp_path / 'imagenet')
    write_imagenet_folder(osp.join(data, 'train'), num_classes=3, per_class=4)
    work = str(tmp_path / 'work')
    dataset = [f'train_dataloader.dataset.data_root={data}',
               'train_dataloader.dataset.metainfo.classes=[class0,class1,class2]']
    assert run_main('tools/train.py', CONFIG, '--work-dir', work, '--cfg-options',
                    'train_cfg.max_epochs=1', *SHRINK, *dataset) == 0
    # No GPU here: the AMP config trains in fp32 (the Runner got a plain OptimWrapper).
    meta = torch.load(osp.join(work, 'epoch_1.pth'), weights_only=False)['meta']
    assert "type='OptimWrapper'" in meta['cfg'] and 'AmpOptimWrapper' not in meta['cfg']
    records = scalars(work)
    assert len(records) == 3  # 12 images / batch 4
    for r in records:
        for b in (6, 8, 10, 12):
            assert r[f'loss_block{b}'] > 0
        total = sum(r[f'loss_block{b}'] for b in (6, 8, 10, 12))
        assert abs(r['loss'] - total) < 1e-3
    assert osp.isfile(osp.join(work, 'epoch_1.pth'))

    # Resume from the last checkpoint and train a second epoch.
    assert run_main('tools/train.py', CONFIG, '--work-dir', work, '--resume', '--cfg-options',
                    'train_cfg.max_epochs=2', *SHRINK, *dataset) == 0
    out = ''.join(capsys.readouterr())
    assert 'resumed epoch: 1, iter: 3' in out
    records = scalars(work)
    assert [r['iter'] for r in records] == [1, 2, 3, 4, 5, 6]
    assert osp.isfile(osp.join(work, 'epoch_2.pth'))
    assert not os.path.exists(osp.join(work, 'epoch_3.pth'))


def test_compiled_speed_config_trains(tmp_path):
    """The ``compile`` speed variant through the Runner: torch.compile of train_step (dynamo with
    the eager backend: no C++ build on CI) over layer-wise param groups, fused AdamW; its first
    loss equals the plain config's (same seed, same mask, same weights)."""
    data = str(tmp_path / 'imagenet')
    write_imagenet_folder(osp.join(data, 'train'), num_classes=2, per_class=4)
    dataset = [f'train_dataloader.dataset.data_root={data}',
               'train_dataloader.dataset.metainfo.classes=[class0,class1]']
    compiled = tmp_path / 'compiled.py'
    compiled.write_text(
        f"_base_ = {CONFIG.replace('.py', '_compile.py')!r}\n"
        "compile = dict(_delete_=True, backend='eager')\n")
    firsts = []
    for name, cfg in (('plain', CONFIG), ('compiled', str(compiled))):
        work = str(tmp_path / name)
        assert run_main('tools/train.py', cfg, '--work-dir', work, '--cfg-options',
                        'train_cfg.max_epochs=1', *SHRINK, *dataset) == 0
        records = scalars(work)
        assert len(records) == 2  # the second step runs the compiled graph again
        assert all(abs(r['loss']) < 1e3 for r in records)
        firsts.append(records[0])
    for b in (6, 8, 10, 12):
        assert abs(firsts[0][f'loss_block{b}'] - firsts[1][f'loss_block{b}']) < 1e-4
