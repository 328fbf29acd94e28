"""Classification: fine-tune / linear-probe configs and the checked pretrained ViT backbone;
an end-to-end fine-tune of a tiny pretraining checkpoint with tools/train.py."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, free_port, write_imagenet_folder
from downstream_utils import PRETRAIN_IMG, TINY_VIT, make_pretrain_checkpoint, run_in_process

CLS_DIR = osp.join(ROOT, 'configs', 'classification')


def _cfg(name):
    from mmengine.config import Config
    return Config.fromfile(osp.join(CLS_DIR, name))


@pytest.mark.parametrize('name,arch,lr,decay,epochs,dims', [
    # Official DeepMIM-CLIP command (OliverRensu/DeepMIM README.md): base lr 1e-4 x 1024 / 256,
    # layer decay 0.6, 100 epochs.
    ('vit-base-p16_deepmim-pre_8xb128-coslr-100e_in1k.py', 'base', 4e-4, 0.6, 100, 768),
    ('vit-small-p16_deepmim-pre_8xb128-coslr-100e_in1k.py', 'deit-s', 4e-4, 0.6, 100, 384),
    ('vit-large-p16_deepmim-pre_8xb128-coslr-100e_in1k.py', 'large', 4e-4, 0.75, 100, 1024),
    # MAE (facebookresearch/mae FINETUNE.md): base lr 5e-4 x 1024 / 256, layer decay 0.65
    # (ViT-L: 1e-3, 0.75).
    ('vit-base-p16_mae-pre_8xb128-coslr-100e_in1k.py', 'base', 2e-3, 0.65, 100, 768),
    ('vit-small-p16_mae-pre_8xb128-coslr-100e_in1k.py', 'deit-s', 2e-3, 0.65, 100, 384),
    ('vit-large-p16_mae-pre_8xb128-coslr-50e_in1k.py', 'large', 4e-3, 0.75, 50, 1024),
])
def test_finetune_configs(name, arch, lr, decay, epochs, dims):
    cfg = _cfg(name)
    bb = cfg.model.backbone
    assert bb.type == 'PretrainedVisionTransformer' and bb.arch == arch
    assert bb.out_type == 'avg_featmap' and not bb.final_norm
    assert bb.init_cfg.type == 'Pretrained' and bb.init_cfg.prefix == 'backbone.'
    assert cfg.model.head.in_channels == dims
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(lr)
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == decay
    assert cfg.optim_wrapper.constructor == 'LearningRateDecayOptimWrapperConstructor'
    assert cfg.train_cfg.max_epochs == epochs
    assert cfg.param_scheduler[0].end == 5 and cfg.param_scheduler[1].end == epochs
    assert cfg.train_dataloader.batch_size * 8 == 1024
    assert [a.type for a in cfg.model.train_cfg.augments] == ['Mixup', 'CutMix']
    assert [a.alpha for a in cfg.model.train_cfg.augments] == [0.8, 1.0]
    assert cfg.model.head.loss.label_smooth_val == 0.1
    steps = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    assert steps['RandAugment'].magnitude_level == 9 and steps['RandAugment'].magnitude_std == 0.5
    assert steps['RandomErasing'].erase_prob == 0.25
    assert 'deepmim_mm.classification' in cfg.custom_imports.imports


@pytest.mark.parametrize('name,arch,dims', [
    ('vit-small-p16_deepmim-pre_8xb2048-linear-coslr-90e_in1k.py', 'deit-s', 384),
    ('vit-base-p16_deepmim-pre_8xb2048-linear-coslr-90e_in1k.py', 'base', 768),
    ('vit-large-p16_deepmim-pre_8xb2048-linear-coslr-90e_in1k.py', 'large', 1024),
    ('vit-base-p16_mff-pre_8xb2048-linear-coslr-90e_in1k.py', 'base', 768),
])
def test_linear_probe_configs(name, arch, dims):
    cfg = _cfg(name)
    bb = cfg.model.backbone
    assert bb.type == 'PretrainedVisionTransformer' and bb.arch == arch
    assert bb.out_type == 'cls_token' and bb.final_norm
    assert bb.frozen_stages == {'deit-s': 12, 'base': 12, 'large': 24}[arch]
    assert cfg.model.neck.type == 'ClsBatchNormNeck' and cfg.model.neck.input_features == dims
    assert cfg.model.head.in_channels == dims
    assert cfg.train_cfg.max_epochs == 90


def test_linear_probe_crops():
    """The MAE linear configs keep mmpretrain's MAE benchmark crop (bilinear RandomResizedCrop);
    the MFF one is mmpretrain's MFF benchmark config, behind MFF's published linear numbers:
    MAERandomResizedCrop, bicubic (MAE's main_linprobe.py crop)."""
    from mmengine.config import Config
    mae = _cfg('vit-base-p16_deepmim-pre_8xb2048-linear-coslr-90e_in1k.py')
    mff = _cfg('vit-base-p16_mff-pre_8xb2048-linear-coslr-90e_in1k.py')
    crop = {t.type: t for t in mae.train_dataloader.dataset.pipeline}['RandomResizedCrop']
    assert crop.get('interpolation', 'bilinear') == 'bilinear'
    crop = {t.type: t for t in mff.train_dataloader.dataset.pipeline}['MAERandomResizedCrop']
    assert crop.interpolation == 3  # torchvision's bicubic
    upstream = Config.fromfile(osp.join(
        osp.dirname(__import__('mmpretrain').__file__), '.mim', 'configs', 'mff', 'benchmarks',
        'vit-base-p16_8xb2048-linear-coslr-90e_in1k.py'))

    def plain(value):  # without the `_scope_` an mmpretrain:: base adds
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items() if k != '_scope_'}
        return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value
    for key in ('train_dataloader', 'optim_wrapper', 'param_scheduler', 'train_cfg'):
        assert plain(mff[key]) == plain(upstream[key]), key
    for key in ('neck', 'head'):
        assert plain(mff.model[key]) == plain(upstream.model[key]), key


def _tiny_backbone(checkpoint, img_size=PRETRAIN_IMG, **kwargs):
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    import deepmim_mm.classification  # noqa: F401
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return MODELS.build(dict(dict(
            type='PretrainedVisionTransformer', arch=dict(TINY_VIT), img_size=img_size,
            patch_size=16, init_cfg=dict(type='Pretrained', checkpoint=checkpoint,
                                         prefix='backbone.')), **kwargs))


def test_pretrained_backbone_loads_every_encoder_key(tmp_path):
    ckpt = str(tmp_path / 'pretrain.pth')
    state = make_pretrain_checkpoint(ckpt)  # MFF: has proj_layers / proj_weights
    backbone = _tiny_backbone(ckpt, out_type='avg_featmap', final_norm=False)
    backbone.init_weights()
    report = backbone.pretrain_report
    own = backbone.state_dict()
    encoder = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    # Every model key but the fine-tuning norm after pooling came from the checkpoint.
    assert set(report.new) == {'ln2.weight', 'ln2.bias'}
    assert set(report.loaded) == set(own) - set(report.new)
    for key in report.loaded:
        torch.testing.assert_close(own[key], encoder[key])
    dropped = set(report.dropped)
    assert {'backbone.ln1.weight', 'backbone.proj_weights', 'target_generator.teacher.proj'} \
        <= dropped
    assert any(k.startswith('backbone.proj_layers.') for k in dropped)
    assert any(k.startswith('neck.decoder_blocks.') for k in dropped)
    assert dropped | {'backbone.' + k for k in report.loaded} == set(state)


def test_pretrained_backbone_allow_new_and_ignore_keys(tmp_path):
    """The two escape hatches of strict loading: a model key the file lacks, a file key to drop."""
    ckpt = str(tmp_path / 'pretrain.pth')
    state = make_pretrain_checkpoint(ckpt)
    del state['backbone.cls_token']
    state['backbone.extra.weight'] = torch.zeros(2)
    torch.save(dict(state_dict=state), ckpt)
    with pytest.raises(ValueError, match='cls_token'):
        _tiny_backbone(ckpt).init_weights()
    backbone = _tiny_backbone(ckpt, allow_new=[r'cls_token'], ignore_keys=[r'extra\..*'])
    backbone.init_weights()
    assert 'cls_token' in backbone.pretrain_report.new
    assert 'backbone.extra.weight' in backbone.pretrain_report.dropped


def test_pretrained_backbone_resizes_pos_embed(tmp_path):
    ckpt = str(tmp_path / 'pretrain.pth')
    make_pretrain_checkpoint(ckpt)
    backbone = _tiny_backbone(ckpt, img_size=32)
    backbone.init_weights()
    grid = PRETRAIN_IMG // 16
    assert backbone.pretrain_report.resized['pos_embed'] == ((1, 1 + grid * grid, 64),
                                                             (1, 1 + 4, 64))
    assert 'ln1.weight' in backbone.pretrain_report.loaded  # final_norm=True keeps it


def test_checkpoint_that_does_not_fit_is_an_error(tmp_path):
    """Each kind of bad pretrained checkpoint is refused naming the field, the file and what
    does not fit (the keys, folded)."""
    ckpt = str(tmp_path / 'pretrain.pth')
    state = make_pretrain_checkpoint(ckpt)

    def saved(name, keep):
        path = str(tmp_path / f'{name}.pth')
        torch.save({'state_dict': {k: v for k, v in state.items() if keep(k)}}, path)
        return path
    cases = [  # (checkpoint, backbone arguments, error type, what the message names)
        (saved('decoder_only', lambda k: not k.startswith('backbone.')), {}, ValueError,
         "it holds no 'backbone.' weights"),
        (saved('partial', lambda k: not k.startswith('backbone.layers.3.')), {}, ValueError,
         'missing from the checkpoint: backbone.layers.3.*'),
        (ckpt, dict(arch=dict(TINY_VIT, num_layers=2)), ValueError,  # a shallower model
         'model does not have: backbone.layers.{2-3}.*'),
        (str(tmp_path / 'nope.pth'), {}, FileNotFoundError, 'checkpoint not found'),
    ]
    for path, kwargs, error, named in cases:
        with pytest.raises(error) as info:
            _tiny_backbone(path, **kwargs).init_weights()
        assert 'model.backbone.init_cfg.checkpoint' in str(info.value), info.value
        assert path in str(info.value) and named in str(info.value), info.value

    # A mistyped init_cfg argument: mmengine's PretrainedInit names it.
    bad = _tiny_backbone(ckpt)
    bad.init_cfg['prefx'] = 'encoder.'
    with pytest.raises(TypeError, match="PretrainedInit.*'prefx'"):
        bad.init_weights()


def test_check_state_names_the_likely_cause_compactly():
    """The one fit check (deepmim_mm.checkpoint.check_state) puts the likely cause first (and
    non-finite weights before it) and stays short however many keys differ."""
    from deepmim_mm.checkpoint import check_state

    def t(*shape):
        return torch.zeros(shape or (1, ))
    layers = {f'backbone.layers.{i}.w': t() for i in range(3)}
    cases = [  # (model state, checkpoint state, cause)
        ({'backbone.cls_token': t(1, 1, 32)}, {'backbone.cls_token': t(1, 1, 48)},
         'another width (backbone.cls_token: 48 channels in the checkpoint, 32 in the model)'),
        (dict(list(layers.items())[:2]), layers,
         'another depth (backbone.layers: 3 blocks in the checkpoint, 2 in the model)'),
        ({'backbone.a': t(), 'head.fc.w': t()}, {'backbone.a': t(), 'neck.x': t()},
         'a pretraining checkpoint where a fine-tuned model is expected'),
        ({'backbone.a': t(), 'neck.x': t()}, {'backbone.a': t(), 'head.fc.w': t()},
         'an encoder-only checkpoint'),
        ({'backbone.a': t()}, {'backbone.a': t(), 'backbone.proj_weights': t()},
         'an MFF checkpoint'),
        ({'backbone.a': t()}, {'blocks.0.norm1.weight': t()}, 'tools/model_converters/'),
        ({'backbone.a': t()}, {'head.w': t()}, 'its keys are under head.'),
    ]
    for target, state, cause in cases:
        _, errors = check_state(target, state, 'x.pth', ignore=())
        assert cause in errors[0], errors
    _, errors = check_state({'a': t(), 'b': t(2)}, {'a': t() / 0 * 0, 'b': t(3)}, 'x.pth')
    assert errors[0] == 'non-finite values (NaN or inf) in: a', errors
    many = {f'neck.aux_decoders.{k}.blocks.{i}.w{j}': t() for k in range(50) for i in range(8)
            for j in range(4)}
    _, errors = check_state(many, {'neck.aux_decoders.0.blocks.0.w0': t()}, 'x.pth')
    assert 'neck.aux_decoders.{1-49}.*' in errors[-1] and '(1599 tensors)' in errors[-1], errors
    assert len('; '.join(errors)) < 400


def test_finetune_one_epoch_with_tools_train(tmp_path):
    """A tiny pretraining checkpoint fine-tuned for one epoch on a generated ImageNet-style
    dataset through tools/train.py and the DeepMIM fine-tune config; validation accuracy comes
    from mmpretrain's Accuracy evaluator."""
    data = tmp_path / 'imagenet'
    write_imagenet_folder(str(data / 'train'), num_classes=3, per_class=4, size=40)
    write_imagenet_folder(str(data / 'val'), num_classes=3, per_class=2, size=40, seed=1)
    ckpt = str(tmp_path / 'pretrain.pth')
    make_pretrain_checkpoint(ckpt)
    base = osp.join(CLS_DIR, 'vit-base-p16_deepmim-pre_8xb128-coslr-100e_in1k.py')
    # Only what the command line cannot say (a dict arch, a tuple) goes in this shrunk config.
    cfg = tmp_path / 'tiny_finetune.py'
    cfg.write_text(f'''
_base_ = {base!r}
model = dict(backbone=dict(arch=dict(_delete_=True, **{dict(TINY_VIT)!r}), img_size=32))
val_evaluator = dict(topk=(1, ))
test_evaluator = val_evaluator
''')
    classes = '[class0,class1,class2]'
    work_dir = str(tmp_path / 'work')
    opts = [
        f'model.backbone.init_cfg.checkpoint={ckpt}', 'model.head.num_classes=3',
        'model.head.in_channels=64', 'data_preprocessor.num_classes=3',
        'train_cfg.max_epochs=1', 'train_dataloader.batch_size=4',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'val_dataloader.batch_size=4', 'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False',
        f'train_dataloader.dataset.data_root={data}',
        f'val_dataloader.dataset.data_root={data}',
        f'train_dataloader.dataset.metainfo.classes={classes}',
        f'val_dataloader.dataset.metainfo.classes={classes}',
        'train_dataloader.dataset.pipeline.1.scale=32',
        'val_dataloader.dataset.pipeline.1.scale=36',
        'val_dataloader.dataset.pipeline.2.crop_size=32',
        'default_hooks.logger.interval=1',
    ]
    text = run_in_process('train.py', cfg, '--work-dir', work_dir, '--cfg-options', *opts)
    assert 'Loaded pretrained encoder from' in text and 'keys loaded' in text
    assert 'resized pos_embed: (1, 10, 64) -> (1, 5, 64)' in text
    scalars = glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json'))
    records = [json.loads(line) for line in open(scalars[0])]
    val = [r for r in records if 'accuracy/top1' in r]
    assert val, records
    assert 0.0 <= val[-1]['accuracy/top1'] <= 100.0
    assert any('loss' in r for r in records)
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))

    # The fine-tuned checkpoint evaluated by tools/test.py (one process) and by
    # tools/dist_test.sh (two gloo processes, as the README's command with 2 for 8 GPUs): the
    # same top-1 on the whole validation set (mmengine collects both ranks' halves).
    ckpt_ft = osp.join(work_dir, 'epoch_1.pth')
    test_opts = [o for o in opts if not o.startswith(('train', 'val_dataloader', 'default_hooks'))]
    test_opts += [o.replace('val_dataloader', 'test_dataloader', 1) for o in opts
                  if o.startswith('val_dataloader')] + ['env_cfg.dist_cfg.backend=gloo']
    single = tmp_path / 'single.json'
    run_in_process('test.py', cfg, ckpt_ft, '--work-dir', tmp_path / 't1', '--out', single,
                   '--out-item', 'metrics', '--cfg-options', *test_opts)
    two = tmp_path / 'two.json'
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHON=sys.executable, PORT=str(free_port()))
    proc = subprocess.run(['bash', 'tools/dist_test.sh', str(cfg), ckpt_ft, '2', '--work-dir',
                           str(tmp_path / 't2'), '--out', str(two), '--out-item', 'metrics',
                           '--cfg-options'] + test_opts,
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    one_proc, two_proc = json.loads(single.read_text()), json.loads(two.read_text())
    assert set(one_proc) == {'accuracy/top1'} and one_proc == two_proc, (one_proc, two_proc)

    # A checkpoint that does not hold the whole model (here the pretraining one: no head, MFF
    # fusion layers) would be evaluated with random parts by mmengine (strict=False, a log
    # line, exit 0): tools/test.py refuses it, naming the file and the keys, in one line.
    with pytest.raises(ValueError) as info:
        run_in_process('test.py', cfg, ckpt, '--work-dir', tmp_path / 't3', '--cfg-options',
                       *test_opts)
    msg = str(info.value)
    assert f'{ckpt} does not fit ImageClassifier' in msg and '\n' not in msg
    assert 'missing from the checkpoint: ' in msg and 'head.*' in msg
    assert 'the model does not have: ' in msg and 'backbone.proj_layers' in msg


@pytest.mark.parametrize('pretrain_config,fusion', [
    ('deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k.py', False),
    ('deepmim-mff_vit-base-p16_8xb512-amp-coslr-300e_in1k.py', True),
])
def test_plugin_pretraining_models_feed_the_finetune_backbone(tmp_path, pretrain_config, fusion):
    """Checkpoints of the plugin's own DeepMIM models (pixel, MFF fusion; shrunk to a tiny ViT)
    initialise the fine-tuning backbone completely; decoders and fusion layers are dropped."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    import deepmim_mm  # noqa: F401
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'pretrain', pretrain_config))
    model_cfg = cfg.model
    model_cfg.backbone.arch = dict(TINY_VIT)
    model_cfg.backbone.out_indices = [1, 2, 3]
    if fusion:
        model_cfg.backbone.fusion_indices = [0, 1, 3]
    model_cfg.neck.update(embed_dim=64, decoder_embed_dim=32, decoder_depth=1,
                          decoder_num_heads=2)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(model_cfg)
    ckpt = str(tmp_path / 'deepmim.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    backbone = _tiny_backbone(ckpt, img_size=224, out_type='avg_featmap', final_norm=False)
    backbone.init_weights()
    report = backbone.pretrain_report
    assert set(report.new) == {'ln2.weight', 'ln2.bias'}
    own = backbone.state_dict()
    for key in report.loaded:
        torch.testing.assert_close(own[key], model.state_dict()['backbone.' + key])
    assert any(k.startswith('neck.aux_decoders.1.') for k in report.dropped)
    assert ('backbone.proj_weights' in report.dropped) == fusion
