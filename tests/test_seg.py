"""Segmentation: a pretraining checkpoint of this plugin -> mmseg UperNet (PretrainedMAE backbone),
trained and tested with tools/train.py and tools/test.py on a tiny ADE20K-format dataset."""
import glob
import os.path as osp
import re

import pytest
import torch

from conftest import ROOT
from downstream_utils import (PRETRAIN_IMG, TINY_VIT, make_pretrain_checkpoint, run_in_process,
                              write_ade20k)

SEG_CONFIG = osp.join(ROOT, 'configs', 'segmentation',
                      'deepmim-base_upernet_8xb2-amp-160k_ade20k-512x512.py')
CROP = 64


def _tiny_backbone(checkpoint):
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(dict(
            type='PretrainedMAE', img_size=(CROP, CROP), patch_size=16,
            embed_dims=TINY_VIT['embed_dims'], num_layers=TINY_VIT['num_layers'],
            num_heads=TINY_VIT['num_heads'], mlp_ratio=4, init_values=1.0, drop_path_rate=0.1,
            out_indices=[0, 1, 2, 3], norm_cfg=dict(type='LN', eps=1e-6),
            init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')))


def test_pretrained_mae_loads_every_encoder_key(tmp_path):
    import deepmim_mm.seg  # noqa: F401
    ckpt = str(tmp_path / 'pretrain.pth')
    state = make_pretrain_checkpoint(ckpt)
    backbone = _tiny_backbone(ckpt)
    backbone.init_weights()
    report = backbone.pretrain_report

    encoder = {k[len('backbone.'):] for k in state if k.startswith('backbone.')}
    pretrain_only = {k for k in encoder if k.startswith(('proj_layers.', 'ln1.'))
                     or k == 'proj_weights'}
    assert pretrain_only  # the MFF checkpoint has fusion layers and the final norm
    assert set(report.loaded) == encoder - pretrain_only
    assert set(report.dropped) == set(state) - {'backbone.' + k for k in report.loaded}
    assert 'target_generator.teacher.proj' in report.dropped
    assert any(k.startswith('neck.decoder_blocks.') for k in report.dropped)
    # New at fine-tune time: relative position bias (and its index buffer) and layer scale,
    # nothing else.
    assert {re.sub(r'layers\.\d+\.', '', k) for k in report.new} == {
        'gamma_1', 'gamma_2', 'attn.relative_position_bias_table', 'attn.relative_position_index'}
    grid = PRETRAIN_IMG // 16
    assert report.resized['pos_embed'] == ((1, 1 + grid * grid, 64), (1, 1 + 16, 64))

    own = backbone.state_dict()
    for key in report.loaded:
        if key != 'pos_embed':
            torch.testing.assert_close(own[key], state['backbone.' + key])
    torch.testing.assert_close(own['pos_embed'][:, 0], state['backbone.pos_embed'][:, 0])
    # The report is logged with every key (layer indices folded into ranges).
    text = report.format()
    assert 'target_generator.teacher.proj' in text and 'backbone.proj_weights' in text
    assert 'layers.{0-3}.gamma_1' in text


def _expand(pattern):
    m = re.search(r'\{([^}]*)\}', pattern)
    if not m:
        return [pattern]
    values = []
    for span in m.group(1).split(','):
        lo, _, hi = span.partition('-')
        values += range(int(lo), int(hi or lo) + 1)
    return [k for v in values
            for k in _expand(pattern[:m.start()] + str(v) + pattern[m.end():])]


def test_fold_keys_represents_every_key():
    from deepmim_mm.checkpoint import fold_keys
    keys = ([f'layers.{i}.ffn.layers.0.0.weight' for i in range(12)]
            + [f'layers.{i}.ffn.layers.1.bias' for i in (0, 1, 2, 5, 7, 8)]
            + [f'neck.aux_decoders.{k}.decoder_blocks.{i}.ln1.weight'
               for k in range(3) for i in range(4)] + ['cls_token', 'proj_weights'])
    folded = fold_keys(keys)
    assert 'layers.{0-11}.ffn.layers.0.0.weight' in folded
    assert 'layers.{0-2,5,7-8}.ffn.layers.1.bias' in folded
    assert sorted(k for p in folded for k in _expand(p)) == sorted(keys)


def test_pretrained_mae_missing_checkpoint_names_the_field(tmp_path):
    import deepmim_mm.seg  # noqa: F401
    backbone = _tiny_backbone(str(tmp_path / 'nope.pth'))
    with pytest.raises(FileNotFoundError, match='init_cfg.checkpoint'):
        backbone.init_weights()


def test_upernet_train_then_test_on_ade20k_format(tmp_path):
    data_root = write_ade20k(str(tmp_path / 'ADEChallengeData2016'))
    ckpt = str(tmp_path / 'pretrain.pth')
    make_pretrain_checkpoint(ckpt)
    work_dir = str(tmp_path / 'work')
    crop = (CROP, CROP)
    cfg = tmp_path / 'tiny_upernet_ade20k.py'
    cfg.write_text(f'''
_base_ = {SEG_CONFIG!r}
crop_size = {crop}
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(img_size=crop_size, embed_dims={TINY_VIT['embed_dims']},
                  num_layers={TINY_VIT['num_layers']}, num_heads={TINY_VIT['num_heads']},
                  out_indices=[0, 1, 2, 3], init_cfg=dict(checkpoint={ckpt!r})),
    neck=dict(embed_dim={TINY_VIT['embed_dims']}),
    decode_head=dict(in_channels=[{TINY_VIT['embed_dims']}] * 4, channels=32,
                     pool_scales=(1, 2)),
    auxiliary_head=dict(in_channels={TINY_VIT['embed_dims']}, channels=16),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(43, 43)))
optim_wrapper = dict(paramwise_cfg=dict(num_layers={TINY_VIT['num_layers']}))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(128, 64), ratio_range=(0.8, 1.2), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 64), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False,
                        dataset=dict(data_root={data_root!r}, pipeline=train_pipeline))
val_dataloader = dict(batch_size=1, num_workers=0, persistent_workers=False,
                      dataset=dict(data_root={data_root!r}, pipeline=test_pipeline))
test_dataloader = val_dataloader
# tools/test.py --tta: two scales (both >= the slide crop) x two flips, merged by mmseg's
# SegTTAModel (the config's tta_model, from mmseg's default_runtime).
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(128, 64), keep_ratio=True),
         dict(type='Resize', scale=(160, 80), keep_ratio=True)],
        [dict(type='RandomFlip', prob=0., direction='horizontal'),
         dict(type='RandomFlip', prob=1., direction='horizontal')],
        [dict(type='LoadAnnotations', reduce_zero_label=True)],
        [dict(type='PackSegInputs')]]),
]
# No validation while training (--no-validate; tools/test.py evaluates the checkpoint).
train_cfg = dict(max_iters=2, val_interval=2)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2))
# Fixed seed: the same tiny run every time.
randomness = dict(seed=0)
''')
    log = run_in_process('train.py', cfg, '--work-dir', work_dir, '--no-validate')
    assert 'Loaded pretrained encoder from' in log
    assert 'resized pos_embed: (1, 10, 64) -> (1, 17, 64)' in log
    assert 'target_generator.teacher.proj' in log
    assert re.search(r'Iter\(train\) \[2/2\].*loss', log)
    ckpt_out = osp.join(work_dir, 'iter_2.pth')
    assert osp.isfile(ckpt_out), glob.glob(work_dir + '/*')

    # Evaluated with --show-dir and --tta as mmseg's tools/test.py does them:
    # SegVisualizationHook(draw=True) writing through the visualizer (save_dir), the config's
    # tta_model / tta_pipeline. (A visualizer of its own name, as in a fresh process: mmengine
    # keeps one instance per name.)
    vis = tmp_path / 'vis'
    out = run_in_process('test.py', cfg, ckpt_out, '--work-dir', tmp_path / 'test2',
                         '--show-dir', vis, '--tta', '--cfg-options', 'visualizer.name=seg_test')
    assert re.search(r'mIoU: \d+\.\d+', out), out[-3000:]
    assert 'aAcc' in out and 'per class results' in out
    drawn = sorted(glob.glob(str(vis / 'vis_data' / 'vis_image' / '*.png')))
    assert len(drawn) == 2, (drawn, glob.glob(str(vis / '**'), recursive=True))
    dumped = (tmp_path / 'test2' / cfg.name).read_text()  # the config the Runner ran
    assert "type='SegTTAModel'" in dumped and "type='TestTimeAug'" in dumped


def test_pretrained_mae_loads_this_plugins_deepmim_checkpoint(tmp_path):
    """The real format: a DeepMIM model of this plugin (4 supervised levels, one decoder each)."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    import deepmim_mm.seg  # noqa: F401
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'pretrain',
                                   'deepmim_vit-tiny-p16_1xb8-coslr-20e_demo.py'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    state = model.state_dict()
    ckpt = str(tmp_path / 'deepmim.pth')
    torch.save({'state_dict': state, 'meta': {}}, ckpt)
    arch = cfg.model.backbone.arch
    from mmseg.registry import MODELS as SEG_MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        backbone = SEG_MODELS.build(dict(
            type='PretrainedMAE', img_size=(CROP, CROP), embed_dims=arch.embed_dims,
            num_layers=arch.num_layers, num_heads=arch.num_heads, init_values=1.0,
            out_indices=[1, 3, 5], norm_cfg=dict(type='LN', eps=1e-6),
            init_cfg=dict(type='Pretrained', checkpoint=ckpt, prefix='backbone.')))
    backbone.init_weights()
    report = backbone.pretrain_report
    encoder = {k[len('backbone.'):] for k in state if k.startswith('backbone.')}
    assert set(report.loaded) == {k for k in encoder if not k.startswith('ln1.')}
    assert set(report.dropped) == set(state) - {'backbone.' + k for k in report.loaded}
    assert any(k.startswith('neck.aux_decoders.') for k in report.dropped)
    assert report.resized['pos_embed'][1] == (1, 1 + (CROP // 16) ** 2, arch.embed_dims)


def test_mmseg_bases_load_where_mmseg_has_another_distribution_name(tmp_path, monkeypatch):
    """mmengine maps ``mmseg::`` to the distribution ``mmsegmentation``; the OneDL fork's is
    ``onedl-mmsegmentation``. Simulated on either stack by a map entry naming an absent
    distribution: a user's config inheriting ours fails, then loads after the fix."""
    from mmengine.config import Config
    from mmengine.config.utils import MODULE2PACKAGE

    from deepmim_mm.compat import mmengine_config_packages as fix
    monkeypatch.setitem(MODULE2PACKAGE, 'mmseg', 'not-installed-mmsegmentation')
    monkeypatch.setattr(fix, '_remapped', set())
    cfg = tmp_path / 'mine.py'
    cfg.write_text(f'_base_ = {SEG_CONFIG!r}\n')
    with pytest.raises(ModuleNotFoundError, match='not-installed-mmsegmentation'):
        Config.fromfile(str(cfg))
    assert fix.unresolvable_scopes() == {'mmseg': 'not-installed-mmsegmentation'}
    assert fix.apply() and fix.unresolvable_scopes() == {}
    assert Config.fromfile(str(cfg)).model.decode_head.type == 'UPerHead'  # mmseg's base
