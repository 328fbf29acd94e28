"""Converters in tools/model_converters/: plugin <-> timm (features match timm's own ViT) and
official MAE / DeepMIM -> plugin (decoders match the official forward), with dropped-key reports;
the converters' safety rules; publish_model.py."""
import hashlib
import os
import os.path as osp
from functools import partial

import pytest
import torch
from torch import nn

from conftest import run_main
from downstream_utils import PRETRAIN_IMG, TINY_VIT, make_pretrain_checkpoint


def _convert(capsys, script, *args):
    """Run ``tools/model_converters/<script>.py args`` in this process; returns ``(exit status,
    stdout, stderr)``."""
    capsys.readouterr()
    code = run_main(f'tools/model_converters/{script}.py', *args)
    out = capsys.readouterr()
    return code, out.out, out.err


def _ok(capsys, script, *args):
    code, out, err = _convert(capsys, script, *args)
    assert code == 0, err
    return out


def _timm_vit(**kwargs):
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    return VisionTransformer(img_size=PRETRAIN_IMG, patch_size=16,
                             embed_dim=TINY_VIT['embed_dims'], depth=TINY_VIT['num_layers'],
                             num_heads=TINY_VIT['num_heads'], mlp_ratio=4, **kwargs).eval()


def _mm_vit(**kwargs):
    from mmpretrain.models.backbones import VisionTransformer

    import deepmim_mm  # noqa: F401
    vit = VisionTransformer(arch=dict(TINY_VIT), img_size=PRETRAIN_IMG, patch_size=16, **kwargs)
    vit.eval()  # (mmpretrain's BaseBackbone.train returns None)
    return vit


def _backbone_state(state):
    return {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')
            and not k.startswith(('backbone.proj_layers.', 'backbone.proj_weights'))}


def test_plugin_to_timm_features_match_and_round_trip(tmp_path, capsys):
    src = str(tmp_path / 'pretrain.pth')
    state = make_pretrain_checkpoint(src)  # MFF: fusion layers, decoder, a teacher key
    dst = str(tmp_path / 'timm.pth')
    out = _ok(capsys, 'deepmim_to_timm', src, dst)
    # Every dropped key is listed with its reason.
    assert 'dropped (pretraining only' in out
    for key in ('backbone.proj_weights', 'backbone.proj_layers.{0-1}.weight',
                'target_generator.teacher.proj', 'neck.decoder_embed.weight'):
        assert key in out, out

    timm_state = torch.load(dst)
    timm_vit = _timm_vit(num_classes=0, global_pool='token')
    timm_vit.load_state_dict(timm_state, strict=True)
    mm_vit = _mm_vit(out_type='raw', final_norm=True)
    mm_vit.load_state_dict(_backbone_state(state), strict=True)
    x = torch.randn(2, 3, PRETRAIN_IMG, PRETRAIN_IMG)
    with torch.no_grad():
        ours = mm_vit(x)[0]
        theirs = timm_vit.forward_features(x)
    # Final-norm features: class token and every patch token.
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)

    # And back: timm -> plugin gives the original encoder tensors.
    back = str(tmp_path / 'back.pth')
    _ok(capsys, 'timm_to_deepmim', dst, back)
    back_state = torch.load(back)['state_dict']
    expected = {'backbone.' + k: v for k, v in _backbone_state(state).items()}
    assert set(back_state) == set(expected)
    for k, v in expected.items():
        torch.testing.assert_close(back_state[k], v, rtol=0, atol=0)


def test_timm_classifier_to_plugin_matches_logits(tmp_path, capsys):
    """A fine-tuned timm ViT (global average pooling, fc_norm, head) -> plugin checkpoint that
    PretrainedVisionTransformer + LinearClsHead load completely and that gives the same logits."""
    timm_vit = _timm_vit(num_classes=5, global_pool='avg')
    for p in timm_vit.parameters():  # non-trivial norms and head
        nn.init.normal_(p, std=0.1) if p.dim() < 2 else None
    src = str(tmp_path / 'timm_cls.pth')
    torch.save(timm_vit.state_dict(), src)
    dst = str(tmp_path / 'mm_cls.pth')
    _ok(capsys, 'timm_to_deepmim', src, dst)
    state = torch.load(dst)['state_dict']
    assert {'backbone.ln2.weight', 'head.fc.weight', 'head.fc.bias'} <= set(state)

    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    import deepmim_mm.classification  # noqa: F401
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        backbone = MODELS.build(dict(
            type='PretrainedVisionTransformer', arch=dict(TINY_VIT), img_size=PRETRAIN_IMG,
            out_type='avg_featmap', final_norm=False,
            init_cfg=dict(type='Pretrained', checkpoint=dst, prefix='backbone.')))
    backbone.init_weights()
    backbone.eval()
    assert backbone.pretrain_report.new == []  # ln2 came from timm's fc_norm
    fc = nn.Linear(TINY_VIT['embed_dims'], 5)
    fc.load_state_dict({'weight': state['head.fc.weight'], 'bias': state['head.fc.bias']})
    x = torch.randn(2, 3, PRETRAIN_IMG, PRETRAIN_IMG)
    with torch.no_grad():
        torch.testing.assert_close(fc(backbone(x)[0]), timm_vit(x), atol=1e-5,
                                   rtol=1e-5)


def test_unmapped_keys_are_an_error_unless_allowed(tmp_path, capsys):
    src = str(tmp_path / 'pretrain.pth')
    state = make_pretrain_checkpoint(src)
    state['backbone.extra_adapter.weight'] = torch.zeros(3)
    odd = str(tmp_path / 'odd.pth')
    torch.save({'state_dict': state}, odd)
    dst = str(tmp_path / 'timm.pth')
    code, out, err = _convert(capsys, 'deepmim_to_timm', odd, dst)
    assert code == 1 and '--allow-drop' in err and not osp.exists(dst)
    assert 'dropped (unmapped, 1 keys): backbone.extra_adapter.weight' in out
    out = _ok(capsys, 'deepmim_to_timm', odd, dst, '--allow-drop')
    assert 'backbone.extra_adapter.weight' in out and osp.isfile(dst)


class _OfficialDecoders(nn.Module):
    """The decoders of the official MAE / DeepMIM ``MaskedAutoencoderViT`` (timm blocks): one set
    of unsuffixed names (MAE) or ``num`` numbered sets with a shared position embedding."""

    def __init__(self, num, embed_dim=64, dim=32, depth=1, heads=2, pred=768, patches=9):
        from timm.models.vision_transformer import Block
        super().__init__()
        norm = partial(nn.LayerNorm, eps=1e-6)
        sfx = [''] if num is None else [str(k) for k in range(1, num + 1)]
        self.sfx = sfx
        self.decoder_pos_embed = nn.Parameter(torch.randn(1, patches + 1, dim))
        for s in sfx:
            setattr(self, 'decoder_embed' + s, nn.Linear(embed_dim, dim))
            setattr(self, 'mask_token' + s, nn.Parameter(torch.randn(1, 1, dim)))
            setattr(self, 'decoder_blocks' + s, nn.ModuleList(
                Block(dim, heads, 4, qkv_bias=True, norm_layer=norm) for _ in range(depth)))
            setattr(self, 'decoder_norm' + s, norm(dim))
            setattr(self, 'decoder_pred' + s, nn.Linear(dim, pred))

    def forward_decoder(self, s, x, ids_restore):  # official models_mae.forward_decoder{s}
        x = getattr(self, 'decoder_embed' + s)(x)
        mask_tokens = getattr(self, 'mask_token' + s).repeat(
            x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1) + self.decoder_pos_embed
        for blk in getattr(self, 'decoder_blocks' + s):
            x = blk(x)
        return getattr(self, 'decoder_pred' + s)(getattr(self, 'decoder_norm' + s)(x))


@pytest.mark.parametrize('num_decoders', [None, 4], ids=['mae', 'deepmim'])
def test_official_to_plugin(tmp_path, num_decoders, capsys):
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    import deepmim_mm  # noqa: F401
    torch.manual_seed(0)
    encoder = _timm_vit(num_classes=0, global_pool='token')
    decoders = _OfficialDecoders(num_decoders).eval()
    model = dict(encoder.state_dict(), **decoders.state_dict())
    src = str(tmp_path / 'official.pth')
    torch.save({'model': model, 'epoch': 1599, 'args': None}, src)
    dst = str(tmp_path / 'plugin.pth')
    out = _ok(capsys, 'official_to_deepmim', src, dst)
    assert 'dropped' not in out and 'auxiliary' in out, out
    state = torch.load(dst)['state_dict']

    # Encoder: the plugin's classification backbone loads all of it.
    mm_vit = _mm_vit(out_type='raw', final_norm=True)
    mm_vit.load_state_dict(_backbone_state(state), strict=True)
    x = torch.randn(2, 3, PRETRAIN_IMG, PRETRAIN_IMG)
    with torch.no_grad():
        torch.testing.assert_close(mm_vit(x)[0], encoder.forward_features(x), atol=1e-5,
                                   rtol=1e-5)

    # Decoders: MAEPretrainDecoder (MAE) / MultiLevelDecoder (DeepMIM) load them strictly and
    # give the official outputs.
    levels = 1 if num_decoders is None else num_decoders
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        neck = MODELS.build(dict(
            type='MultiLevelDecoder', num_levels=levels, num_patches=9, patch_size=16,
            in_chans=3, embed_dim=64, decoder_embed_dim=32, decoder_depth=1,
            decoder_num_heads=2, mlp_ratio=4)).eval()
    neck_state = {k[len('neck.'):]: v for k, v in state.items() if k.startswith('neck.')}
    neck.load_state_dict(neck_state, strict=True)
    latents = [torch.randn(2, 1 + 2, 64) for _ in range(levels)]
    ids_restore = torch.stack([torch.randperm(9) for _ in range(2)])
    with torch.no_grad():
        preds = neck(latents, ids_restore)
        for pred, latent, s in zip(preds, latents, decoders.sfx):
            # (MAEPretrainDecoder drops the class token's prediction, the official code later)
            official = decoders.forward_decoder(s, latent, ids_restore)[:, 1:]
            torch.testing.assert_close(pred, official, atol=1e-5, rtol=1e-5)


def test_official_unmapped_key_is_reported(tmp_path, capsys):
    encoder = _timm_vit(num_classes=0, global_pool='token')
    model = dict(encoder.state_dict(), teacher_proj=torch.zeros(2))
    src = str(tmp_path / 'official.pth')
    torch.save({'model': model}, src)
    out = _ok(capsys, 'official_to_deepmim', src, tmp_path / 'o.pth', '--allow-drop')
    assert 'dropped (unmapped, 1 keys): teacher_proj' in out


# ------------------------------------------------------------------------------------------------
# Safety: no overwritten input, no near-empty output, atomic writes with the umask's mode
# ------------------------------------------------------------------------------------------------
def _sha(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
    """One valid input per converter: plugin, timm and official checkpoints (read only)."""
    root = tmp_path_factory.mktemp('inputs')
    plugin, timm_file, official = (str(root / n) for n in ('plugin.pth', 'timm.pth',
                                                           'official.pth'))
    make_pretrain_checkpoint(plugin)
    torch.save(_timm_vit(num_classes=0).state_dict(), timm_file)
    torch.save({'model': dict(_timm_vit(num_classes=0).state_dict(),
                              **_OfficialDecoders(None).state_dict())}, official)
    return {'deepmim_to_timm': plugin, 'timm_to_deepmim': timm_file,
            'official_to_deepmim': official}


def test_bad_arguments_are_one_error_line_naming_them(inputs, tmp_path, capsys):
    """DST is SRC (path, symlink, hard link), an existing file (without --force) or a directory,
    SRC missing or no checkpoint: exit status 1, one error line naming the path, nothing
    written, the input unchanged; DST is checked before SRC is read."""
    other = str(tmp_path / 'other_run.pth')
    make_pretrain_checkpoint(other, seed=3)
    text, adir, out = tmp_path / 'notes.txt', tmp_path / 'adir', str(tmp_path / 'x.pth')
    text.write_text('not a checkpoint\n')
    adir.mkdir()
    before = {p: _sha(p) for p in [other, *inputs.values()]}
    for script, src in inputs.items():
        symlink, hardlink = (str(tmp_path / f'{script}_{k}.pth') for k in ('sym', 'hard'))
        os.symlink(src, symlink)
        os.link(src, hardlink)
        for bad_src, dst, named in [
                (src, src, f'the output {src} is the input'),
                (src, symlink, f'the output {symlink} is the input'),
                (src, hardlink, f'the output {hardlink} is the input'),
                (src, other, f'dst: {other} exists; pass --force'),
                (src, adir, f'dst: {adir} is a directory'),
                (text, out, f'src: not a checkpoint: {text}'),
                (tmp_path / 'missing.pth', out, f'src: checkpoint not found: {tmp_path}')]:
            code, _, err = _convert(capsys, script, bad_src, dst, '--allow-drop')
            assert code == 1 and err.startswith('error: ') and named in err, (script, err)
            assert len(err.strip().splitlines()) == 1 and 'encoder tensors converted' not in err
    assert {p: _sha(p) for p in before} == before
    assert not osp.exists(out) and not list(adir.iterdir())
    code, _, err = _convert(capsys, 'publish_model', text, tmp_path / 'pub.pth')
    assert code == 1 and str(text) in err
    _ok(capsys, 'deepmim_to_timm', inputs['deepmim_to_timm'], other, '--force')
    assert _sha(other) != before[other]
    help_text = _ok(capsys, 'timm_to_deepmim', '-h')
    assert 'fewer than half of the input' in ' '.join(help_text.split())


@pytest.fixture(scope='module')
def formats(inputs, tmp_path_factory):
    """One file per checkpoint format the converters tell apart."""
    root = tmp_path_factory.mktemp('formats')
    mff = torch.load(inputs['deepmim_to_timm'])['state_dict']
    files = {'mff': inputs['deepmim_to_timm'], 'timm': inputs['timm_to_deepmim'],
             'official': inputs['official_to_deepmim']}
    for fmt, state in [
            ('plugin', {k: v for k, v in mff.items() if 'proj_' not in k}),
            ('encoder', {k[len('backbone.'):]: v for k, v in mff.items()
                         if k.startswith('backbone.layers.')}),
            ('clip', {'visual.conv1.weight': torch.zeros(8, 3, 16, 16),
                      'visual.class_embedding': torch.zeros(8),
                      'token_embedding.weight': torch.zeros(10, 8)})]:
        files[fmt] = str(root / f'{fmt}.pth')
        torch.save({'state_dict': state}, files[fmt])
    return files


# (converter, input format, what the error names; None: the converter reads it)
FORMAT_CASES = [
    ('deepmim_to_timm', 'plugin', None),
    ('deepmim_to_timm', 'mff', None),
    ('deepmim_to_timm', 'timm', 'already has the timm names'),
    ('deepmim_to_timm', 'official', 'already has the timm names'),
    ('deepmim_to_timm', 'clip', 'model.target_generator.checkpoint'),
    ('deepmim_to_timm', 'encoder', 'no converter here reads it'),
    ('timm_to_deepmim', 'plugin', 'already has the plugin names'),
    ('timm_to_deepmim', 'mff', 'already has the plugin names'),
    ('timm_to_deepmim', 'timm', None),
    ('timm_to_deepmim', 'official', 'convert it with tools/model_converters/official_to_deepmim'),
    ('timm_to_deepmim', 'clip', 'model.target_generator.checkpoint'),
    ('timm_to_deepmim', 'encoder', 'already has the plugin names'),
    ('official_to_deepmim', 'plugin', 'already has the plugin names'),
    ('official_to_deepmim', 'mff', 'already has the plugin names'),
    ('official_to_deepmim', 'timm', None),  # the official encoder-only releases
    ('official_to_deepmim', 'official', None),
    ('official_to_deepmim', 'clip', 'model.target_generator.checkpoint'),
    ('official_to_deepmim', 'encoder', 'already has the plugin names'),
]


@pytest.mark.parametrize('script,fmt,named', FORMAT_CASES,
                         ids=[f'{s}-{f}' for s, f, _ in FORMAT_CASES])
def test_every_converter_names_the_format_it_does_not_read(formats, tmp_path, capsys,
                                                           script, fmt, named):
    """Every converter on every format: it converts the ones it reads; on any other it exits
    with one line naming the file, what it is and what to do instead, --allow-drop or not."""
    from deepmim_mm.checkpoint.loading import CHECKPOINT_FORMATS
    dst = tmp_path / 'out.pth'
    code, _, err = _convert(capsys, script, formats[fmt], dst, '--allow-drop')
    if named is None:
        assert code == 0 and dst.is_file(), err
        return
    first = f'error: src: {formats[fmt]} is {CHECKPOINT_FORMATS[fmt]}: '
    assert code == 1 and err.startswith(first) and named in err, err
    assert len(err.strip().splitlines()) == 1 and not dst.exists()


def test_converters_refuse_empty_or_near_empty_results(inputs, tmp_path, capsys):
    dst = str(tmp_path / 'out.pth')
    state = torch.load(inputs['deepmim_to_timm'])['state_dict']
    # Most of the encoder under foreign names: more than half dropped; no encoder at all.
    mostly_foreign = {k.replace('.layers.', '.adapter_layers.'): v for k, v in state.items()}
    neck_only = {k: v for k, v in state.items() if k.startswith('neck.')}
    for name, bad, named in [('foreign', mostly_foreign, 'at least one and half are required'),
                             ('neck_only', neck_only, '0 of its 0 encoder tensors converted')]:
        path = str(tmp_path / f'{name}.pth')
        torch.save({'state_dict': bad}, path)
        code, _, err = _convert(capsys, 'deepmim_to_timm', path, dst, '--allow-drop')
        assert code == 1 and named in err and path in err
    assert not osp.exists(dst)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith('.tmp')]


@pytest.mark.parametrize('umask', [0o022, 0o002])
def test_output_mode_honours_the_umask(inputs, tmp_path, umask, capsys):
    old = os.umask(umask)
    try:
        for dst in ('timm.pth', 'timm.safetensors'):
            _ok(capsys, 'deepmim_to_timm', inputs['deepmim_to_timm'], tmp_path / dst, '--force')
            assert os.stat(tmp_path / dst).st_mode & 0o777 == 0o666 & ~umask
    finally:
        os.umask(old)


def test_failed_write_keeps_the_previous_output(inputs, tmp_path, capsys, monkeypatch):
    """A write that fails (here: fsync reports a full disk) leaves the previous output intact
    and no temporary file."""
    import errno
    src = inputs['deepmim_to_timm']
    dst = str(tmp_path / 'converted.pth')
    _ok(capsys, 'deepmim_to_timm', src, dst)
    before = _sha(dst)

    def full_disk(fd):
        raise OSError(errno.ENOSPC, 'No space left on device')
    monkeypatch.setattr(os, 'fsync', full_disk)
    with pytest.raises(OSError, match='no space left on device'):
        _convert(capsys, 'deepmim_to_timm', src, dst, '--layout', 'mae', '--force')
    monkeypatch.undo()
    assert _sha(dst) == before
    assert sorted(p.name for p in tmp_path.iterdir() if 'converted' in p.name) == ['converted.pth']


def test_mae_layout_loads_as_the_official_finetuning_script_does(tmp_path, capsys):
    """--layout mae: ``checkpoint['model']`` as facebookresearch/mae / OliverRensu/DeepMIM
    main_finetune.py read it: strict=False into a global-pool ViT, whose missing keys must be
    exactly the new classifier and fc_norm (their assertion), every encoder weight loaded."""
    src = str(tmp_path / 'pretrain.pth')
    state = make_pretrain_checkpoint(src)
    dst = str(tmp_path / 'official_ft_input.pth')
    _ok(capsys, 'deepmim_to_timm', src, dst, '--layout', 'mae')
    checkpoint = torch.load(dst, map_location='cpu')
    assert set(checkpoint) == {'model'}
    model = _timm_vit(num_classes=5, global_pool='avg')
    msg = model.load_state_dict(checkpoint['model'], strict=False)
    assert set(msg.missing_keys) == {'head.weight', 'head.bias', 'fc_norm.weight',
                                     'fc_norm.bias'}
    assert msg.unexpected_keys == ['norm.weight', 'norm.bias']  # no final norm with global pool
    torch.testing.assert_close(model.blocks[1].attn.qkv.weight,
                               state['backbone.layers.1.attn.qkv.weight'])
    code, _, err = _convert(capsys, 'deepmim_to_timm', src, tmp_path / 'x.safetensors',
                            '--layout', 'mae')
    assert code == 1 and "'model' layout needs a .pth" in err


# ------------------------------------------------------------------------------------------------
# publish_model.py
# ------------------------------------------------------------------------------------------------
def test_publish_model_loads_with_weights_only_without_the_plugin(tmp_path, capsys):
    """A real training checkpoint (the demo config, one short epoch: optimizer, message hub,
    schedulers, RNG states) -> <name>-<sha8>.pth that a fresh interpreter loads with
    weights_only=True without importing deepmim_mm or mmengine; weights unchanged."""
    import subprocess
    import sys
    work = tmp_path / 'work'
    demo = 'configs/pretrain/deepmim_vit-tiny-p16_1xb8-coslr-20e_demo.py'
    assert run_main('tools/train.py', demo, '--work-dir', work, '--cfg-options',
                    'train_cfg.max_epochs=1', 'train_dataloader.dataset.times=1',
                    'train_dataloader.dataset.dataset.indices=8',  # one iteration
                    'train_dataloader.num_workers=0', 'custom_hooks.0.enable=False') == 0
    ckpt = str(work / 'epoch_1.pth')
    out = _ok(capsys, 'publish_model', ckpt, tmp_path / 'pub' / 'demo.pth')
    (final, ) = [p for p in (tmp_path / 'pub').iterdir()]
    assert final.name == f'demo-{hashlib.sha256(final.read_bytes()).hexdigest()[:8]}.pth'
    assert f'wrote {final}' in out
    for key in ('optimizer', 'message_hub', 'param_schedulers', 'rng_state'):
        assert key in out.split('dropped: ')[1].splitlines()[0]
    assert final.stat().st_size < osp.getsize(ckpt) / 2  # no AdamW moments

    check = ('import sys, torch\n'
             f'ck = torch.load({str(final)!r}, weights_only=True)\n'
             "assert not [m for m in sys.modules if m.startswith(('deepmim_mm', 'mmengine'))]\n"
             "print(sorted(ck), ck['meta']['epoch'], len(ck['state_dict']))\n")
    out = subprocess.run([sys.executable, '-c', check], capture_output=True, text=True,
                         cwd=str(tmp_path), env={'PATH': '/usr/bin:/bin'})
    assert out.returncode == 0, out.stderr
    original = torch.load(ckpt, map_location='cpu', weights_only=False)['state_dict']
    assert out.stdout.split() == ["['meta',", "'state_dict']", '1', str(len(original))]
    published = torch.load(str(final), weights_only=True)['state_dict']
    assert published.keys() == original.keys()
    for k, v in original.items():
        assert torch.equal(published[k], v), k


def test_publish_model_drops_keys_weights_only_refuses(tmp_path, capsys):
    """A dict key that is not a str or int (a numpy integer) would make the published file
    unloadable with weights_only=True: it is dropped and listed."""
    import numpy as np
    src = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': {'w': torch.ones(1)},
                'meta': {'epoch': 1, 'per_class': {np.int64(3): 0.5, 'a': 1}}}, src)
    out = _ok(capsys, 'publish_model', src, tmp_path / 'pub' / 'x.pth')
    assert 'meta.per_class[np.int64(3)]' in out.split('dropped: ')[1]
    (final, ) = (tmp_path / 'pub').iterdir()
    assert torch.load(str(final), weights_only=True)['meta'] == {'epoch': 1, 'per_class': {'a': 1}}
