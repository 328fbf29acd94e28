"""Analysis math (attention distance, head diversity, linear CKA, reconstruction helpers) and
the three tools in tools/analysis/ on tiny checkpoints and generated images."""
import csv
import logging
import math
import os.path as osp
import pickle
import random
import re
import shutil

import pytest
import torch
from PIL import Image

from deepmim_mm.analysis import (capture_attention, capture_block_outputs, cka_matrix,
                                 head_dissimilarity, linear_cka, masked_predictions,
                                 mean_attention_distance, patch_distances, pixel_reconstruction)
from deepmim_mm.analysis.reconstruction import per_image_losses
from deepmim_mm.apis import init_encoder

from conftest import ROOT, run_main, write_imagenet_folder

TOOLS = osp.join(ROOT, 'tools', 'analysis')
DEMO_CFG = osp.join(ROOT, 'configs', 'pretrain', 'deepmim_vit-tiny-p16_1xb8-coslr-20e_demo.py')
IMG = 32  # tiny models: 32 px, 8 px patches -> 4 x 4 tokens

DEEPMIM_CFG = f"""
_base_ = {DEMO_CFG!r}
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=64, num_layers=4, num_heads=2,
                            feedforward_channels=128),
                  img_size={IMG}, patch_size=8, out_indices=[1, 3]),
    neck=dict(embed_dim=64, num_patches=16, patch_size=8, decoder_embed_dim=32,
              decoder_depth=1, decoder_num_heads=2),
    head=dict(patch_size=8))
"""
# The stand-in for an MAE checkpoint: mmpretrain's own MAE, tiny.
MAE_CFG = f"""
_base_ = 'mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'
model = dict(
    backbone=dict(arch=dict(_delete_=True, embed_dims=64, num_layers=3, num_heads=4,
                            feedforward_channels=128),
                  img_size={IMG}, patch_size=8),
    neck=dict(embed_dim=64, num_patches=16, patch_size=8, decoder_embed_dim=32,
              decoder_depth=1, decoder_num_heads=2),
    head=dict(patch_size=8))
"""
# mmpretrain's MFF: MAE with the fused MFFViT encoder (fusing blocks 1 and 3).
MFF_CFG = MAE_CFG.replace('mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py',
                          'mff/mff_vit-base-p16_8xb512-amp-coslr-300e_in1k.py') + """
model['backbone'].update(out_indices=[0, 2])
"""
# Feature targets: a (random, tiny) CLIP teacher and the cosine loss of DeepMIM-CLIP.
CLIP_CFG = DEEPMIM_CFG + f"""
model.update(
    target_generator=dict(type='CLIPTeacher', random_init=True, img_size={IMG},
                          arch=dict(width=32, layers=1, heads=2, patch_size=8, output_dim=24)))
model['neck'].update(predict_feature_dim=24)
model['head'].update(loss=dict(_delete_=True, type='CosineFeatureLoss'))
"""


# ---------------------------------------------------------------- attention distance
def _attn_with_cls(patch_attn, cls_weight=0.0):
    """(..., N, N) patch attention -> (..., 1+N, 1+N) with ``cls_weight`` put on the CLS key."""
    *lead, n, _ = patch_attn.shape
    full = torch.zeros(*lead, n + 1, n + 1, dtype=torch.float64)
    full[..., 1:, 1:] = patch_attn * (1 - cls_weight)
    full[..., 1:, 0] = cls_weight
    full[..., 0, :] = 1.0 / (n + 1)
    return full


def test_attention_distance_shift_k_columns():
    """Each query attends only to the patch k columns away -> exactly k * patch_size."""
    h, w, k, p = 3, 5, 2, 16
    n = h * w
    attn = torch.zeros(2, n, n, dtype=torch.float64)
    for r in range(h):
        for c in range(w):
            q = r * w + c
            target = c + k if c + k < w else c - k  # right, or left near the right edge
            attn[0, q, r * w + target] = 1.0
            attn[1, q, q] = 1.0  # head 1: attends to itself
    full = _attn_with_cls(attn, cls_weight=0.3)[None]  # (1, H, T, T)
    d = mean_attention_distance(full, (h, w), p)
    torch.testing.assert_close(d, torch.tensor([[k * p, 0.0]], dtype=torch.float64))
    # Without renormalisation the 30 % given to CLS is missing from the weights.
    d_raw = mean_attention_distance(full, (h, w), p, renormalize=False)
    torch.testing.assert_close(d_raw, torch.tensor([[0.7 * k * p, 0.0]], dtype=torch.float64))


def test_attention_distance_uniform():
    """Uniform attention on a 2 x 2 grid: from any patch 0, p, p, p*sqrt(2) -> mean/4."""
    p = 16
    attn = _attn_with_cls(torch.full((4, 4), 0.25, dtype=torch.float64))[None, None]
    d = mean_attention_distance(attn, (2, 2), p)
    assert d.shape == (1, 1)
    assert d.item() == pytest.approx((2 * p + p * math.sqrt(2)) / 4)
    # 3 x 3 grid, computed from the definition with plain Python.
    pts = [(r, c) for r in range(3) for c in range(3)]
    expect = sum(math.dist(a, b) * p for a in pts for b in pts) / 81
    attn = _attn_with_cls(torch.full((9, 9), 1 / 9, dtype=torch.float64))[None, None]
    assert mean_attention_distance(attn, (3, 3), p).item() == pytest.approx(expect)
    assert patch_distances((1, 3), 10)[0].tolist() == [0, 10, 20]


def test_attention_shape_errors():
    with pytest.raises(ValueError, match='grid'):
        mean_attention_distance(torch.rand(1, 2, 10, 10), (4, 4), 16)


def test_head_dissimilarity():
    n = 4
    same = torch.eye(n, dtype=torch.float64).expand(3, n, n)
    assert head_dissimilarity(_attn_with_cls(same), (2, 2)).item() == pytest.approx(0.0)
    # Two heads on disjoint keys for every query: orthogonal rows -> 1.
    a = torch.zeros(2, n, n, dtype=torch.float64)
    a[0, :, 0] = 1
    a[1, :, 3] = 1
    assert head_dissimilarity(_attn_with_cls(a), (2, 2)).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match='2 heads'):
        head_dissimilarity(_attn_with_cls(a[:1]), (2, 2))


def test_capture_attention_matches_fused_attention(mmpretrain_scope):
    """The recomputed weights reproduce the layer's own (fused SDPA) attention output."""
    from mmpretrain.models.backbones.vision_transformer import TransformerEncoderLayer
    torch.manual_seed(0)
    layer = TransformerEncoderLayer(embed_dims=32, num_heads=4, feedforward_channels=64).eval()
    x = torch.randn(2, 17, 32)
    attn_mod = layer.attn
    out = {}
    handle = attn_mod.register_forward_hook(lambda m, a, o: out.setdefault('y', o))
    with capture_attention([layer]) as maps, torch.no_grad():
        layer(x)
    handle.remove()
    a = maps[0]
    assert a.shape == (2, 4, 17, 17)
    torch.testing.assert_close(a.sum(-1), torch.ones(2, 4, 17))
    with torch.no_grad():
        xin = layer.ln1(x)
        v = attn_mod.qkv(xin).reshape(2, 17, 3, 4, 8).permute(2, 0, 3, 1, 4)[2]
        y = attn_mod.proj((a @ v).transpose(1, 2).reshape(2, 17, 32))
    torch.testing.assert_close(y, out['y'], rtol=1e-4, atol=1e-5)
    assert not attn_mod._forward_pre_hooks  # hooks removed on exit
    with capture_block_outputs([layer]) as outs, torch.no_grad():
        y = layer(x)
    torch.testing.assert_close(outs[0], y)


# ---------------------------------------------------------------- linear CKA
def test_linear_cka_properties():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 12, generator=g)
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, x.double() @ q) == pytest.approx(1.0, abs=1e-10)  # orthogonal
    assert linear_cka(x, 3.7 * x) == pytest.approx(1.0, abs=1e-12)  # isotropic scaling
    assert linear_cka(x, 0.5 * x.double() @ q + 4.0) == pytest.approx(1.0, abs=1e-10)
    # ... but not to anisotropic scaling, and unrelated data score low.
    assert linear_cka(x, x * torch.linspace(0.1, 10, 12)) < 0.95
    y = torch.randn(200, 12, generator=g)
    assert linear_cka(x, y) < 0.2
    assert linear_cka(x, y) == pytest.approx(linear_cka(y, x))
    # Fewer examples than features (Gram form) gives the same value as the feature form.
    xs, ys = torch.randn(10, 40, generator=g), torch.randn(10, 30, generator=g)
    xc, yc = xs.double() - xs.double().mean(0), ys.double() - ys.double().mean(0)
    ref = (yc.T @ xc).pow(2).sum() / ((xc.T @ xc).norm() * (yc.T @ yc).norm())
    assert linear_cka(xs, ys) == pytest.approx(ref.item())
    m = cka_matrix([x, y], [x, y, 2 * x])
    assert m.shape == (2, 3)
    assert m[0, 0] == pytest.approx(1.0) and m[0, 2] == pytest.approx(1.0)
    with pytest.raises(ValueError, match='number of examples'):
        linear_cka(x, y[:10])


# ---------------------------------------------------------------- reconstruction pieces
@pytest.fixture
def tiny_deepmim(tiny_checkpoints):
    return init_encoder(*tiny_checkpoints['deepmim'], prefix=None)


def test_masked_predictions_and_pixel_reconstruction(tiny_deepmim):
    model = tiny_deepmim
    inputs = torch.randn(3, 3, IMG, IMG)
    state = torch.get_rng_state()
    r1 = masked_predictions(model, inputs, seed=5)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is untouched
    r2 = masked_predictions(model, inputs, seed=5)
    r3 = masked_predictions(model, inputs, seed=6)
    assert r1.names == ['block2', 'block4'] and r1.kind == 'pixel'
    assert torch.equal(r1.mask, r2.mask) and not torch.equal(r1.mask, r3.mask)
    assert r1.mask.shape == (3, 16) and torch.all(r1.mask.sum(1) == 12)  # 75 %
    assert r1.losses.shape == (3, 2)
    # Per-image losses average back to the model's own batch loss (equal masked counts).
    with torch.random.fork_rng():
        torch.manual_seed(5)
        batch = model.loss(inputs, [])
    torch.testing.assert_close(r1.losses.mean(0).float(),
                               torch.stack([batch['loss_block2'], batch['loss_block4']]).detach())
    # A perfect norm-pix prediction de-normalises back to the input image, loss 0.
    assert model.head.norm_pix
    perfect = model.head.construct_target(inputs)
    torch.testing.assert_close(pixel_reconstruction(model.head, inputs, perfect), inputs,
                               rtol=1e-4, atol=1e-4)
    zero = per_image_losses(model.head.loss_module, [perfect], [perfect], r1.mask)
    assert torch.all(zero == 0)


# ---------------------------------------------------------------- the tools
@pytest.fixture(scope='module')
def tiny_checkpoints(tmp_path_factory):
    """Tiny DeepMIM, MAE (mmpretrain's) and CLIP-target DeepMIM configs + checkpoints, images."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    root = tmp_path_factory.mktemp('analysis')
    out = {}
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        for name, text in (('deepmim', DEEPMIM_CFG), ('mae', MAE_CFG), ('clip', CLIP_CFG)):
            cfg_path = root / f'{name}_tiny.py'
            cfg_path.write_text(text)
            cfg = Config.fromfile(str(cfg_path))
            torch.manual_seed(0)
            model = MODELS.build(cfg.model)
            model.init_weights()
            ckpt = root / f'{name}.pth'
            torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
            out[name] = (str(cfg_path), str(ckpt))
    # 40 px images of two sizes' worth: resized + centre-cropped to 32 by the tools.
    out['images'] = write_imagenet_folder(str(root / 'images'), num_classes=2, per_class=2,
                                          size=40)
    return out


def _read_csv(path):
    with open(path, newline='') as f:
        return list(csv.DictReader(f))


def _cli(tool, *argv):
    """Run ``tools/analysis/<tool>`` as from the command line, in this process: exit status."""
    return run_main(f'tools/analysis/{tool}', *argv)


def _png(path):
    with Image.open(path) as im:
        im.load()
        return im.size, im.mode


def test_reconstruct_tool_pixel_targets(tiny_checkpoints, tmp_path, capsys):
    cfg, ckpt = tiny_checkpoints['deepmim']
    out = tmp_path / 'recon'
    assert _cli('reconstruct.py', cfg, ckpt, '--img', tiny_checkpoints['images'], '--out-dir', out,
                '--batch-size', 3, '--device', 'cpu') == 0
    assert 'wrote 4 figures' in capsys.readouterr().out
    pngs = sorted(p for p in out.iterdir() if p.suffix == '.png')
    assert len(pngs) == 4 and pngs[0].name == '0.png' and pngs[1].name == '0_1.png'
    sizes = {_png(p)[0] for p in pngs}
    assert len(sizes) == 1 and min(next(iter(sizes))) >= 200  # original, masked, 2 levels
    rows = _read_csv(out / 'reconstruction_loss.csv')
    assert list(rows[0]) == ['image', 'level', 'masked_loss']
    assert len(rows) == 4 * 2 and {r['level'] for r in rows} == {'block2', 'block4'}
    assert all(math.isfinite(float(r['masked_loss'])) and float(r['masked_loss']) > 0
               for r in rows)
    # The same seed gives the same masks and losses again.
    import reconstruct
    out2 = tmp_path / 'recon2'
    reconstruct.main([cfg, ckpt, '--img', tiny_checkpoints['images'], '--out-dir', str(out2),
                      '--batch-size', '3'])
    assert _read_csv(out2 / 'reconstruction_loss.csv') == rows
    reconstruct.main([cfg, ckpt, '--img', tiny_checkpoints['images'], '--out-dir', str(out2),
                      '--batch-size', '3', '--mask-ratio', '0.25'])  # another mask, other losses
    assert _read_csv(out2 / 'reconstruction_loss.csv') != rows
    with pytest.raises(ValueError, match=r'--mask-ratio must be in \(0, 1\), got 1.5'):
        reconstruct.main([cfg, ckpt, '--img', tiny_checkpoints['images'], '--out-dir', str(out2),
                          '--mask-ratio', '1.5'])


def test_reconstruct_tool_feature_targets(tiny_checkpoints, tmp_path):
    """With a CLIP teacher: cosine maps, and the loss (2 - 2 cos) matches the mean cosine."""
    import reconstruct  # tools/analysis is on sys.path (fixture below)
    cfg, ckpt = tiny_checkpoints['clip']
    out = tmp_path / 'recon_clip'
    reconstruct.main([cfg, ckpt, '--img', tiny_checkpoints['images'], '--out-dir', str(out),
                      '--max-images', '2'])
    rows = _read_csv(out / 'reconstruction_loss.csv')
    assert list(rows[0]) == ['image', 'level', 'masked_loss', 'masked_mean_cosine']
    assert len(rows) == 2 * 2
    for r in rows:
        assert float(r['masked_loss']) == pytest.approx(2 - 2 * float(r['masked_mean_cosine']),
                                                        abs=1e-4)
    assert len(list(out.glob('*.png'))) == 2
    # The training hook's grids for feature targets: original | masked | cosine map.
    from deepmim_mm.analysis import level_grids

    from analysis_utils import iter_batches
    model = init_encoder(cfg, ckpt, prefix=None)
    _, inputs = next(iter_batches(model, [rows[0]['image']], 1))
    result = masked_predictions(model, inputs, seed=0)
    assert result.kind == 'feature'
    grids = level_grids(model, inputs, result)
    assert len(grids) == 2 and grids[0].shape == (IMG, 3 * IMG + 2 * 2, 3)


def test_reconstruct_tool_on_mmpretrain_mae(tiny_checkpoints, tmp_path):
    """mmpretrain's own MAE (one level: the last block) goes through the same tool."""
    import reconstruct
    cfg, ckpt = tiny_checkpoints['mae']
    reconstruct.main([cfg, ckpt, '--img', tiny_checkpoints['images'], '--out-dir',
                      str(tmp_path), '--max-images', '3'])
    rows = _read_csv(tmp_path / 'reconstruction_loss.csv')
    assert [r['level'] for r in rows] == ['block3'] * 3
    assert len(list(tmp_path.glob('*.png'))) == 3


def test_attention_tool_side_by_side(tiny_checkpoints, tmp_path):
    import attention
    mae, deepmim = tiny_checkpoints['mae'], tiny_checkpoints['deepmim']
    out = tmp_path / 'attn'
    attention.main([*mae, *deepmim, '--name', 'MAE', 'DeepMIM', '--img',
                    tiny_checkpoints['images'], '--out-dir', str(out), '--batch-size', '3'])
    dist = _read_csv(out / 'attention_distance.csv')
    assert list(dist[0]) == ['model', 'block', 'head', 'mean_distance_px']
    assert len(dist) == 3 * 4 + 4 * 2  # MAE: 3 blocks x 4 heads, DeepMIM: 4 blocks x 2 heads
    # Distances lie between 0 and the farthest pair of patch centres on the 4 x 4 grid.
    assert all(0 < float(r['mean_distance_px']) < 3 * 8 * math.sqrt(2) for r in dist)
    div = _read_csv(out / 'attention_diversity.csv')
    assert list(div[0]) == ['model', 'block', 'mean_distance_px', 'distance_std_px',
                            'head_dissimilarity']
    assert [(r['model'], int(r['block'])) for r in div] == \
        [('MAE', b) for b in (1, 2, 3)] + [('DeepMIM', b) for b in (1, 2, 3, 4)]
    for r in div:
        heads = [float(d['mean_distance_px']) for d in dist
                 if d['model'] == r['model'] and d['block'] == r['block']]
        assert float(r['mean_distance_px']) == pytest.approx(sum(heads) / len(heads), rel=1e-4)
        assert 0 <= float(r['head_dissimilarity']) <= 1
    for name in ('attention_distance.png', 'attention_diversity.png'):
        size, _ = _png(out / name)
        assert size[0] > 300 and size[1] > 200


def test_layer_similarity_tool(tiny_checkpoints, tmp_path):
    mae, deepmim = tiny_checkpoints['mae'], tiny_checkpoints['deepmim']
    out = tmp_path / 'cka'
    assert _cli('layer_similarity.py', *deepmim, *mae, '--name', 'DeepMIM', 'MAE', '--img',
                tiny_checkpoints['images'], '--out-dir', out) == 0
    rows = _read_csv(out / 'layer_similarity.csv')
    assert list(rows[0]) == ['model_a', 'block_a', 'model_b', 'block_b', 'cka']
    assert len(rows) == 4 * 4 + 3 * 3 + 4 * 3
    for r in rows:
        v = float(r['cka'])
        assert -1e-9 <= v <= 1 + 1e-9
        if r['model_a'] == r['model_b'] and r['block_a'] == r['block_b']:
            assert v == pytest.approx(1.0, abs=1e-6)
    self_pairs = {(r['block_a'], r['block_b']): float(r['cka']) for r in rows
                  if r['model_a'] == r['model_b'] == 'DeepMIM'}
    assert self_pairs[('1', '3')] == pytest.approx(self_pairs[('3', '1')])  # symmetric
    for name in ('cka_DeepMIM.png', 'cka_MAE.png', 'cka_DeepMIM_vs_MAE.png'):
        size, _ = _png(out / name)
        assert size[0] > 200 and size[1] > 200


def test_mff_encoder_is_analysed_unmasked(tmp_path):
    """mmpretrain's ``MFFViT(x, mask=None)`` masks anyway: the tools must still see every token.

    An MFF checkpoint and an MAE one with the same encoder blocks (MFF's fusion is after them)
    give the same block outputs and attention distances."""
    import attention
    import layer_similarity
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    write_imagenet_folder(str(tmp_path / 'images'), num_classes=1, per_class=3, size=40)
    files = sorted(str(p) for p in (tmp_path / 'images').rglob('*.JPEG'))
    paths = {}
    for name, text in (('mff', MFF_CFG), ('mae', MAE_CFG)):
        paths[name] = str(tmp_path / f'{name}.py')
        (tmp_path / f'{name}.py').write_text(text)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        mff = MODELS.build(Config.fromfile(paths['mff']).model).state_dict()
    mae = {k: v for k, v in mff.items() if not k.startswith('backbone.proj_')}
    models = {}
    for name, state in (('mff', mff), ('mae', mae)):
        torch.save({'state_dict': state}, tmp_path / f'{name}.pth')
        models[name] = init_encoder(paths[name], str(tmp_path / f'{name}.pth'))
    assert type(models['mff'].backbone).__name__ == 'MFFViT'
    feats = {n: layer_similarity.block_features(m, files, 2, 'tokens') for n, m in models.items()}
    assert [f.shape for f in feats['mff']] == [(3 * 16, 64)] * 3  # 3 images x 16 tokens
    for a, b in zip(feats['mff'], feats['mae']):
        torch.testing.assert_close(a, b)
    dist = {n: attention.analyse(m, files, 2)[0] for n, m in models.items()}
    for a, b in zip(dist['mff'], dist['mae']):
        torch.testing.assert_close(a, b)


def test_tools_reject_bad_arguments(tiny_checkpoints, tmp_path, capsys):
    """Missing files, a mistyped --cfg-options key, and pairs that are not CONFIG CHECKPOINT."""
    import attention
    import layer_similarity
    import reconstruct

    from analysis_utils import InputError
    cfg, ckpt = tiny_checkpoints['deepmim']
    common = ['--img', tiny_checkpoints['images'], '--out-dir', str(tmp_path / 'out')]
    with pytest.raises(FileNotFoundError, match='no such file'):
        layer_similarity.main([cfg, ckpt, '--img', str(tmp_path / 'nope'), '--out-dir',
                               str(tmp_path)])
    with pytest.raises(FileNotFoundError, match=f'{tmp_path}/x.pth'):
        layer_similarity.main([cfg, ckpt, cfg, str(tmp_path / 'x.pth'), *common])
    with pytest.raises(FileNotFoundError, match='nope.py'):
        attention.main([str(tmp_path / 'nope.py'), ckpt, *common])
    with pytest.raises(FileNotFoundError, match='nopkg'):
        attention.main(['nopkg::a/b.py', ckpt, *common])
    # A mistyped override would be merged as a new key and ignored: an error naming the key,
    # from the config check or, for an argument of a class, when the class is built.
    with pytest.raises(InputError, match=r"'model\.backbone\.arch\.embed_dims'"):
        reconstruct.main([cfg, ckpt, *common, '--cfg-options',
                          'model.backbone.arch.embed_dim=32'])
    with pytest.raises(InputError, match="'backbon'"):
        reconstruct.main([cfg, ckpt, *common, '--cfg-options', 'model.backbon.img_size=64'])
    with pytest.raises(InputError, match='--name'):
        attention.main([cfg, ckpt, cfg, ckpt, '--name', 'A', *common])
    afile = tmp_path / 'afile'
    afile.write_text('x')
    for tool in (attention, layer_similarity, reconstruct):
        with pytest.raises(InputError, match=f'--out-dir {afile}'):
            tool.main([cfg, ckpt, '--img', tiny_checkpoints['images'], '--out-dir', str(afile)])
    for argv, message in (([cfg, ckpt, cfg], 'give CONFIG CHECKPOINT pairs: got 3 paths'),
                          ([ckpt, cfg], "'.*deepmim.pth' is not a config .*; the config comes "
                                        'first: CONFIG CHECKPOINT'),
                          ([cfg, ckpt] * 3, 'at most 2 CONFIG CHECKPOINT pairs, got 3')):
        with pytest.raises(SystemExit) as e:
            layer_similarity.parse_args(argv + common)
        assert e.value.code == 2
        assert re.search(message, capsys.readouterr().err)
    with pytest.raises(SystemExit):  # reconstruct.py: one pair, the config first
        reconstruct.main([ckpt, cfg, *common])
    assert 'the config comes first' in capsys.readouterr().err
    assert not (tmp_path / 'out').exists()


def test_encoder_only_checkpoint(tiny_checkpoints, tmp_path):
    """attention.py / layer_similarity.py run the encoder only: a file with just ``backbone.``
    (e.g. converted from timm) is analysed; reconstruct.py needs the decoders and says so."""
    import attention
    import reconstruct

    from analysis_utils import InputError
    cfg, ckpt = tiny_checkpoints['deepmim']
    full = torch.load(ckpt)['state_dict']
    encoder = str(tmp_path / 'encoder.pth')
    torch.save({'state_dict': {k: v for k, v in full.items() if k.startswith('backbone.')}},
               encoder)
    common = ['--img', tiny_checkpoints['images'], '--max-images', '2']
    attention.main([cfg, ckpt, cfg, encoder, '--name', 'full', 'encoder', *common, '--out-dir',
                    str(tmp_path / 'attn')])
    rows = _read_csv(tmp_path / 'attn' / 'attention_distance.csv')
    by_model = {m: [r['mean_distance_px'] for r in rows if r['model'] == m]
                for m in ('full', 'encoder')}
    assert by_model['full'] == by_model['encoder']  # the same weights, the same figures
    with pytest.raises(InputError, match=f'{encoder}.*neck'):
        reconstruct.main([cfg, encoder, *common, '--out-dir', str(tmp_path / 'recon')])
    assert not (tmp_path / 'recon').exists()


# ---------------------------------------------------------------- bad files, through the CLIs
@pytest.fixture(scope='module')
def bad_checkpoints(tiny_checkpoints, tmp_path_factory):
    """One file per class of checkpoint a tool must refuse: ``{kind: (path, config, what the
    error line must name besides the file)}``."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    from deepmim_mm.checkpoint import plugin_to_timm
    root = tmp_path_factory.mktemp('bad_checkpoints')
    cfg, ckpt = tiny_checkpoints['deepmim']
    state = torch.load(ckpt)['state_dict']
    # The same architecture, wider (96-d on the 64-d config), as a ViT-S on a ViT-T config.
    wide_cfg = root / 'wide.py'
    wide_cfg.write_text(DEEPMIM_CFG.replace('embed_dims=64', 'embed_dims=96')
                        .replace('embed_dim=64', 'embed_dim=96'))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        wide = MODELS.build(Config.fromfile(str(wide_cfg)).model).state_dict()
    nan = dict(state, **{'backbone.cls_token': torch.full_like(state['backbone.cls_token'],
                                                               float('nan'))})
    writers = {
        # as tools/model_converters/deepmim_to_timm.py writes it: a bare timm state dict
        'timm': ('blocks', lambda p: torch.save(plugin_to_timm(state)[0], p)),
        'no_backbone': ('layers', lambda p: torch.save(
            {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}, p)),
        'wider': ('backbone.cls_token', lambda p: torch.save({'state_dict': wide}, p)),
        'nan': ('cls_token', lambda p: torch.save({'state_dict': nan}, p)),  # after a divergence
        'empty': ('', lambda p: open(p, 'wb').close()),
        'text': ('', lambda p: open(p, 'w').write('epoch_20.pth\n')),
        'random_bytes': ('', lambda p: open(p, 'wb').write(random.Random(0).randbytes(4096))),
        'pickled_list': ('', lambda p: torch.save([torch.zeros(2), 'epoch', 3], p)),
        'plain_pickle': ('', lambda p: pickle.dump([1, 2, 3], open(p, 'wb'))),
    }
    out = {}
    for kind, (named, write) in writers.items():
        path = str(root / f'{kind}.pth')
        write(path)
        out[kind] = (path, cfg, named)
    return out


BAD_KINDS = ['timm', 'no_backbone', 'wider', 'nan', 'empty', 'text', 'random_bytes',
             'pickled_list', 'plain_pickle']


def _assert_refused(code, err, path, named, out):
    """Exit 1, one ``error:`` line naming the file (and ``named``), nothing written."""
    assert code == 1, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and 'Traceback' not in err, err[-3000:]
    assert path in errors[0] and named in errors[0], errors[0]
    assert [p.name for p in out.rglob('*')] == []  # no figure, no CSV


@pytest.mark.parametrize('tool, kind', [(tool, kind) for tool in ('reconstruct.py', 'attention.py')
                                        for kind in BAD_KINDS]
                         + [('layer_similarity.py', 'wider'), ('layer_similarity.py', 'text')])
def test_tools_refuse_bad_checkpoints(tool, kind, tiny_checkpoints, bad_checkpoints, tmp_path,
                                      capsys):
    """Every class of bad file, for the whole model (reconstruct.py) and for the encoder
    (attention.py; layer_similarity.py loads through the same function): the bad file alone or
    after a good pair (nothing may be analysed or written before it is refused)."""
    path, config, named = bad_checkpoints[kind]
    first = [] if tool == 'reconstruct.py' else tiny_checkpoints['deepmim']
    out = tmp_path / 'out'
    out.mkdir()
    code = _cli(tool, *first, config, path, '--img', tiny_checkpoints['images'], '--out-dir', out)
    _assert_refused(code, capsys.readouterr().err, path, named, out)


@pytest.fixture(scope='module')
def images_with_corrupt(tiny_checkpoints, tmp_path_factory):
    """The tiny images plus a zero-byte JPEG (first by name) and one that is not an image."""
    root = tmp_path_factory.mktemp('corrupt_images')
    shutil.copytree(tiny_checkpoints['images'], root / 'images')
    empty, garbage = root / 'images' / '0_empty.jpg', root / 'images' / 'class1' / 'x.jpg'
    empty.write_bytes(b'')
    garbage.write_bytes(b'GIF89a not really' * 20)
    return str(root / 'images'), str(empty), str(garbage)


@pytest.mark.parametrize('tool', ['reconstruct.py', 'attention.py', 'layer_similarity.py'])
def test_corrupt_image_is_named(tool, tiny_checkpoints, images_with_corrupt, tmp_path, capsys):
    images, empty, _ = images_with_corrupt
    out = tmp_path / 'out'
    out.mkdir()
    code = _cli(tool, *tiny_checkpoints['deepmim'], '--img', images, '--out-dir', out)
    _assert_refused(code, capsys.readouterr().err, empty, '--skip-corrupt', out)


def test_skip_corrupt_images(tiny_checkpoints, images_with_corrupt, tmp_path, capsys):
    """--skip-corrupt: a warning naming each unreadable file; the others are analysed."""
    images, empty, garbage = images_with_corrupt
    out = tmp_path / 'out'
    from mmengine.logging import MMLogger
    warnings = logging.Handler()
    warnings.emit = lambda record: warnings.__dict__.setdefault('seen', []).append(
        record.getMessage())
    # A logger of this test's own becomes the current one ('current' is the newest instance), at
    # a level that passes warnings whatever level an earlier test's logger had.
    logger = MMLogger.get_instance('test_skip_corrupt_images', log_level='WARNING')
    logger.addHandler(warnings)
    try:
        assert _cli('reconstruct.py', *tiny_checkpoints['deepmim'], '--img', images, '--out-dir',
                    out, '--skip-corrupt', '--batch-size', 3) == 0
    finally:
        logger.removeHandler(warnings)
    for path in (empty, garbage):
        assert any(f'cannot decode image {path}' in m for m in warnings.seen)
    assert 'wrote 4 figures' in capsys.readouterr().out
    rows = _read_csv(out / 'reconstruction_loss.csv')
    assert len(rows) == 4 * 2 and not {empty, garbage} & {r['image'] for r in rows}


MAE_PKG = 'mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'
# mmpretrain's MAE ViT-B config made tiny from the command line (DeiT-T encoder, 32 px).
MAE_PKG_OPTIONS = {
    'model.backbone.arch': 'deit-tiny', 'model.backbone.img_size': 32,
    'model.backbone.patch_size': 8, 'model.neck.embed_dim': 192, 'model.neck.patch_size': 8,
    'model.neck.num_patches': 16, 'model.neck.decoder_embed_dim': 32,
    'model.neck.decoder_depth': 1, 'model.neck.decoder_num_heads': 2, 'model.head.patch_size': 8,
}


def test_package_config_is_accepted(tiny_checkpoints, tmp_path, capsys):
    """``pkg::path.py`` configs (resolved in the package's .mim/configs), with --cfg-options."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    local = tmp_path / 'mae_pkg_tiny.py'  # the same model, through mmengine's own _base_
    local.write_text(f'_base_ = {MAE_PKG!r}\n')
    cfg = Config.fromfile(str(local))
    cfg.merge_from_dict(MAE_PKG_OPTIONS)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model)
    ckpt = str(tmp_path / 'mae_pkg.pth')
    torch.save({'state_dict': model.state_dict()}, ckpt)
    out = tmp_path / 'out'
    assert _cli('reconstruct.py', MAE_PKG, ckpt, '--img', tiny_checkpoints['images'], '--out-dir',
                out, '--max-images', 2, '--cfg-options',
                *[f'{k}={v}' for k, v in MAE_PKG_OPTIONS.items()]) == 0
    assert 'wrote 2 figures' in capsys.readouterr().out
    assert [r['level'] for r in _read_csv(out / 'reconstruction_loss.csv')] == ['block12'] * 2


@pytest.fixture(autouse=True)
def _tools_on_path(monkeypatch):
    monkeypatch.syspath_prepend(TOOLS)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_tools_on_cuda_match_cpu(tiny_checkpoints, tmp_path):
    import attention
    import reconstruct
    cfg, ckpt = tiny_checkpoints['deepmim']
    for device in ('cpu', 'cuda'):
        reconstruct.main([cfg, ckpt, '--img', tiny_checkpoints['images'], '--out-dir',
                          str(tmp_path / device), '--device', device])
        attention.main([cfg, ckpt, '--img', tiny_checkpoints['images'], '--out-dir',
                        str(tmp_path / device), '--device', device])
    # No masking here: the attention distances agree across devices.
    cpu, gpu = (_read_csv(tmp_path / d / 'attention_distance.csv') for d in ('cpu', 'cuda'))
    assert [float(r['mean_distance_px']) for r in gpu] == pytest.approx(
        [float(r['mean_distance_px']) for r in cpu], rel=1e-3)
    # CUDA draws other random masks than the CPU: check the losses are sane instead.
    rows = _read_csv(tmp_path / 'cuda' / 'reconstruction_loss.csv')
    assert len(rows) == 8 and all(0 < float(r['masked_loss']) < 10 for r in rows)
