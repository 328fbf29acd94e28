"""Bad input gives a clear error at the earliest point, and nothing already written is lost.

Shape mismatches between the model's parts are checked through ``MODELS.build`` (the checks of
each part alone: test_pretrain_models.py) and through tools/train.py; file and training errors
through a real mmengine Runner on a tiny DeepMIM (2 blocks, 32 px).
"""
import copy
import glob
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config

import deepmim_mm  # noqa: F401  registers the models

from conftest import DEMO, ROOT, make_data, run_main, tiny_config

MODEL = dict(
    type='DeepMIM',
    backbone=dict(type='DeepMIMViT', img_size=32, patch_size=8, mask_ratio=0.75,
                  arch=dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64),
                  out_indices=[1, 3]),
    neck=dict(type='MultiLevelDecoder', num_patches=16, patch_size=8, embed_dim=32,
              decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2),
    head=dict(type='DeepMIMHead', patch_size=8, norm_pix=True,
              loss=dict(type='PixelReconstructionLoss', criterion='L2')))


def model_cfg(**changes):
    """MODEL with ``'backbone.mask_ratio': 0.5``-style changes."""
    cfg = copy.deepcopy(MODEL)
    for path, value in changes.items():
        *parents, last = path.split('.')
        d = cfg
        for p in parents:
            d = d[p]
        d[last] = value
    return cfg


CONFIG_ERRORS = [
    # (changes, what the message names); shapes the build can check, each naming both fields.
    ({'neck.embed_dim': 48}, ['neck.embed_dim=48', '32']),
    ({'neck.num_patches': 9}, ['neck.num_patches=9', '4x4']),
    ({'head.patch_size': 16}, ['head.patch_size=16', 'model.backbone.patch_size=8']),
    ({'neck.predict_feature_dim': 100}, ['100', '192']),
]


@pytest.mark.parametrize('changes,named', CONFIG_ERRORS, ids=[next(iter(c)) for c, _ in
                                                              CONFIG_ERRORS])
def test_config_errors_at_build(mmpretrain_scope, changes, named):
    from mmpretrain.registry import MODELS
    with pytest.raises(ValueError) as info:
        MODELS.build(model_cfg(**changes))
    assert all(n in str(info.value) for n in named), str(info.value)


def test_valid_model_builds(mmpretrain_scope):
    """The base of the cases above is itself valid (each error comes from its one change)."""
    from mmpretrain.registry import MODELS
    model = MODELS.build(model_cfg())
    assert model.level_names == ['block2', 'block4']


def test_config_error_through_train_py(tmp_path):
    """tools/train.py: the error names the field before anything is trained or saved."""
    data = make_data(tmp_path, n_per_class=1)
    cfg = tiny_config(tmp_path / 'tiny.py', data)
    work = str(tmp_path / 'work')
    with pytest.raises(ValueError, match='out_indices contains block 7, beyond the encoder '
                       'depth 2'):
        run_main('tools/train.py', cfg, '--work-dir', work, '--cfg-options',
                 'model.backbone.out_indices=[0,7]')
    assert not glob.glob(osp.join(work, '*.pth'))


def test_empty_dataset_folder_through_train_py(tmp_path):
    empty = tmp_path / 'empty'
    (empty / 'class0').mkdir(parents=True)
    cfg = tiny_config(tmp_path / 'tiny.py', str(empty))
    # mmpretrain's CustomDataset names the folder and the accepted extensions (a RuntimeError
    # raised when the dataloader is built, before the first iteration).
    with pytest.raises(RuntimeError) as info:
        run_main('tools/train.py', cfg, '--work-dir', str(tmp_path / 'work'))
    assert str(empty) in str(info.value) and '.jpg' in str(info.value)


def test_missing_teacher_checkpoint(mmpretrain_scope, tmp_path):
    from mmpretrain.registry import MODELS
    missing = str(tmp_path / 'ViT-B-16.pt')
    cfg = model_cfg(target_generator=dict(type='CLIPTeacher', checkpoint=missing))
    with pytest.raises(FileNotFoundError, match='CLIPTeacher: model.target_generator.checkpoint: '
                       'checkpoint not found: '
                       + missing):
        MODELS.build(cfg).init_weights()


def test_corrupt_teacher_checkpoint(mmpretrain_scope, tmp_path):
    from mmpretrain.registry import MODELS
    bad = tmp_path / 'ViT-B-16.pt'
    bad.write_bytes(b'not a checkpoint' * 64)
    cfg = model_cfg(target_generator=dict(type='CLIPTeacher', checkpoint=str(bad)))
    with pytest.raises(ValueError, match=f'CLIPTeacher: .*not a checkpoint: {bad}'):
        MODELS.build(cfg).init_weights()


# ------------------------------------------------------------------------------------------
# Through a real Runner
# ------------------------------------------------------------------------------------------
def make_runner(tmp_path, data, name=None, **overrides):
    from mmengine.runner import Runner

    # The experiment (and logger) name is the config's name plus a timestamp in seconds: two
    # runners built within one second with the same name would share the first one's logger,
    # whose output goes to the earlier test's captured stream.
    name = name or f'work_{tmp_path.name}'
    cfg = Config.fromfile(tiny_config(tmp_path / f'{name}.py', data, iters=6, ckpt=2,
                                      extra_imports=['deepmim_mm.datasets']))
    cfg.work_dir = str(tmp_path / name)
    cfg.merge_from_dict(overrides)
    return Runner.from_cfg(cfg)


def save_other_arch(path, embed_dims, num_layers=2):
    """A valid mmpretrain MAE checkpoint of another width or depth (the stand-in for another
    model)."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        mae = MODELS.build(dict(
            type='MAE',
            backbone=dict(type='MAEViT', img_size=32, patch_size=8,
                          arch=dict(embed_dims=embed_dims, num_layers=num_layers, num_heads=2,
                                    feedforward_channels=2 * embed_dims)),
            neck=dict(type='MAEPretrainDecoder', num_patches=16, patch_size=8,
                      embed_dim=embed_dims, decoder_embed_dim=32, decoder_depth=1,
                      decoder_num_heads=2),
            head=dict(type='MAEPretrainHead', patch_size=8,
                      loss=dict(type='PixelReconstructionLoss', criterion='L2'))))
    torch.save({'state_dict': mae.state_dict(), 'meta': {}}, path)


def test_load_from_other_architecture(tmp_path):
    data = make_data(tmp_path, n_per_class=1)
    ckpt = str(tmp_path / 'mae_wide.pth')
    save_other_arch(ckpt, embed_dims=48)
    runner = make_runner(tmp_path, data, load_from=ckpt)
    with pytest.raises(ValueError) as info:
        runner.train()
    msg = str(info.value)
    assert f'{ckpt} does not fit DeepMIM' in msg
    assert 'backbone.cls_token: checkpoint (1, 1, 48) vs model (1, 1, 32)' in msg
    assert not glob.glob(osp.join(runner.work_dir, '*.pth'))


@pytest.mark.parametrize('depth,keys', [(3, 'backbone.layers.2.'), (1, 'backbone.layers.1.')])
def test_load_from_other_depth(tmp_path, depth, keys):
    """Same width, another depth: mmengine would drop the extra blocks, or leave the missing
    ones at their random initialisation, with a log line."""
    data = make_data(tmp_path, n_per_class=1)
    ckpt = str(tmp_path / f'mae_depth{depth}.pth')
    save_other_arch(ckpt, embed_dims=32, num_layers=depth)
    runner = make_runner(tmp_path, data, load_from=ckpt)
    with pytest.raises(ValueError) as info:
        runner.train()
    assert f'{ckpt} does not fit DeepMIM' in str(info.value) and keys in str(info.value)
    assert not glob.glob(osp.join(runner.work_dir, '*.pth'))


def test_same_architecture_loads(tmp_path):
    """An MAE checkpoint of the same width loads (extra decoders start fresh): no error."""
    data = make_data(tmp_path, n_per_class=1)
    ckpt = str(tmp_path / 'mae.pth')
    save_other_arch(ckpt, embed_dims=32)
    runner = make_runner(tmp_path, data, load_from=ckpt, train_cfg=dict(max_iters=1))
    runner.train()
    assert osp.isfile(osp.join(runner.work_dir, 'iter_1.pth'))


def test_load_from_checkpoint_without_encoder(tmp_path):
    data = make_data(tmp_path, n_per_class=1)
    ckpt = str(tmp_path / 'head_only.pth')
    torch.save({'state_dict': {'head.fc.weight': torch.zeros(10, 32),
                               'head.fc.bias': torch.zeros(10)}}, ckpt)
    runner = make_runner(tmp_path, data, load_from=ckpt)
    with pytest.raises(ValueError) as info:
        runner.train()
    msg = str(info.value)
    assert f'{ckpt} does not fit DeepMIM' in msg and 'head.' in msg and 'backbone.' in msg


def checked_pipeline(on_corrupt):
    return [dict(type='LoadImageFromFileChecked', on_corrupt=on_corrupt),
            dict(type='Resize', scale=(32, 32)), dict(type='PackInputs')]


def test_corrupt_jpeg_is_named(tmp_path):
    data = make_data(tmp_path)
    bad = osp.join(data, 'class1', '2.JPEG')
    with open(bad, 'wb') as f:
        f.write(b'\xff\xd8\xff\xe0' + os.urandom(200))
    runner = make_runner(
        tmp_path, data, train_dataloader=dict(dataset=dict(pipeline=checked_pipeline('error'))))
    with pytest.raises(ValueError) as info:
        runner.train()
    assert f'cannot decode image {bad}' in str(info.value)
    assert 'on_corrupt="skip"' in str(info.value)


def test_corrupt_jpeg_skipped_with_warning(tmp_path, capsys):
    data = make_data(tmp_path)
    bad = osp.join(data, 'class1', '2.JPEG')
    with open(bad, 'wb') as f:
        f.write(b'garbage')
    runner = make_runner(
        tmp_path, data, train_dataloader=dict(dataset=dict(pipeline=checked_pipeline('skip'))))
    runner.train()  # 6 iterations of batch 2 = every image once: the bad one is met
    out = capsys.readouterr()
    assert f'cannot decode image {bad}' in out.out + out.err
    assert 'skipped (on_corrupt="skip")' in out.out + out.err
    assert osp.isfile(osp.join(runner.work_dir, 'iter_6.pth'))


def test_empty_image_through_a_shipped_config(tmp_path, capsys):
    """The demo config as shipped (mmpretrain's MAE pipeline with the checked loader): an empty
    image file is an error naming it (mmcv's loader: a bare cv2.error), and skipped with the
    README's one override."""
    import shutil
    folder = tmp_path / 'data' / 'micro'
    folder.mkdir(parents=True)
    demo_images = osp.join(ROOT, 'deepmim_mm', 'demo', 'images', 'train', 'micro')
    for name in sorted(os.listdir(demo_images))[:3]:
        shutil.copy(osp.join(demo_images, name), folder / name)
    empty = folder / 'empty.JPEG'
    empty.write_bytes(b'')
    opts = ['--cfg-options', f'train_dataloader.dataset.dataset.data_root={tmp_path / "data"}',
            'train_dataloader.dataset.times=1', 'train_dataloader.batch_size=4',
            'train_dataloader.num_workers=0', 'train_cfg.max_epochs=1']
    with pytest.raises(ValueError, match=f'cannot decode image {empty}'):
        run_main('tools/train.py', DEMO, '--work-dir', str(tmp_path / 'w1'), *opts)
    assert run_main('tools/train.py', DEMO, '--work-dir', str(tmp_path / 'w2'), *opts,
                    'train_dataloader.dataset.dataset.pipeline.0.on_corrupt=skip') == 0
    out = capsys.readouterr()
    assert f'cannot decode image {empty}' in out.out + out.err
    assert osp.isfile(tmp_path / 'w2' / 'epoch_1.pth')


def test_bad_on_corrupt_value():
    from deepmim_mm.datasets import LoadImageFromFileChecked
    with pytest.raises(ValueError, match=r"on_corrupt='warn'; accepted: \['error', 'skip'\]"):
        LoadImageFromFileChecked(on_corrupt='warn')


def test_non_finite_loss_stops_with_level_and_iteration(tmp_path):
    from mmengine.hooks import Hook

    from deepmim_mm.engine import NonFiniteLossError

    class PoisonLevel(Hook):
        """Before iteration 5, the first auxiliary decoder's output layer becomes NaN."""

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if runner.iter + 1 == 5:
                model = runner.model.module if hasattr(runner.model, 'module') else runner.model
                with torch.no_grad():
                    model.neck.aux_decoders[0].decoder_pred.weight.fill_(float('nan'))

    data = make_data(tmp_path)
    runner = make_runner(tmp_path, data)
    runner.register_hook(PoisonLevel())
    with pytest.raises(NonFiniteLossError) as info:
        runner.train()
    msg = str(info.value)
    assert 'non-finite loss at iteration 5 (epoch 1): loss_block1=nan' in msg
    assert 'loss_block2' not in msg  # the level, not the total it made non-finite
    last = osp.join(runner.work_dir, 'iter_4.pth')
    assert f'the last good checkpoint is {last}' in msg
    # Nothing was written after the failure; the last checkpoint is complete and finite.
    assert sorted(glob.glob(osp.join(runner.work_dir, '*.pth'))) == [
        osp.join(runner.work_dir, 'iter_2.pth'), last]
    with open(osp.join(runner.work_dir, 'last_checkpoint')) as f:
        assert f.read().strip() == last
    state = torch.load(last, weights_only=False)['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_non_finite_hook_interval_must_be_positive():
    from deepmim_mm.engine import NonFiniteLossHook
    with pytest.raises(ValueError, match='interval must be a positive int, got 0'):
        NonFiniteLossHook(interval=0)


# ------------------------------------------------------------------------------------------
# Data folders: symbolic links the scan would follow forever or leave out silently
# ------------------------------------------------------------------------------------------
LINK_LOOPS = [
    # (links (path under the data folder, target); the links the error may name)
    ([('class0/up', '..')], ['class0/up']),
    ([('class0/self', 'self')], ['class0/self']),
    ([('class0/to1', '../class1'), ('class1/to0', '../class0')], ['class0/to1', 'class1/to0']),
]


@pytest.mark.parametrize('links,named', LINK_LOOPS, ids=['to parent', 'to itself', 'two links'])
def test_symlink_loop_in_data_folder_is_named(tmp_path, links, named):
    """mmengine's scan follows the loop until the path is too long: an OSError holding a path
    of 1,000 characters that names no link."""
    data = make_data(tmp_path, n_per_class=1)
    for link, target in links:
        os.symlink(target, osp.join(data, link))
    cfg = tiny_config(tmp_path / 'tiny.py', data, iters=1)
    with pytest.raises(ValueError) as info:
        run_main('tools/train.py', cfg, '--work-dir', str(tmp_path / 'work'))
    msg = str(info.value)
    assert msg.startswith(f'data folder {data}: the symbolic link ') and '\n' not in msg
    assert len(msg) < 3 * len(data) + 150, msg  # not the path of the loop followed, unrolled
    assert any(f'{osp.join(data, n)} -> {dict(links)[n]} loops' in msg for n in named), msg


def test_dangling_symlink_in_data_folder_is_named(tmp_path, capsys):
    """The scan leaves a link to no file out of the dataset: training goes on (the folder may be
    read-only, shared data), with a warning naming the link and its target."""
    from mmengine.logging import MMLogger
    data = make_data(tmp_path, n_per_class=1)
    link, target = osp.join(data, 'class0', 'moved.JPEG'), str(tmp_path / 'elsewhere.JPEG')
    os.symlink(target, link)
    cfg = tiny_config(tmp_path / 'tiny.py', data, iters=1, ckpt=1)
    MMLogger.get_instance(f'dangling_{tmp_path.name}')  # current until the Runner's, on capsys
    assert run_main('tools/train.py', cfg, '--work-dir', str(tmp_path / 'work')) == 0
    out = capsys.readouterr()
    assert f'{link} -> {target}' in out.out + out.err
    assert osp.isfile(tmp_path / 'work' / 'iter_1.pth')


# The first line leads with the true cause: one row per case, (make the error, its type, the
# words the message starts with, what it names). ``make(tmp_path)`` raises the error.
# ------------------------------------------------------------------------------------------
def override(config, **options):
    from deepmim_mm.utils import load_config
    return lambda tmp_path: load_config(osp.join(ROOT, 'configs', 'pretrain', config), options)


def syntax_error(where):
    """A leaf config on a base, the bad line in the leaf or in the base."""
    def make(tmp_path):
        (tmp_path / 'base.py').write_text('a = 1\nb = (\n' if where == 'base' else 'a = 1\n')
        (tmp_path / 'leaf.py').write_text("_base_ = './base.py'\n"
                                          + ('c = = 2\n' if where == 'leaf' else 'c = 2\n'))
        run_main('tools/train.py', str(tmp_path / 'leaf.py'))
    return make


def deepmim_as_clip_teacher(tmp_path):
    from mmpretrain.registry import MODELS
    ckpt = tmp_path / 'epoch_1.pth'
    torch.save({'state_dict': MODELS.build(MODEL).state_dict()}, ckpt)
    MODELS.build(dict(type='CLIPTeacher', checkpoint=str(ckpt), img_size=32, arch=dict(
        width=32, layers=1, heads=2, patch_size=8, output_dim=16)))


def poisoned(module, path, prefix=''):
    """``module``'s weights with one NaN, saved to ``path``."""
    state = {prefix + k: v.clone() for k, v in module.state_dict().items()}
    next(v for k, v in state.items() if k.endswith('ln1.weight'))[0] = float('nan')
    torch.save({'state_dict': state}, path)
    return str(path)


def nan_load_from(tmp_path):
    data = make_data(tmp_path, n_per_class=1)
    ckpt = poisoned(make_runner(tmp_path, data, name='donor').model, tmp_path / 'nan.pth')
    make_runner(tmp_path, data, load_from=ckpt).train()


def nan_init_cfg(tmp_path):
    from mmpretrain.registry import MODELS

    import deepmim_mm.classification  # noqa: F401  registers PretrainedVisionTransformer
    vit = dict(type='PretrainedVisionTransformer', img_size=32, patch_size=8,
               arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64))
    ckpt = poisoned(MODELS.build(vit), tmp_path / 'nan.pth', prefix='backbone.')
    MODELS.build(dict(vit, init_cfg=dict(type='Pretrained', checkpoint=ckpt))).init_weights()


def nan_mae_teacher(tmp_path):
    from deepmim_mm.models.target_generators import MAEHybridTarget
    parts = dict(encoder=dict(arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                                        feedforward_channels=64), img_size=32, patch_size=8),
                 decoder=dict(num_patches=16, patch_size=8, embed_dim=32, decoder_embed_dim=16,
                              decoder_depth=1, decoder_num_heads=2))
    teacher = MAEHybridTarget(random_init=True, **parts)
    state = {**{'backbone.' + k: v for k, v in teacher.encoder.state_dict().items()},
             **{'neck.' + k: v for k, v in teacher.decoder.state_dict().items()}}
    state['backbone.layers.0.ln1.weight'] = state['backbone.layers.0.ln1.weight'] * float('nan')
    torch.save({'state_dict': state}, tmp_path / 'nan.pth')
    MAEHybridTarget(checkpoint=str(tmp_path / 'nan.pth'), **parts)


def zero_std(tmp_path):
    runner = make_runner(tmp_path, make_data(tmp_path, n_per_class=1),
                         data_preprocessor=dict(std=[0, 0, 0]))
    try:
        runner.train()
    finally:
        assert not glob.glob(osp.join(runner.work_dir, '*.pth'))


CLIP = 'deepmim-clip_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'
HYBRID = 'deepmim-hybrid_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'
CAUSE_FIRST = [
    ('clip_checkpoint', override(CLIP, clip_checkpoint='/ckpt/ViT-L-14.pt'), ValueError,
     '--cfg-options clip_checkpoint: a variable of the config file',
     ['model.target_generator.checkpoint']),
    ('mae_teacher_checkpoint', override(HYBRID, mae_teacher_checkpoint='/ckpt/mae.pth'),
     ValueError, '--cfg-options mae_teacher_checkpoint: a variable of the config file',
     ['model.target_generator.checkpoint']),
    ('syntax_error_leaf', syntax_error('leaf'), SyntaxError, 'syntax error in {tmp}/leaf.py, '
     'line 2', []),
    ('syntax_error_base', syntax_error('base'), SyntaxError, 'syntax error in {tmp}/base.py, '
     'line 2', ['a _base_ of {tmp}/leaf.py']),
    ('deepmim_as_clip_teacher', deepmim_as_clip_teacher, ValueError,
     'CLIPTeacher: model.target_generator.checkpoint: {tmp}/epoch_1.pth holds no visual.* keys: '
     'not a CLIP checkpoint', ['backbone.', 'neck.']),
    ('nan_load_from', nan_load_from, ValueError, 'load_from: {tmp}/nan.pth holds non-finite '
     'values', ['backbone.layers.0.ln1.weight']),
    ('nan_init_cfg', nan_init_cfg, ValueError, 'model.backbone.init_cfg.checkpoint: '
     '{tmp}/nan.pth holds non-finite values', ['backbone.layers.0.ln1.weight']),
    ('nan_mae_teacher', nan_mae_teacher, ValueError, 'model.target_generator.checkpoint '
     '(teacher encoder', ['holds non-finite values', 'backbone.layers.0.ln1.weight']),
    ('zero_std', zero_std, ValueError, 'model.data_preprocessor: std=[0.0, 0.0, 0.0]',
     ['non-finite']),
]


@pytest.mark.parametrize('make,error,lead,named', [row[1:] for row in CAUSE_FIRST],
                         ids=[row[0] for row in CAUSE_FIRST])
def test_message_leads_with_the_cause(mmpretrain_scope, tmp_path, make, error, lead, named):
    with pytest.raises(error) as info:
        make(tmp_path)
    first = str(info.value).splitlines()[0]
    assert first.startswith(lead.format(tmp=tmp_path)), first
    assert all(n.format(tmp=tmp_path) in first for n in named), first
