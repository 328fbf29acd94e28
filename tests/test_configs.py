"""Every pretraining config parses, builds, and supervises the blocks its name promises."""
import functools
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

import deepmim_mm  # noqa: F401

pytestmark = pytest.mark.usefixtures('mmpretrain_scope')

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', 'pretrain', '*.py')))


def test_there_are_configs_for_every_method_and_schedule():
    names = {osp.basename(c) for c in CONFIGS}
    for method in ('mae', 'deepmim', 'mff', 'deepmim-mff'):
        for epochs in (300, 800, 1600):
            assert f'{method}_vit-base-p16_8xb512-amp-coslr-{epochs}e_in1k.py' in names
    assert any(n.startswith('deepmim_vit-small') for n in names)
    assert any(n.startswith('deepmim_vit-large') for n in names)


@functools.lru_cache(maxsize=None)
def _config(path):
    """Each config loaded once for the tests that only read it."""
    return Config.fromfile(path)


@pytest.mark.parametrize('path', CONFIGS, ids=[osp.basename(c) for c in CONFIGS])
def test_config_parses(path):
    cfg = _config(path)
    assert cfg.model.type == 'DeepMIM'
    assert cfg.model.backbone.type == 'DeepMIMViT'
    assert 'deepmim_mm' in cfg.custom_imports.imports
    name = osp.basename(path)
    if '-1600e' in name:
        assert cfg.train_cfg.max_epochs == 1600
    if name.startswith(('deepmim_', 'deepmim-mff')) and 'tiny' not in name:
        assert len(cfg.model.backbone.out_indices) == 4
    if name.startswith(('mff', 'deepmim-mff')):
        assert cfg.model.backbone.fusion_indices == [0, 2, 4, 6, 8, 11]


@pytest.mark.parametrize('name,blocks', [
    ('deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k.py', [6, 8, 10, 12]),
    ('deepmim-mff_vit-base-p16_8xb512-amp-coslr-800e_in1k.py', [6, 8, 10, 12]),
    ('deepmim_vit-small-p16_8xb512-amp-coslr-300e_in1k.py', [6, 8, 10, 12]),
])
def test_config_builds_and_names_its_losses(name, blocks):
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'pretrain', name))
    model = MODELS.build(cfg.model)
    assert model.neck.num_levels == len(blocks)
    assert all(len(d.decoder_blocks) == 4 for d in [model.neck, *model.neck.aux_decoders])
    with torch.no_grad():
        losses = model.loss(torch.randn(1, 3, 224, 224), None)
    assert [k for k in losses if k.startswith('loss')] == [f'loss_block{b}' for b in blocks]


def test_aux4_ablation_keeps_maes_final_decoder():
    """DeepMIM vs MAE by deep supervision alone: MAE's 8-block final decoder (its state_dict keys
    are mmpretrain MAE's neck keys), 4-block auxiliary decoders for blocks 6, 8, 10."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'pretrain',
                                   'deepmim-aux4_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'))
    mae = Config.fromfile(osp.join(ROOT, 'configs', 'pretrain',
                                   'mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'))
    for c in (cfg, mae):  # a narrow ViT: only depths and names matter here
        c.model.backbone.arch = 'deit-t'
        c.model.neck.embed_dim = 192
    model = MODELS.build(cfg.model)
    assert len(model.neck.decoder_blocks) == 8
    assert [len(d.decoder_blocks) for d in model.neck.aux_decoders] == [4, 4, 4]
    final = {k for k in model.neck.state_dict() if not k.startswith('aux_decoders.')}
    assert final == set(MODELS.build(mae.model).neck.state_dict())
    with torch.no_grad():
        losses = model.loss(torch.randn(1, 3, 224, 224), None)
    assert [k for k in losses if k.startswith('loss')] == [f'loss_block{b}' for b in (6, 8, 10, 12)]
    # Everything else is MAE's recipe.
    assert cfg.optim_wrapper == mae.optim_wrapper and cfg.param_scheduler == mae.param_scheduler
    assert cfg.train_dataloader == mae.train_dataloader


def _weight_decay_of_every_parameter(cfg):
    from mmengine.optim import build_optim_wrapper
    cfg.model.backbone.arch = dict(embed_dims=64, num_layers=6, num_heads=2,
                                   feedforward_channels=128)
    cfg.model.backbone.update(out_indices=None, img_size=32)
    cfg.model.neck.update(embed_dim=64, decoder_embed_dim=32, decoder_depth=1,
                          decoder_num_heads=2, num_patches=4)
    if cfg.model.get('target_generator'):
        cfg.model.target_generator.update(checkpoint=None, random_init=True, img_size=32, arch=dict(
            width=32, layers=1, heads=2, patch_size=16, output_dim=512))
    model = MODELS.build(cfg.model)
    optim = dict(cfg.optim_wrapper, type='OptimWrapper')  # (AmpOptimWrapper needs a GPU)
    optim.pop('loss_scale', None)
    wrapper = build_optim_wrapper(model, optim)
    decay = {}
    by_param = {id(p): n for n, p in model.named_parameters()}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            decay[by_param[id(p)]] = group['weight_decay']
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    return {n: decay[n] for n in trainable}, trainable


def test_deepmim_clip_decays_parameters_as_the_official_code():
    """Official DeepMIM main_pretrain.py (timm 0.3.2 add_weight_decay, no skip list): no decay
    exactly for 1-D parameters and biases; cls_token and the mask tokens are decayed. The pixel
    configs keep mmpretrain's MAE rule, which exempts the tokens."""
    clip = Config.fromfile(osp.join(ROOT, 'configs', 'pretrain',
                                    'deepmim-clip_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'))
    decay, params = _weight_decay_of_every_parameter(clip)
    assert not any(n.startswith('target_generator') for n in decay)  # the teacher is frozen
    for name, p in params.items():
        official = not (p.ndim == 1 or name.endswith('.bias'))
        assert decay[name] == (0.05 if official else 0.0), name
    tokens = [n for n in decay if n.endswith(('cls_token', 'mask_token'))]
    assert len(tokens) == 1 + 4 and all(decay[n] == 0.05 for n in tokens)

    pixel = Config.fromfile(osp.join(ROOT, 'configs', 'pretrain',
                                     'deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'))
    decay, _ = _weight_decay_of_every_parameter(pixel)
    assert all(decay[n] == 0.0 for n in tokens)
    assert decay['backbone.layers.0.attn.qkv.weight'] == 0.05


def test_pretraining_pipelines_are_mmpretrains_with_the_checked_loader():
    """Every pretraining config loads with LoadImageFromFileChecked; the rest of each pipeline
    is mmpretrain's own (MAE's or MFF's), unchanged."""
    from mmengine.hub import get_config

    def pipeline(cfg):
        ds = cfg.train_dataloader.dataset
        while 'pipeline' not in ds:
            ds = ds.dataset
        return [{k: v for k, v in dict(t).items() if k != '_scope_'} for t in ds.pipeline]

    upstream = {kind: pipeline(get_config(f'mmpretrain::{kind}/{kind}_vit-base-p16_8xb512-amp-'
                                          'coslr-300e_in1k.py')) for kind in ('mae', 'mff')}
    for kind in ('mae', 'mff'):
        assert upstream[kind][0] == dict(type='LoadImageFromFile')
    assert len(CONFIGS) > 25
    for path in CONFIGS:
        steps = pipeline(_config(path))
        if steps[0]['type'] == 'LoadImageBytes':  # the device-decode path
            continue
        assert steps[0] == dict(type='LoadImageFromFileChecked'), path
        assert steps[1:] in (upstream['mae'][1:], upstream['mff'][1:]), path


ALL_CONFIGS = sorted(c for c in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
                     if '_base_' not in c)


def _at(cfg, path):
    for part in path.split('.'):
        cfg = cfg[int(part)] if isinstance(cfg, (list, tuple)) else cfg[part]
    return cfg


def _unscoped(value):
    """``value`` without the ``_scope_`` keys mmengine adds to a scoped base file's dicts."""
    if isinstance(value, dict):
        return {k: _unscoped(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return type(value)(_unscoped(v) for v in value)
    return value


@pytest.mark.parametrize('path', ALL_CONFIGS, ids=[osp.relpath(c, ROOT) for c in ALL_CONFIGS])
def test_every_config_variable_override_is_refused(path):
    """Every shipped config, every top-level key no runner or tool reads (``data_root``,
    ``clip_checkpoint``, pipelines, ...): overriding it would change nothing built, so it is
    refused, naming the fields that hold its value; setting the first of them is accepted and
    changes it."""
    from deepmim_mm.utils import load_config, runner_keys
    from deepmim_mm.utils.config_checks import apply_cfg_options
    cfg = load_config(path)
    variables = [k for k in cfg if k not in runner_keys()]
    assert variables  # every shipped config has some (dataset_type at least)
    for name in variables:
        with pytest.raises(ValueError) as info:
            apply_cfg_options(cfg.copy(), {name: 'changed'})
        msg = str(info.value)
        assert msg.startswith(f'--cfg-options {name}: a variable of the config file'), msg
        if ' copied into ' not in msg:
            assert 'no field holds' in msg, msg
            continue
        fields = msg.split(' copied into ')[1].split(' when the file was read')[0]
        fields = fields.split(' ... ')[0].split(', ')
        for field in fields:
            assert _unscoped(_at(cfg, field)) == _unscoped(cfg[name]), (name, field)
        changed = cfg.copy()
        apply_cfg_options(changed, {fields[0]: 'changed'})
        assert _at(changed, fields[0]) == 'changed'


def test_overridden_custom_imports_are_imported(tmp_path, monkeypatch):
    """``custom_imports`` is read after the overrides, not only when the file is parsed."""
    import sys

    from deepmim_mm.utils import load_config
    from deepmim_mm.utils.config_checks import apply_cfg_options
    (tmp_path / 'extra_module_of_test.py').write_text('LOADED = True\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = load_config(CONFIGS[0])
    apply_cfg_options(cfg, {'custom_imports.imports': ['deepmim_mm', 'extra_module_of_test']})
    assert sys.modules.pop('extra_module_of_test').LOADED
