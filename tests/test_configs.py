"""Every pretraining config parses, builds, and supervises the blocks its name promises."""
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


@pytest.mark.parametrize('path', CONFIGS, ids=[osp.basename(c) for c in CONFIGS])
def test_config_parses(path):
    cfg = Config.fromfile(path)
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
