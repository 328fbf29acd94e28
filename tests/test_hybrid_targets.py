"""MAEHybridTarget: alpha mixing, the student's visible patches, checkpoints, errors, frozen."""
import json
import logging
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from mmengine.logging import HistoryBuffer, MessageHub, MMLogger
from mmengine.model import MMDistributedDataParallel, MMFullyShardedDataParallel
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope
from mmengine.runner.checkpoint import get_state_dict
from mmpretrain.registry import MODELS

import deepmim_mm  # noqa: F401
from deepmim_mm.models.target_generators import MAEHybridTarget
from deepmim_mm.models.target_generators.mae_hybrid_target import DEFAULT_ALPHAS

from conftest import free_port, perturb_weights

pytestmark = pytest.mark.usefixtures('mmpretrain_scope')

IMG, PATCH, N, PIX = 32, 8, 16, 8 * 8 * 3
ARCH = dict(embed_dims=32, num_layers=3, num_heads=2, feedforward_channels=64)
ENCODER = dict(arch=ARCH, img_size=IMG, patch_size=PATCH)
ARCH2 = dict(ARCH, num_layers=2)  # the mmpretrain MAE teacher file has 2 blocks
ENC2 = dict(ENCODER, arch=ARCH2)
DECODER = dict(num_patches=N, patch_size=PATCH, embed_dim=32, decoder_embed_dim=16,
               decoder_depth=1, decoder_num_heads=2)
HEAD = dict(type='DeepMIMHead', norm_pix=True, patch_size=PATCH,
            loss=dict(type='PixelReconstructionLoss', criterion='L2'))


def _perturb(model: nn.Module, seed: int = 0) -> nn.Module:
    return perturb_weights(model, seed, embeddings=('token', 'proj_weights')).eval()


def _save(model: nn.Module, path, message_hub: bool = False) -> str:
    ckpt = {'meta': {'epoch': 1}, 'state_dict': get_state_dict(model)}
    if message_hub:  # as mmengine's Runner writes it: HistoryBuffer objects in the pickle
        hub = MessageHub('hybrid-test')
        hub.update_scalar('train/loss', 1.5)
        assert isinstance(hub.log_scalars['train/loss'], HistoryBuffer)
        ckpt['message_hub'] = hub.state_dict()
    torch.save(ckpt, path)
    return str(path)


def _mmpretrain_mae(seed=0, arch=ARCH, mff_blocks=None):
    """mmpretrain's own MAE (or MFF) with a tiny encoder and decoder."""
    torch.manual_seed(seed)
    if mff_blocks is None:
        backbone = dict(type='MAEViT', arch=arch, img_size=IMG, patch_size=PATCH)
        kind = 'MAE'
    else:
        backbone = dict(type='MFFViT', arch=arch, img_size=IMG, patch_size=PATCH,
                        out_indices=mff_blocks)
        kind = 'MFF'
    model = MODELS.build(dict(
        type=kind, backbone=backbone, neck=dict(type='MAEPretrainDecoder', **DECODER),
        head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=PATCH,
                  loss=dict(type='PixelReconstructionLoss', criterion='L2'))))
    model.init_weights()
    return _perturb(model, seed)


def _student(out_indices=(1, 2), img_size=IMG, teacher=None, seed=0, mask_ratio=0.75):
    torch.manual_seed(seed)
    model = MODELS.build(dict(
        type='DeepMIM',
        backbone=dict(type='DeepMIMViT', arch=ARCH, img_size=img_size, patch_size=PATCH,
                      out_indices=list(out_indices), mask_ratio=mask_ratio),
        neck=dict(type='MultiLevelDecoder', **dict(DECODER, num_patches=(img_size // PATCH)**2)),
        head=HEAD,
        target_generator=teacher))
    model.init_weights()
    return model


def _teacher(checkpoint=None, **kwargs):
    kwargs.setdefault('encoder', ENCODER)
    kwargs.setdefault('decoder', DECODER)
    if checkpoint is None:
        kwargs.setdefault('random_init', True)
    return MAEHybridTarget(checkpoint=checkpoint, **kwargs)


def _images(b=2, seed=0):
    return torch.randn(b, 3, IMG, IMG, generator=torch.Generator().manual_seed(seed))


def _mask(b=2, visible=N // 4):
    """A random student mask as MAEViT.random_masking draws it: (ids_keep, ids_restore)."""
    ids_shuffle = torch.stack([torch.randperm(N) for _ in range(b)])
    return ids_shuffle[:, :visible], torch.argsort(ids_shuffle, dim=1)


def _recon(teacher, x, ids_restore):
    """The teacher's reconstruction for the student's mask that ``ids_restore`` describes (the
    visible count from the student's mask ratio, 0.75)."""
    return teacher(x, torch.argsort(ids_restore, dim=1)[:, :N // 4], ids_restore)


@pytest.fixture(scope='module')
def mae_ckpt(tmp_path_factory):
    model = _mmpretrain_mae(arch=ARCH2)
    path = _save(model, tmp_path_factory.mktemp('mae') / 'mae_tiny.pth')
    return model, path


# ---------------------------------------------------------------------------------- mixing
def test_alpha_mixing_exact_values():
    teacher = _teacher(alphas=(0.0, 0.25, 0.5, 1.0))
    raw = torch.full((1, 2, 3), 4.0)
    recon = torch.full((1, 2, 3), 8.0)
    recon[0, 1] = -8.0
    out = teacher.mix(raw, recon)
    assert 'alphas=(0.0, 0.25, 0.5, 1.0)' in repr(teacher)
    assert len(out) == 5 and out[-1] is raw
    expected_first_token = [8.0, 7.0, 6.0, 4.0]  # a*4 + (1-a)*8
    expected_second_token = [-8.0, -5.0, -2.0, 4.0]  # a*4 + (1-a)*(-8)
    for t, e1, e2 in zip(out[:4], expected_first_token, expected_second_token):
        assert torch.equal(t[0, 0], torch.full((3, ), e1))
        assert torch.equal(t[0, 1], torch.full((3, ), e2))

    # The defaults: alpha = 0, 1/3, 2/3 for the three auxiliary levels, raw for the last.
    assert DEFAULT_ALPHAS == (0.0, 1 / 3, 2 / 3)
    out = _teacher().mix(torch.full((1, 1, 2), 3.0), torch.full((1, 1, 2), 6.0))
    assert [t[0, 0, 0].item() for t in out] == pytest.approx([6.0, 5.0, 4.0, 3.0])

    # Low-precision reconstructions (autocast) are mixed in the raw target's dtype.
    out = teacher.mix(raw, recon.bfloat16())
    assert all(t.dtype == torch.float32 for t in out)


def test_reconstruction_is_frozen(mae_ckpt):
    teacher = _teacher(mae_ckpt[1], encoder=ENC2)
    recon = teacher(_images().requires_grad_(True), *_mask())
    assert recon.shape == (2, N, PIX) and not recon.requires_grad


# ---------------------------------------------------------------------------------- same mask
def test_identical_teacher_reproduces_student_final_prediction(tmp_path):
    """A teacher made of the student's own encoder and final decoder (loaded from the student's
    DeepMIM checkpoint, auxiliary decoders dropped) reconstructs exactly what the student's final
    level predicts for the same mask."""
    student = _perturb(_student(seed=1), seed=1)
    path = _save(student, tmp_path / 'deepmim.pth', message_hub=True)
    logger = MMLogger.get_current_instance()
    records, level = [], logger.level
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        teacher = _teacher(path, alphas=(0.5, ))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    # The auxiliary decoders' keys are dropped and reported.
    assert any('dropped' in r.getMessage() and 'neck.aux_decoders.0.' in r.getMessage()
               for r in records)
    x = _images(3, seed=2)
    with torch.no_grad():
        torch.manual_seed(5)
        levels, mask, ids_restore, _ = student.backbone(x)
        preds = student.neck(levels, ids_restore)
    recon = _recon(teacher, x, ids_restore)
    assert recon.shape == preds[-1].shape == (3, N, PIX)
    torch.testing.assert_close(recon, preds[-1], rtol=1e-5, atol=1e-5)
    # ... and not what the auxiliary level predicts (the aux decoder was not loaded).
    assert not torch.allclose(recon, preds[0], atol=1e-2)


def test_teacher_sees_only_the_visible_patches(mae_ckpt):
    """Manual check: changing masked patches leaves x_hat unchanged, changing one visible patch
    changes it; a fresh mask changes it too."""
    _, path = mae_ckpt
    teacher = _teacher(path, encoder=ENC2)
    x = _images()
    torch.manual_seed(0)
    keep, ids_restore = _mask()
    visible = torch.zeros(2, N, dtype=torch.bool)
    visible.scatter_(1, keep, True)
    ref = teacher(x, keep, ids_restore)

    patch_mask = visible.view(2, 1, IMG // PATCH, 1, IMG // PATCH, 1).expand(
        2, 3, IMG // PATCH, PATCH, IMG // PATCH, PATCH).reshape(2, 3, IMG, IMG)
    noise = torch.randn_like(x) * 5
    masked_changed = torch.where(patch_mask, x, noise)
    torch.testing.assert_close(teacher(masked_changed, keep, ids_restore), ref)
    visible_changed = torch.where(patch_mask, noise, x)
    assert not torch.allclose(teacher(visible_changed, keep, ids_restore), ref, atol=1e-3)


def test_mmpretrain_mae_and_mff_checkpoints_match_upstream(mae_ckpt, tmp_path):
    """mmpretrain's MAE (and MFF) checkpoints load as teachers; for the same mask the teacher's
    x_hat is exactly mmpretrain's own decoder output."""
    mae, path = mae_ckpt
    teacher = _teacher(path, encoder=ENC2)
    x = _images(2, seed=3)
    with torch.no_grad():
        torch.manual_seed(7)
        latent, _, ids_restore = mae.backbone(x)
        ref = mae.neck(latent, ids_restore)
    torch.testing.assert_close(_recon(teacher, x, ids_restore), ref, rtol=1e-5, atol=1e-5)

    mff = _mmpretrain_mae(seed=4, mff_blocks=[0, 2])
    mff_path = _save(mff, tmp_path / 'mff.pth')
    with pytest.raises(ValueError, match='fusion_indices=None.*backbone.proj_weights'):
        _teacher(mff_path)
    teacher = _teacher(mff_path, encoder=dict(ENCODER, fusion_indices=[0, 2]))
    with torch.no_grad():
        torch.manual_seed(8)
        latent, _, ids_restore, _ = mff.backbone(x)
        ref = mff.neck(latent, ids_restore)
    torch.testing.assert_close(_recon(teacher, x, ids_restore), ref, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------- in DeepMIM
def test_in_deepmim_frozen_not_saved_not_optimised(mae_ckpt):
    _, path = mae_ckpt
    teacher_cfg = dict(type='MAEHybridTarget', checkpoint=path, alphas=(0.0, ),
                       encoder=ENC2, decoder=DECODER)
    model = _student(teacher=teacher_cfg, mask_ratio=0.5)  # the teacher follows the student's
    teacher = model.target_generator
    assert isinstance(teacher, MAEHybridTarget)
    before = {k: v.clone() for k, v in teacher.encoder.state_dict().items()}

    # Not in the checkpoint, not in the optimizer, never trained, untouched by init_weights.
    keys = list(get_state_dict(model))
    assert keys and not any('target_generator' in k for k in keys)
    model.load_state_dict(model.state_dict(), strict=True)
    optim = build_optim_wrapper(model, dict(
        optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
        paramwise_cfg=dict(norm_decay_mult=0.0))).optimizer
    in_optim = {id(p) for g in optim.param_groups for p in g['params']}
    assert len(in_optim) == sum(1 for p in model.parameters() if p.requires_grad)
    frozen = list(teacher.encoder.parameters()) + list(teacher.decoder.parameters())
    assert not any(id(p) in in_optim or p.requires_grad for p in frozen)
    model.init_weights()
    model.train()
    assert not teacher.training and not teacher.encoder.training and not teacher.decoder.training
    for k, v in teacher.encoder.state_dict().items():
        assert torch.equal(v, before[k]), k

    # The loss: one per level; block2 is scored against the teacher's x_hat (alpha 0).
    x = _images(2, seed=4)
    torch.manual_seed(3)
    losses = model.loss(x, [])
    assert set(losses) == {'loss_block2', 'loss_block3'}
    sum(losses.values()).backward()
    assert all(p.grad is None for p in frozen)
    assert model.neck.aux_decoders[0].decoder_pred.weight.grad is not None

    torch.manual_seed(3)
    levels, mask, ids_restore, _ = model.backbone(x)
    preds = model.neck(levels, ids_restore)
    x_hat = teacher(x, torch.argsort(ids_restore, dim=1)[:, :N // 2], ids_restore)
    expected = ((preds[0] - x_hat)**2).mean(-1)
    expected = (expected * mask).sum() / mask.sum()
    torch.testing.assert_close(losses['loss_block2'], expected)

    # Moves and casts with the model.
    model.to(torch.float64)
    assert teacher.encoder.pos_embed.dtype == torch.float64
    assert teacher.decoder.decoder_pred.weight.dtype == torch.float64


def _wrapped_steps(rank, port, out):
    """One of two gloo processes: DeepMIM with a hybrid teacher, two steps under DDP and FSDP."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    dist.init_process_group('gloo', rank=rank, world_size=2)
    DefaultScope.get_instance(f'gloo-{rank}', scope_name='mmpretrain')
    results = {}
    for kind in ('ddp', 'fsdp'):
        model = _student(teacher=dict(type='MAEHybridTarget', random_init=True, alphas=(0.5, ),
                                      encoder=ENCODER, decoder=DECODER))
        teacher = {k: v.clone() for k, v in model.target_generator.encoder.state_dict().items()}
        wrapped = (MMDistributedDataParallel(module=model) if kind == 'ddp' else
                   MMFullyShardedDataParallel(module=model, device_id=torch.device('cpu')))
        for step in range(2):  # DDP reports unused parameters at the second step
            sum(wrapped(_images(seed=2 * rank + step), [], mode='loss').values()).backward()
        results[kind] = dict(
            saved=[k for k in wrapped.state_dict() if 'target_generator' in k],
            unchanged=all(torch.equal(v, teacher[k])
                          for k, v in model.target_generator.encoder.state_dict().items()))
    with open(os.path.join(out, f'rank{rank}.json'), 'w') as f:
        json.dump(results, f)
    dist.destroy_process_group()


def test_teacher_under_gloo_ddp_and_fsdp(tmp_path):
    """Two gloo processes: the (hidden, frozen) teacher trains nothing, saves nothing and raises
    no unused-parameter error under mmengine's DDP and FSDP wrappers."""
    mp.spawn(_wrapped_steps, args=(free_port(), str(tmp_path)), nprocs=2)
    for rank in (0, 1):
        results = json.loads((tmp_path / f'rank{rank}.json').read_text())
        assert results == {kind: dict(saved=[], unchanged=True) for kind in ('ddp', 'fsdp')}


def test_cpu_autocast_bf16(mae_ckpt):
    teacher = _teacher(mae_ckpt[1], encoder=ENC2, alphas=(0.0, 0.5))
    x, (keep, ids_restore) = _images(), _mask()
    raw = torch.randn(2, N, PIX)
    ref = teacher.mix(raw, teacher(x, keep, ids_restore))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        recon = teacher(x, keep, ids_restore)
        out = teacher.mix(raw, recon)
    assert recon.dtype == torch.bfloat16
    for o, r in zip(out, ref):
        assert o.dtype == torch.float32
        torch.testing.assert_close(o, r, rtol=5e-2, atol=5e-2 * r.abs().max().item())


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_cuda_amp(mae_ckpt):
    _, path = mae_ckpt
    model = _student(teacher=dict(type='MAEHybridTarget', checkpoint=path, alphas=(0.0, ),
                                  encoder=ENC2, decoder=DECODER)).cuda()
    teacher = model.target_generator
    assert teacher.encoder.pos_embed.is_cuda and teacher.decoder.decoder_pred.weight.is_cuda
    x = _images().cuda()
    keep, ids_restore = (t.cuda() for t in _mask())
    ref = teacher(x, keep, ids_restore)
    with torch.autocast('cuda', dtype=torch.float16):
        out = teacher(x, keep, ids_restore)
        losses = model.loss(x, [])
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2 * ref.abs().max().item())
    assert set(losses) == {'loss_block2', 'loss_block3'}
    assert all(torch.isfinite(v) for v in losses.values())


# ---------------------------------------------------------------------------------- errors
def test_errors(mae_ckpt, tmp_path):
    _, path = mae_ckpt
    two = ENC2
    missing = tmp_path / 'nope' / 'mae.pth'
    with pytest.raises(FileNotFoundError, match=str(missing)):
        _teacher(str(missing))
    with pytest.raises(ValueError, match='checkpoint is required'):
        MAEHybridTarget(encoder=two, decoder=DECODER)

    # Wrong architecture: the keys and shapes are named.
    with pytest.raises(ValueError, match=r"another depth.*missing from the checkpoint: "
                                         r"backbone\.layers\.2\."):
        _teacher(path)  # 3 blocks configured, 2 in the file
    with pytest.raises(ValueError, match=r"the model does not have.*backbone\.layers\.1\."):
        _teacher(path, encoder=dict(ENCODER, arch=dict(ARCH, num_layers=1)))
    with pytest.raises(ValueError) as err:
        _teacher(path, encoder=dict(two, arch=dict(ARCH2, embed_dims=48)),
                 decoder=dict(DECODER, embed_dim=48))
    assert 'backbone.cls_token: checkpoint (1, 1, 32) vs model (1, 1, 48)' in str(err.value)
    with pytest.raises(ValueError, match=r"neck\.decoder_blocks\.1\."):
        _teacher(path, encoder=two, decoder=dict(DECODER, decoder_depth=2))

    clip_like = tmp_path / 'clip.pth'
    torch.save({'visual.proj': torch.zeros(4, 4)}, clip_like)
    with pytest.raises(ValueError, match="target_generator.checkpoint.*clip.pth.*'backbone.'"):
        _teacher(str(clip_like), encoder=two)
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'not a checkpoint')
    with pytest.raises(ValueError, match='not a checkpoint: .*garbage.pth'):
        _teacher(str(garbage), encoder=two)

    # Configuration errors.
    for bad in ((0.5, 1.5), (-0.1, ), (float('nan'), ), 0.5, 'abc', {0.5, 0.25}):
        with pytest.raises(ValueError, match='alpha'):
            _teacher(alphas=bad)
    with pytest.raises(ValueError, match="encoder.type='VisionTransformer'"):
        _teacher(encoder=dict(ENCODER, type='VisionTransformer'))
    with pytest.raises(ValueError, match='encoder=None'):
        _teacher(encoder=None)
    with pytest.raises(ValueError, match='decoder.num_levels=2'):
        _teacher(decoder=dict(DECODER, type='MultiLevelDecoder', num_levels=2))
    # An encoder and decoder that do not fit each other (also without a checkpoint).
    with pytest.raises(ValueError, match='decoder.num_patches=9'):
        _teacher(decoder=dict(DECODER, num_patches=9))
    with pytest.raises(ValueError, match='decoder.embed_dim=48 must equal the encoder width'):
        _teacher(decoder=dict(DECODER, embed_dim=48))
    # A MultiLevelDecoder config with one level is accepted (the final decoder's keys).
    _teacher(decoder=dict(DECODER, type='MultiLevelDecoder', num_levels=1))

    # At DeepMIM build time: alphas per auxiliary level, and the student's grid.
    cfg = dict(type='MAEHybridTarget', checkpoint=path, encoder=two, decoder=DECODER)
    with pytest.raises(ValueError, match=r"alphas=\[0.0, 0.3333.*3 entries.*2 levels "
                                         r"\['block2', 'block3'\].*\['block2'\]"):
        _student(teacher=cfg)  # default alphas: 3 entries
    _student(out_indices=(0, 1, 2), teacher=dict(cfg, alphas=(0, 0.5)))
    with pytest.raises(ValueError, match=r'student grid \(8, 8\)'):
        _student(img_size=64, teacher=dict(cfg, alphas=(0, )))
    # The teacher sees the student's visible patches: a mask ratio given in its config must be
    # the student's; its predictions must be the head's pixel targets.
    with pytest.raises(ValueError, match=r'target_generator.mask_ratio=0.75 .*'
                                         r'model.backbone.mask_ratio=0.5'):
        _student(mask_ratio=0.5, teacher=dict(cfg, alphas=(0, ), mask_ratio=0.75))
    with pytest.raises(ValueError, match='model.target_generator.decoder'):
        _student(teacher=dict(cfg, alphas=(0, ), checkpoint=None, random_init=True,
                              decoder=dict(DECODER, in_chans=1)))
