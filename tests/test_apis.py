"""deepmim_mm.apis: a tiny DeepMIM checkpoint written here, read back strictly from its config,
and every level's features of real JPEG files, checked against a forward pass of a ViT loaded
by hand; mmpretrain's FeatureExtractor, which fails on pretraining configs, works through
LevelFeatureExtractor; mmpretrain:: configs (MAE) work too."""
import glob
import os.path as osp

import pytest
import torch

from deepmim_mm.analysis import eval_pipeline, level_features, level_names
from deepmim_mm.apis import LevelFeatureExtractor, extract_levels, init_encoder
from deepmim_mm.utils import load_config

from conftest import ROOT, perturb_weights, write_imagenet_folder

DEMO = osp.join(ROOT, 'configs', 'pretrain', 'deepmim_vit-tiny-p16_1xb8-coslr-20e_demo.py')
TINY = '''
_base_ = {demo!r}
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=32, num_layers={layers}, num_heads=2,
                            feedforward_channels=64),
                  img_size=32, patch_size=8, out_indices=[0, 1, {last}]),
    neck=dict(embed_dim=32, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2,
              patch_size=8, num_patches=16),
    head=dict(patch_size=8))
'''


def _config(tmp_path, layers=3, name='tiny.py'):
    path = tmp_path / name
    path.write_text(TINY.format(demo=DEMO, layers=layers, last=layers - 1))
    return str(path)


def _checkpoint(cfg, path, seed=0):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(Config.fromfile(cfg).model)
    perturb_weights(model, seed, embeddings=('pos_embed', 'cls_token'))
    state = model.state_dict()
    torch.save({'state_dict': state, 'meta': {}}, path)
    return state


@pytest.fixture
def tiny(tmp_path):
    cfg = _config(tmp_path)
    ckpt = str(tmp_path / 'tiny.pth')
    state = _checkpoint(cfg, ckpt)
    write_imagenet_folder(str(tmp_path / 'imgs'), num_classes=2, per_class=3, size=40)
    files = sorted(glob.glob(str(tmp_path / 'imgs' / '*' / '*.JPEG')))
    return cfg, ckpt, state, files


def test_init_encoder_and_extract_levels(tiny):
    cfg, ckpt, state, files = tiny
    model = init_encoder(cfg, ckpt, device='cpu')
    assert not model.training
    for k, v in model.backbone.state_dict().items():
        torch.testing.assert_close(v, state['backbone.' + k], rtol=0, atol=0)
    report = model.encoder_load_report
    assert len(report.loaded) == len(model.backbone.state_dict()) and not report.new
    assert any(k.startswith('neck.') for k in report.dropped)  # decoders are not loaded

    feats = extract_levels(model, files, batch_size=4)
    assert list(feats) == ['block1', 'block2', 'block3'] == level_names(model)
    # Without a checkpoint the model is initialised (MAE's fixed sin-cos position embedding).
    assert init_encoder(cfg, None).backbone.pos_embed.abs().sum() > 0
    assert all(v.shape == (6, 1 + 16, 32) for v in feats.values())

    # Reference: the checkpoint's encoder loaded by hand into a fresh DeepMIMViT, on the same
    # preprocessed images (what the test pipeline + data preprocessor produce).
    from mmengine.dataset import Compose, default_collate
    from mmpretrain.registry import TRANSFORMS

    from deepmim_mm.models.backbones import DeepMIMViT
    ref_vit = DeepMIMViT(arch=dict(embed_dims=32, num_layers=3, num_heads=2,
                                   feedforward_channels=64), img_size=32, patch_size=8,
                         out_indices=[0, 1, 2])
    ref_vit.eval()
    ref_vit.load_state_dict({k[len('backbone.'):]: v for k, v in state.items()
                             if k.startswith('backbone.')})
    pipeline = Compose([TRANSFORMS.build(dict(type='LoadImageFromFile'))]
                       + [TRANSFORMS.build(t) for t in eval_pipeline(32)])
    inputs = model.data_preprocessor(default_collate([pipeline(dict(img_path=f))
                                                      for f in files]), False)['inputs']
    assert inputs.shape == (6, 3, 32, 32) and inputs.dtype == torch.float32
    with torch.no_grad():
        ref = ref_vit(inputs, mask=None)
    for got, want in zip(feats.values(), ref):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)

    # The other input forms of the README: a folder, one path, BGR arrays (as cv2 reads them).
    import cv2
    folder = extract_levels(model, osp.dirname(files[0]), batch_size=4)
    in_folder = sorted(f for f in files if osp.dirname(f) == osp.dirname(files[0]))
    index = [files.index(f) for f in in_folder]
    for name in feats:
        assert folder[name].shape[0] == len(in_folder)
        torch.testing.assert_close(folder[name], feats[name][index], rtol=1e-5, atol=1e-5)
    one = extract_levels(model, files[0])
    arrays = extract_levels(model, [cv2.imread(f) for f in files], batch_size=4)
    for name in feats:
        torch.testing.assert_close(one[name], feats[name][:1], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(arrays[name], feats[name], rtol=1e-5, atol=1e-5)

    # Preprocessed tensors give the same; pooling; every block (raw, before the final norm).
    same = extract_levels(model, inputs, batch_size=4)
    for name in feats:
        torch.testing.assert_close(same[name], feats[name], rtol=1e-5, atol=1e-5)
    pooled = extract_levels(model, inputs, pool='avg')
    torch.testing.assert_close(pooled['block2'], feats['block2'][:, 1:].mean(1))
    assert extract_levels(model, inputs, pool='cls')['block1'].shape == (6, 32)
    every = extract_levels(model, inputs, blocks='all')
    assert list(every) == ['block1', 'block2', 'block3']
    torch.testing.assert_close(every['block1'], feats['block1'])
    with torch.no_grad():
        torch.testing.assert_close(model.backbone.ln1(every['block3']), feats['block3'],
                                   rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="blocks must be one of"):
        extract_levels(model, inputs, blocks='some')


def test_feature_extractor_on_a_pretraining_config(tiny):
    """mmpretrain's FeatureExtractor reads its pipeline from cfg.test_dataloader, which a
    pretraining config does not have; LevelFeatureExtractor supplies the evaluation pipeline
    and otherwise behaves as upstream's (one tuple of levels per image)."""
    from mmpretrain.apis import FeatureExtractor
    cfg, ckpt, state, files = tiny
    model = init_encoder(cfg, ckpt)
    with pytest.raises(AttributeError, match='test_dataloader'):
        FeatureExtractor(model)
    per_image = LevelFeatureExtractor(cfg, ckpt)(files, batch_size=4)
    assert len(per_image) == 6 and len(per_image[0]) == 3
    feats = extract_levels(model, files)
    for i, levels in enumerate(per_image):
        for got, want in zip(levels, feats.values()):
            torch.testing.assert_close(got, want[i], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match='give a config with `pretrained`'):
        LevelFeatureExtractor(model, ckpt)
    del model._config  # a model built without mmpretrain's get_model
    with pytest.raises(ValueError, match='has no `_config`; build it with'):
        LevelFeatureExtractor(model)


def test_loading_is_strict(tmp_path, tiny):
    cfg, ckpt, state, files = tiny
    partial = {k: v for k, v in state.items() if k != 'backbone.layers.1.attn.qkv.weight'}
    torch.save({'state_dict': partial}, tmp_path / 'partial.pth')
    with pytest.raises(ValueError, match=r'partial\.pth.*backbone\.layers\.1\.attn\.qkv'):
        init_encoder(cfg, str(tmp_path / 'partial.pth'))
    deeper = _config(tmp_path, layers=4, name='deeper.py')
    _checkpoint(deeper, str(tmp_path / 'deeper.pth'))
    with pytest.raises(ValueError, match=r'deeper\.pth.*layers\.3\.'):
        init_encoder(cfg, str(tmp_path / 'deeper.pth'))
    with pytest.raises(FileNotFoundError, match='none.pth'):
        init_encoder(cfg, str(tmp_path / 'none.pth'))
    with pytest.raises(FileNotFoundError, match='none.py'):
        init_encoder(str(tmp_path / 'none.py'), ckpt)


def test_mmpretrain_config(tmp_path):
    """An mmpretrain:: pretraining config (MAE, shrunk with cfg_options) through the same API."""
    from mmpretrain.apis import get_model
    options = {'model.backbone.arch': dict(_delete_=True, embed_dims=32, num_layers=2,
                                           num_heads=2, feedforward_channels=64),
               'model.backbone.img_size': 32,
               'model.neck.embed_dim': 32, 'model.neck.decoder_embed_dim': 32,
               'model.neck.decoder_depth': 1, 'model.neck.decoder_num_heads': 2,
               'model.neck.num_patches': 4}
    name = 'mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'
    cfg = load_config(name, options)
    assert cfg.model.type == 'MAE' and cfg.model.backbone.arch.num_layers == 2
    torch.manual_seed(0)
    torch.save({'state_dict': get_model(cfg).state_dict()}, tmp_path / 'mae.pth')
    model = init_encoder(name, str(tmp_path / 'mae.pth'), cfg_options=options)
    feats = extract_levels(model, torch.randn(3, 3, 32, 32), pool='cls')
    assert list(feats) == ['block2'] and feats['block2'].shape == (3, 32)
    assert list(extract_levels(model, torch.randn(1, 3, 32, 32), blocks='all')) == [
        'block1', 'block2']


def test_mmpretrain_mff_features_are_unmasked(tmp_path):
    """mmpretrain's MFFViT(x, mask=None) masks anyway; the API encodes every patch."""
    from mmpretrain.apis import get_model
    options = {'model.backbone.arch': dict(_delete_=True, embed_dims=32, num_layers=2,
                                           num_heads=2, feedforward_channels=64),
               'model.backbone.img_size': 32, 'model.backbone.out_indices': [0, 1],
               'model.neck.embed_dim': 32, 'model.neck.decoder_embed_dim': 32,
               'model.neck.decoder_depth': 1, 'model.neck.decoder_num_heads': 2,
               'model.neck.num_patches': 4}
    name = 'mmpretrain::mff/mff_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'
    cfg = load_config(name, options)
    assert cfg.model.backbone.type == 'MFFViT'
    torch.manual_seed(0)
    torch.save({'state_dict': get_model(cfg).state_dict()}, tmp_path / 'mff.pth')
    model = init_encoder(name, str(tmp_path / 'mff.pth'), cfg_options=options)
    for blocks in ('supervised', 'all'):
        feats = level_features(model, torch.randn(2, 3, 32, 32), blocks=blocks)
        assert all(f.shape[1] == 1 + 4 for f in feats.values()), (blocks, feats)
