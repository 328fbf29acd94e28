"""Unit tests of the pretraining models: shapes, the shared mask, masked-only losses, weights."""
import pytest
import torch
from mmpretrain.models.necks import MAEPretrainDecoder
from mmpretrain.registry import MODELS

import deepmim_mm  # noqa: F401
from deepmim_mm.models.backbones import default_supervised_blocks

pytestmark = pytest.mark.usefixtures('mmpretrain_scope')

TINY_ARCH = dict(embed_dims=64, num_layers=6, num_heads=2, feedforward_channels=128)


def tiny_cfg(out_indices=None, fusion_indices=None, level_weights=None, norm_pix=True,
             decoder_depth=1, aux_decoder_depth=None):
    return dict(
        type='DeepMIM',
        backbone=dict(type='DeepMIMViT', arch=dict(TINY_ARCH), img_size=32, patch_size=8,
                      out_indices=out_indices, fusion_indices=fusion_indices),
        neck=dict(type='MultiLevelDecoder', num_patches=16, patch_size=8, embed_dim=64,
                  decoder_embed_dim=32, decoder_depth=decoder_depth,
                  aux_decoder_depth=aux_decoder_depth, decoder_num_heads=2),
        head=dict(type='DeepMIMHead', norm_pix=norm_pix, patch_size=8,
                  level_weights=level_weights,
                  loss=dict(type='PixelReconstructionLoss', criterion='L2')))


def build(**kw):
    torch.manual_seed(0)
    model = MODELS.build(tiny_cfg(**kw))
    model.init_weights()
    return model


@pytest.mark.parametrize('depth,expected', [(12, [5, 7, 9, 11]), (24, [11, 15, 19, 23]),
                                            (32, [15, 20, 26, 31]), (6, [2, 3, 4, 5])])
def test_default_supervised_blocks(depth, expected):
    # ViT-B: blocks 6, 8, 10, 12 (1-indexed), as in DeepMIM's official code.
    assert default_supervised_blocks(depth) == expected


def test_levels_shapes_and_names():
    model = build()
    x = torch.randn(2, 3, 32, 32)
    levels, mask, ids_restore, weights = model.backbone(x)
    assert model.level_names == ['block3', 'block4', 'block5', 'block6']
    n_vis = int(16 * (1 - 0.75))
    assert [t.shape for t in levels] == [torch.Size([2, 1 + n_vis, 64])] * 4
    assert mask.shape == (2, 16) and ids_restore.shape == (2, 16)
    assert mask.sum(1).tolist() == [12.0, 12.0]
    assert weights is None
    preds = model.neck(levels, ids_restore)
    assert [p.shape for p in preds] == [torch.Size([2, 16, 8 * 8 * 3])] * 4
    losses = model.loss(x, None)
    assert list(losses) == ['loss_block3', 'loss_block4', 'loss_block5', 'loss_block6']
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())


def test_levels_are_raw_block_outputs_of_one_masked_pass():
    """Every level comes from the same masked tokens; intermediate levels are not normalised."""
    model = build(out_indices=[1, 3, 5])
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(3)
    levels, mask, ids_restore, _ = model.backbone(x)
    # Recompute by hand with the same mask.
    bb = model.backbone
    t = bb.patch_embed(x)[0] + bb.pos_embed[:, 1:, :]
    ids_keep = torch.argsort(ids_restore, dim=1)[:, :4]
    t = torch.gather(t, 1, ids_keep.unsqueeze(-1).expand(-1, -1, 64))
    t = torch.cat([(bb.cls_token + bb.pos_embed[:, :1]).expand(2, -1, -1), t], dim=1)
    outs = []
    for i, layer in enumerate(bb.layers):
        t = layer(t)
        outs.append(t)
    torch.testing.assert_close(levels[0], outs[1])
    torch.testing.assert_close(levels[1], outs[3])
    torch.testing.assert_close(levels[2], bb.ln1(outs[5]))
    # The mask is the one MAEViT draws: 1 exactly where the token was dropped.
    dropped = torch.argsort(ids_restore, dim=1)[:, 4:]
    assert torch.equal(mask.gather(1, dropped), torch.ones(2, 12))


def test_unmasked_feature_extraction_does_not_mask():
    """Upstream MFFViT masks the input even with mask=None; ours must not."""
    model = build(fusion_indices=[0, 2, 5])
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    feats1 = model.extract_feat(x)
    torch.manual_seed(123)
    feats2 = model.extract_feat(x)
    assert len(feats1) == 4
    assert all(f.shape == (2, 17, 64) for f in feats1)
    for a, b in zip(feats1, feats2):
        torch.testing.assert_close(a, b)


def test_loss_only_counts_masked_patches():
    model = build()
    x = torch.randn(2, 3, 32, 32)
    levels, mask, ids_restore, _ = model.backbone(x)
    preds = model.neck(levels, ids_restore)
    targets = model.get_targets(x, ids_restore, num_visible=levels[-1].shape[1] - 1)
    base = model.head.loss(preds, targets, mask, model.level_names)
    visible = (mask == 0).unsqueeze(-1)
    changed = [torch.where(visible, p + 100.0, p) for p in preds]
    again = model.head.loss(changed, targets, mask, model.level_names)
    for k in base:
        torch.testing.assert_close(base[k], again[k])
    masked_changed = [torch.where(visible, p, p + 1.0) for p in preds]
    moved = model.head.loss(masked_changed, targets, mask, model.level_names)
    assert all(not torch.allclose(base[k], moved[k]) for k in base)


def test_level_weights_scale_each_level():
    plain = build()
    weighted = build(level_weights=[0.5, 0.0, 2.0, 1.0])
    weighted.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    torch.manual_seed(5)
    a = plain.loss(x, None)
    torch.manual_seed(5)
    b = weighted.loss(x, None)
    for k, w in zip(a, [0.5, 0.0, 2.0, 1.0]):
        torch.testing.assert_close(b[k], a[k] * w)


def test_gradients_reach_every_decoder_and_block():
    model = build()
    losses = model.loss(torch.randn(2, 3, 32, 32), None)
    sum(losses.values()).backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, name


def test_single_level_neck_has_mae_decoder_keys():
    kw = dict(num_patches=16, patch_size=8, embed_dim=64, decoder_embed_dim=32,
              decoder_depth=2, decoder_num_heads=2)
    ours = MODELS.build(dict(type='MultiLevelDecoder', num_levels=1, **kw))
    theirs = MAEPretrainDecoder(**kw)
    assert set(ours.state_dict()) == set(theirs.state_dict())
    # One tensor in, one out: upstream's forward on the same weights.
    theirs.load_state_dict(ours.state_dict())
    x, ids = torch.randn(2, 5, 64), torch.stack([torch.randperm(16) for _ in range(2)])
    torch.testing.assert_close(ours(x, ids), theirs(x, ids))
    multi = MODELS.build(dict(type='MultiLevelDecoder', num_levels=3, aux_decoder_depth=1, **kw))
    keys = set(multi.state_dict())
    assert set(theirs.state_dict()) <= keys
    assert 'aux_decoders.1.decoder_blocks.0.attn.qkv.weight' in keys
    assert 'aux_decoders.1.decoder_blocks.1.attn.qkv.weight' not in keys


def test_aux_decoders_are_initialised():
    model = build()
    for dec in model.neck.aux_decoders:
        torch.testing.assert_close(dec.decoder_pos_embed, model.neck.decoder_pos_embed)
        assert dec.mask_token.abs().sum() > 0
    # Independent parameters, not shared modules.
    assert model.neck.aux_decoders[0].decoder_embed.weight.data_ptr() != \
        model.neck.decoder_embed.weight.data_ptr()


def test_mff_fusion_weights_logged_not_summed():
    model = build(out_indices=[5], fusion_indices=[0, 2, 5])
    losses = model.loss(torch.randn(2, 3, 32, 32), None)
    assert set(losses) == {'loss_block6', 'fusion_weight_block1', 'fusion_weight_block3',
                           'fusion_weight_block6'}
    total = sum(v for k, v in losses.items() if k.startswith('fusion'))
    torch.testing.assert_close(total, torch.tensor(1.0))
    assert not any(v.requires_grad for k, v in losses.items() if k.startswith('fusion'))
    parsed, log_vars = model.parse_losses(losses)
    torch.testing.assert_close(parsed, losses['loss_block6'])


CLIP = dict(type='CLIPTeacher', random_init=True, img_size=32,
            arch=dict(width=32, layers=1, heads=2, patch_size=8, output_dim=16))

# Every bad build configuration of the model: (changes to tiny_cfg(), what the message names);
# the last rows are upstream's own errors (mmpretrain's arch check, mmengine's registry).
BUILD_ERRORS = [
    ({'backbone.out_indices': [2, 7]}, ['out_indices', 'block 7', 'depth 6']),
    ({'backbone.out_indices': []}, ['out_indices', 'last block (5']),
    ({'backbone.out_indices': [1, 3]}, ['out_indices', 'last block (5']),
    ({'backbone.out_indices': [3, 3, 5]}, ['out_indices', 'repeated']),
    ({'backbone.fusion_indices': [0, 9]}, ['fusion_indices', 'block 9']),
    ({'backbone': dict(type='MAEViT', arch=dict(TINY_ARCH), img_size=32, patch_size=8)},
     ['backbone', 'DeepMIMViT', 'MAEViT']),
    ({'backbone.mask_ratio': 1.0}, ['mask_ratio', '(0, 1)']),
    ({'backbone.mask_ratio': 0}, ['mask_ratio', '(0, 1)']),
    ({'backbone.img_size': 36}, ['img_size 36', 'patch_size 8']),
    ({'neck.num_levels': 2}, ['neck.num_levels=2', '4 blocks']),
    ({'neck.decoder_depth': 0}, ['decoder_depth', 'positive int']),
    ({'neck.aux_decoder_depth': 0}, ['aux_decoder_depth', 'positive int']),
    ({'neck.embed_dim': 48}, ['model.neck.embed_dim=64']),
    ({'neck.num_patches': 9}, ['model.neck.num_patches=16']),
    ({'neck.predict_feature_dim': 100}, ['model.neck.predict_feature_dim=192']),
    ({'head.patch_size': 16}, ['head.patch_size=16', 'model.backbone.patch_size=8']),
    ({'head.level_weights': [1.0, 1.0]}, ['head.level_weights', '2 entries', '4']),
    ({'head.level_weights': [1.0, -1.0, 1.0, 1.0]}, ['level_weights', 'non-negative']),
    ({'target_generator': dict(CLIP, img_size=64), 'neck.predict_feature_dim': 16,
      'head.loss': dict(type='CosineFeatureLoss')}, ['img_size=32', 'student grid']),
    ({'target_generator': CLIP, 'head.loss': dict(type='CosineFeatureLoss')},
     ['model.neck.predict_feature_dim=16']),
    ({'backbone.arch': 'tiny-unknown'}, ['tiny-unknown', "'b'"], AssertionError),
    ({'target_generator': dict(type='NoSuchTeacher')}, ['NoSuchTeacher', 'registry'], KeyError),
]


@pytest.mark.parametrize('changes,named,error', [(*r, ValueError)[:3] for r in BUILD_ERRORS],
                         ids=[str(r[0]) for r in BUILD_ERRORS])
def test_bad_build_configuration_names_the_field(changes, named, error):
    cfg = tiny_cfg()
    for path, value in changes.items():
        part, key = path.split('.') if '.' in path else (None, path)
        (cfg[part] if part else cfg)[key] = value
    with pytest.raises(error) as err:
        MODELS.build(cfg)
    assert all(n in str(err.value) for n in named), (named, str(err.value))


def test_neck_levels_follow_the_backbone():
    cfg = tiny_cfg()
    del cfg['neck']['aux_decoder_depth']
    assert MODELS.build(cfg).neck.num_levels == 4


def test_feature_targets_from_a_teacher():
    cfg = tiny_cfg()
    cfg.update(target_generator=CLIP)
    cfg['neck']['predict_feature_dim'] = 16
    cfg['head']['loss'] = dict(type='CosineFeatureLoss')
    model = MODELS.build(cfg)
    losses = model.loss(torch.randn(2, 3, 32, 32), None)
    assert len(losses) == 4 and all(torch.isfinite(v) for v in losses.values())


def test_images_of_another_size_are_refused_naming_img_size():
    model = build()
    with pytest.raises(ValueError, match=r'40x40 images .*model.backbone.img_size'):
        model.loss(torch.randn(2, 3, 40, 40), None)
