"""DeepMIMReconstructionHook in a real mmengine Runner (in this process): figures through
LocalVisBackend when switched on with one config option, none when off, training unchanged."""
import json
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from conftest import DEMO_IMAGES, ROOT

DEMO_CFG = osp.join(ROOT, 'configs', 'pretrain', 'deepmim_vit-tiny-p16_1xb8-coslr-20e_demo.py')
IMG = 64

# The demo config, shrunk (2 blocks, 64 px, 2 iterations), with the hook as the pretraining
# configs would carry it: off.
HOOK_CFG = f"""
_base_ = {DEMO_CFG!r}
custom_imports = dict(imports=['deepmim_mm', 'deepmim_mm.engine.hooks.reconstruction_hook'],
                      allow_failed_imports=False)
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=64, num_layers=2, num_heads=2,
                            feedforward_channels=128), img_size={IMG}, out_indices=[0, 1]),
    neck=dict(embed_dim=64, num_patches=16, decoder_embed_dim=32, decoder_depth=1,
              decoder_num_heads=2))
train_dataloader = dict(
    batch_size=4, num_workers=0,
    dataset=dict(times=1, dataset=dict(data_root={osp.join(DEMO_IMAGES, 'train')!r}, pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='RandomResizedCrop', scale={IMG}, crop_ratio_range=(0.2, 1.0),
             backend='pillow', interpolation='bicubic'),
        dict(type='PackInputs')])))
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=2)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False, begin=0, end=2)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=100, by_epoch=False))
custom_hooks = [dict(type='DeepMIMReconstructionHook', enable=False, interval=1, num_images=3)]
"""


def _train(cfg, work_dir, options=None):
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(str(cfg))
    cfg.merge_from_dict(dict(options or {}, work_dir=str(work_dir)))
    Runner.from_cfg(cfg).train()
    vis = list(work_dir.glob('*/vis_data'))
    assert len(vis) == 1, vis
    return vis[0]


def _scalars(vis_dir):
    with open(vis_dir / 'scalars.json') as f:
        return [json.loads(line) for line in f if line.strip()]


def test_hook_writes_figures_only_when_enabled(tmp_path):
    cfg = tmp_path / 'deepmim_hook_tiny.py'
    cfg.write_text(HOOK_CFG)

    off = _train(cfg, tmp_path / 'off')
    assert not list(off.rglob('*.png'))

    on = _train(cfg, tmp_path / 'on', {'custom_hooks.0.enable': True})
    images = sorted(p.name for p in (on / 'vis_image').glob('*.png'))
    assert images == ['reconstruction_block1_1.png', 'reconstruction_block1_2.png',
                      'reconstruction_block2_1.png', 'reconstruction_block2_2.png']
    for name in images:
        with Image.open(on / 'vis_image' / name) as im:
            im.load()
            # 3 images (rows) x original | masked | reconstruction | + visible, 2 px gaps.
            assert im.mode == 'RGB'
            assert im.size == (4 * IMG + 3 * 2, 3 * IMG + 2 * 2)
    # The same images and mask at every step: only the reconstruction columns change.
    a = np.asarray(Image.open(on / 'vis_image' / 'reconstruction_block2_1.png'))
    b = np.asarray(Image.open(on / 'vis_image' / 'reconstruction_block2_2.png'))
    assert np.array_equal(a[:, :2 * IMG + 2], b[:, :2 * IMG + 2])
    assert not np.array_equal(a[:, 2 * IMG + 4:], b[:, 2 * IMG + 4:])

    # The hook's forward leaves training alone: same losses with and without it.
    def losses(v):
        return [{k: r[k] for k in r if k.startswith('loss')} for r in _scalars(v)]
    assert losses(on) == losses(off) and len(losses(on)) == 2


def test_hook_arguments(mmpretrain_scope):
    from mmengine.registry import HOOKS

    from deepmim_mm.engine.hooks import DeepMIMReconstructionHook
    hook = HOOKS.build(dict(type='DeepMIMReconstructionHook', interval=5))
    assert isinstance(hook, DeepMIMReconstructionHook) and not hook.enable
    with pytest.raises(ValueError, match='interval'):
        DeepMIMReconstructionHook(interval=0)
    with pytest.raises(ValueError, match='num_images'):
        DeepMIMReconstructionHook(num_images=0)
