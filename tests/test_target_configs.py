"""The CLIP / hybrid-target pretraining configs: recipe numbers, full-size builds with tiny
stand-in teachers, and tools/train.py end to end (in this process) on tiny ViTs with teacher files
the test writes."""
import glob
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

import deepmim_mm  # noqa: F401
from deepmim_mm.checkpoint import load_file

from conftest import ROOT, run_main, write_imagenet_folder

CLIP_CFG = 'configs/pretrain/deepmim-clip_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'
MAE_CLIP_CFG = 'configs/pretrain/mae-clip_vit-base-p16_8xb512-amp-coslr-1600e_in1k.py'
HYBRID_CFG = 'configs/pretrain/deepmim-hybrid_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'

TINY_CLIP = dict(width=32, layers=1, heads=2, patch_size=16, output_dim=512)
TINY_CLIP_ARCH = repr(dict(_delete_=True, **TINY_CLIP))  # the configs' arch is a string


def _load_cfg(path):
    return Config.fromfile(osp.join(ROOT, path))


def write_tiny_clip(path, width=32, layers=1, heads=2, patch=16, out_dim=512, grid=4,
                    layout='visual'):
    """A random CLIP checkpoint with OpenAI's key names (text-tower keys included, as in real
    files). ``layout='visual'``: a plain state dict (what the official DeepMIM code loads);
    ``'open_clip'``: an open_clip training checkpoint (nested under ``state_dict``, ``module.``)."""
    g = torch.Generator().manual_seed(0)

    def r(*shape, base=0.0):
        return base + 0.05 * torch.randn(*shape, generator=g)

    w = width
    sd = {'visual.conv1.weight': r(w, 3, patch, patch), 'visual.class_embedding': r(w),
          'visual.positional_embedding': r(grid * grid + 1, w),
          'visual.ln_pre.weight': r(w, base=1), 'visual.ln_pre.bias': r(w)}
    for i in range(layers):
        p = f'visual.transformer.resblocks.{i}.'
        sd.update({
            p + 'ln_1.weight': r(w, base=1), p + 'ln_1.bias': r(w),
            p + 'attn.in_proj_weight': r(3 * w, w), p + 'attn.in_proj_bias': r(3 * w),
            p + 'attn.out_proj.weight': r(w, w), p + 'attn.out_proj.bias': r(w),
            p + 'ln_2.weight': r(w, base=1), p + 'ln_2.bias': r(w),
            p + 'mlp.c_fc.weight': r(4 * w, w), p + 'mlp.c_fc.bias': r(4 * w),
            p + 'mlp.c_proj.weight': r(w, 4 * w), p + 'mlp.c_proj.bias': r(w)})
    sd.update({'visual.ln_post.weight': r(w, base=1), 'visual.ln_post.bias': r(w),
               'visual.proj': r(w, out_dim), 'token_embedding.weight': r(10, 8),
               'text_projection': r(8, out_dim)})
    if layout == 'open_clip':
        sd = {'epoch': 1, 'state_dict': {'module.' + k: v for k, v in sd.items()}}
    torch.save(sd, path)
    return str(path)


def write_tiny_mae(path, img_size=64, patch=16, seed=0):
    """mmpretrain's own MAE with a tiny encoder/decoder, saved as an mmengine checkpoint."""
    torch.manual_seed(seed)
    model = MODELS.build(dict(
        type='MAE',
        backbone=dict(type='MAEViT', img_size=img_size, patch_size=patch,
                      arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                                feedforward_channels=64)),
        neck=dict(type='MAEPretrainDecoder', num_patches=(img_size // patch)**2,
                  patch_size=patch, embed_dim=32, decoder_embed_dim=16, decoder_depth=1,
                  decoder_num_heads=2),
        head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=patch,
                  loss=dict(type='PixelReconstructionLoss', criterion='L2'))))
    model.init_weights()
    torch.save({'meta': {}, 'state_dict': model.state_dict()}, path)
    return str(path)


def tiny_mae_teacher(img_size):
    """``target_generator`` fields replacing the ViT-B teacher by write_tiny_mae's."""
    return dict(
        encoder=dict(_delete_=True, type='DeepMIMViT', img_size=img_size, patch_size=16,
                     arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                               feedforward_channels=64)),
        decoder=dict(_delete_=True, type='MAEPretrainDecoder', num_patches=(img_size // 16)**2,
                     patch_size=16, embed_dim=32, decoder_embed_dim=16, decoder_depth=1,
                     decoder_num_heads=2))


# ---------------------------------------------------------------------------------- recipes
def _check_official_schedule(cfg, epochs):
    """DeepMIM / MAE: AdamW (0.9, 0.95), wd 0.05, lr 1.5e-4 x 4096 / 256, 40 warm-up epochs,
    cosine to 0, batch 8 x 512, RandomResizedCrop(224, 0.2-1, bicubic) + flip, AMP."""
    optim = cfg.optim_wrapper
    assert optim.type == 'AmpOptimWrapper'
    assert optim.optimizer.type == 'AdamW'
    assert optim.optimizer.lr == pytest.approx(2.4e-3)
    assert tuple(optim.optimizer.betas) == (0.9, 0.95)
    assert optim.optimizer.weight_decay == 0.05
    warmup, cosine = cfg.param_scheduler
    assert warmup.type == 'LinearLR' and (warmup.begin, warmup.end) == (0, 40)
    assert cosine.type == 'CosineAnnealingLR' and (cosine.begin, cosine.end) == (40, epochs)
    assert cosine.T_max == epochs - 40 and cosine.get('eta_min', 0) == 0
    assert cfg.train_cfg.max_epochs == epochs
    assert cfg.train_dataloader.batch_size * 8 == 4096 == cfg.auto_scale_lr.base_batch_size
    crop, flip = cfg.train_dataloader.dataset.pipeline[1:3]
    assert crop.type == 'RandomResizedCrop' and crop.scale == 224
    assert tuple(crop.crop_ratio_range) == (0.2, 1.0) and crop.interpolation == 'bicubic'
    assert flip.type == 'RandomFlip' and flip.prob == 0.5
    assert cfg.model.backbone.mask_ratio == 0.75


def _check_clip_recipe(cfg):
    m = cfg.model
    assert m.type == 'DeepMIM' and m.backbone.arch == 'b'
    assert (m.neck.decoder_depth, m.neck.decoder_embed_dim, m.neck.decoder_num_heads) == \
        (4, 512, 16)
    assert m.neck.predict_feature_dim == 512
    assert dict(m.head.loss) == dict(type='CosineFeatureLoss')
    t = m.target_generator
    assert (t.type, t.arch, t.img_size) == ('CLIPTeacher', 'ViT-B/16', 224)
    assert t.checkpoint == cfg.clip_checkpoint
    _check_official_schedule(cfg, 1600)


def test_deepmim_clip_recipe():
    cfg = _load_cfg(CLIP_CFG)
    _check_clip_recipe(cfg)
    assert cfg.model.backbone.out_indices == [5, 7, 9, 11]


def test_mae_clip_recipe():
    cfg = _load_cfg(MAE_CLIP_CFG)
    _check_clip_recipe(cfg)
    assert cfg.model.backbone.out_indices == [11]


def test_deepmim_hybrid_recipe():
    cfg = _load_cfg(HYBRID_CFG)
    m = cfg.model
    assert m.backbone.out_indices == [5, 7, 9, 11] and m.neck.decoder_depth == 4
    assert m.head.norm_pix is True and m.head.loss.criterion == 'L2'
    assert m.neck.get('predict_feature_dim') is None
    t = m.target_generator
    assert t.type == 'MAEHybridTarget' and t.checkpoint == cfg.mae_teacher_checkpoint
    assert list(t.alphas) == pytest.approx([0, 1 / 3, 2 / 3])
    assert t.mask_ratio == m.backbone.mask_ratio == 0.75
    assert (t.encoder.arch, t.encoder.img_size, t.encoder.patch_size) == ('b', 224, 16)
    assert (t.decoder.decoder_depth, t.decoder.decoder_embed_dim, t.decoder.embed_dim) == \
        (8, 512, 768)
    _check_official_schedule(cfg, 300)


# ---------------------------------------------------------------------------------- builds
@pytest.mark.parametrize('path,levels', [(CLIP_CFG, [6, 8, 10, 12]), (MAE_CLIP_CFG, [12])])
def test_clip_configs_build_full_size(path, levels, mmpretrain_scope):
    """The ViT-B students as configured, with a tiny random CLIP tower on the same 14x14 grid
    (DeepMIM checks the grid at build time; the losses run in the tools/train.py tests)."""
    cfg = _load_cfg(path)
    cfg.model.target_generator = dict(type='CLIPTeacher', arch=TINY_CLIP, img_size=224,
                                      random_init=True)
    model = MODELS.build(cfg.model)
    assert model.level_names == [f'block{b}' for b in levels]
    assert model.neck.decoder_pred.out_features == 512 == model.target_generator.out_channels
    assert len(model.neck.aux_decoders) == len(levels) - 1
    assert all(len(d.decoder_blocks) == 4 for d in [model.neck, *model.neck.aux_decoders])
    assert not any(k.startswith('target_generator') for k in model.state_dict())


def test_hybrid_config_builds_full_size(tmp_path, mmpretrain_scope):
    cfg = _load_cfg(HYBRID_CFG)
    teacher_path = write_tiny_mae(tmp_path / 'mae.pth', img_size=224)
    tiny = dict(checkpoint=teacher_path, **tiny_mae_teacher(224))
    cfg.merge_from_dict(dict(model=dict(target_generator=tiny)))
    model = MODELS.build(cfg.model)
    teacher = model.target_generator
    assert teacher.alphas == pytest.approx((0, 1 / 3, 2 / 3))
    assert model.level_names == ['block6', 'block8', 'block10', 'block12']
    assert not any(k.startswith('target_generator') for k in model.state_dict())
    assert teacher.out_channels == model.neck.decoder_pred.out_features == 16 * 16 * 3

    # The default alphas do not fit a two-level student: a clear error at build time.
    cfg.model.backbone.out_indices = [5, 11]
    with pytest.raises(ValueError, match='alphas='):  # the field named
        MODELS.build(cfg.model)


# ---------------------------------------------------------------------------------- tools/train.py
# 12-block ViT (the configs' blocks 6/8/10/12 stay valid), 64 px, 4x4 patches of 16 px.
TINY_STUDENT = """
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=32, num_layers=12, num_heads=2,
                            feedforward_channels=64), img_size=64),
    neck=dict(embed_dim=32, num_patches=16, decoder_embed_dim=32, decoder_depth=1,
              decoder_num_heads=2),
    target_generator=dict({teacher}))
"""
TRAIN_OPTIONS = [
    'train_cfg.max_epochs=1', 'train_dataloader.dataset.pipeline.1.scale=64',
    'train_dataloader.batch_size=4', 'train_dataloader.num_workers=0',
    'train_dataloader.persistent_workers=False',
    'train_dataloader.dataset.metainfo.classes=[class0,class1]',
    'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=1',
    'randomness.seed=0', 'env_cfg.dist_cfg.backend=gloo',
]


@pytest.fixture(scope='module')
def imagenet(tmp_path_factory):
    data = str(tmp_path_factory.mktemp('in1k'))
    write_imagenet_folder(osp.join(data, 'train'), num_classes=2, per_class=4)
    return data


def _train(tmp_path, imagenet, config, teacher):
    """tools/train.py in this process; returns (its log, loss records, checkpoint state dict)."""
    cfg_path = tmp_path / 'tiny.py'
    cfg_path.write_text(f"_base_ = {osp.join(ROOT, config)!r}\n"
                        + TINY_STUDENT.format(teacher=teacher))
    work = tmp_path / 'work'
    assert run_main('tools/train.py', cfg_path, '--work-dir', work, '--cfg-options',
                    f'train_dataloader.dataset.data_root={imagenet}', *TRAIN_OPTIONS) == 0
    (log, ) = glob.glob(str(work / '*' / '*.log'))
    (scalars, ) = glob.glob(str(work / '*' / 'vis_data' / 'scalars.json'))
    with open(scalars) as f:
        records = [json.loads(line) for line in f if 'loss' in line]
    ckpt = load_file(str(work / 'epoch_1.pth'))
    return open(log).read(), records, ckpt['state_dict']


def _check_run(records, state_dict, levels):
    assert len(records) == 2  # 8 images / batch 4
    for r in records:
        total = 0.0
        for b in levels:
            assert r[f'loss_block{b}'] > 0
            total += r[f'loss_block{b}']
        assert abs(r['loss'] - total) < 1e-3
    # Student only: the teacher is neither saved nor needed to reload the checkpoint.
    assert {k.split('.')[0] for k in state_dict} <= {'backbone', 'neck', 'data_preprocessor'}
    assert any(k.startswith('neck.decoder_pred') for k in state_dict)
    assert not any('target_generator' in k or 'tower' in k for k in state_dict)


def test_train_deepmim_clip(tmp_path, imagenet):
    clip = write_tiny_clip(tmp_path / 'clip_visual.pth')  # plain visual.* state dict
    out, records, sd = _train(tmp_path, imagenet, CLIP_CFG,
                              f'checkpoint={clip!r}, arch={TINY_CLIP_ARCH}, img_size=64')
    assert 'CLIPTeacher: loaded' in out
    _check_run(records, sd, (6, 8, 10, 12))
    assert sd['neck.decoder_pred.weight'].shape == (512, 32)  # 512-d CLIP features
    assert sd['neck.aux_decoders.2.decoder_pred.weight'].shape == (512, 32)


def test_train_mae_clip(tmp_path, imagenet):
    clip = write_tiny_clip(tmp_path / 'open_clip.pt', layout='open_clip')
    out, records, sd = _train(tmp_path, imagenet, MAE_CLIP_CFG,
                              f'checkpoint={clip!r}, arch={TINY_CLIP_ARCH}, img_size=64')
    assert 'CLIPTeacher: loaded' in out
    _check_run(records, sd, (12, ))
    assert not any('aux_decoders' in k for k in sd)


def test_train_deepmim_hybrid(tmp_path, imagenet):
    mae = write_tiny_mae(tmp_path / 'mae_teacher.pth', img_size=64)
    teacher = f'checkpoint={mae!r}, ' + ', '.join(
        f'{k}={v!r}' for k, v in tiny_mae_teacher(64).items())
    out, records, sd = _train(tmp_path, imagenet, HYBRID_CFG, teacher)
    assert 'MAEHybridTarget: loaded the teacher' in out
    _check_run(records, sd, (6, 8, 10, 12))
