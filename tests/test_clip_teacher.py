"""CLIPTeacher: equivalence with open_clip, checkpoint formats, errors, frozen behaviour."""
import copy

# open_clip_torch (requirements/tests.txt, installed by tools/setup_env.sh) is the reference
# implementation: a missing one fails these tests rather than skipping them.
import open_clip
import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.optim import build_optim_wrapper
from mmengine.runner.checkpoint import get_state_dict
from mmpretrain.registry import MODELS
from open_clip.model import CLIP

import deepmim_mm  # noqa: F401
import deepmim_mm.models.losses  # noqa: F401
from deepmim_mm.models.target_generators import CLIPTeacher
from deepmim_mm.models.target_generators.clip_teacher import (CLIP_ARCHS, CLIP_MEAN, CLIP_STD,
                                                              _normalise_arch)

from conftest import perturb_weights

pytestmark = [pytest.mark.filterwarnings('ignore::FutureWarning'),  # torch.jit deprecation
              pytest.mark.usefixtures('mmpretrain_scope')]

IMNET_MEAN = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
IMNET_STD = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
TINY = dict(width=64, layers=2, heads=4, patch_size=8, output_dim=32)
TINY_IMG = 32
TINY_DEEPMIM = dict(
    type='DeepMIM',
    backbone=dict(type='DeepMIMViT', img_size=TINY_IMG, patch_size=8, out_indices=[1, 3],
                  arch=dict(embed_dims=64, num_layers=4, num_heads=2, feedforward_channels=128)),
    neck=dict(type='MultiLevelDecoder', num_patches=16, patch_size=8, embed_dim=64,
              decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2,
              predict_feature_dim=TINY['output_dim']),
    head=dict(type='DeepMIMHead', loss=dict(type='CosineFeatureLoss')))


def _perturb(model: nn.Module, seed: int = 0) -> nn.Module:
    return perturb_weights(model, seed, embeddings=('class_embedding', 'positional_embedding'))


def _tiny_open_clip(quick_gelu=True, image_size=TINY_IMG, seed=0):
    torch.manual_seed(seed)
    model = CLIP(
        embed_dim=TINY['output_dim'],
        vision_cfg=dict(layers=TINY['layers'], width=TINY['width'],
                        head_width=TINY['width'] // TINY['heads'], patch_size=TINY['patch_size'],
                        image_size=image_size),
        text_cfg=dict(context_length=8, vocab_size=50, width=32, heads=2, layers=1),
        quick_gelu=quick_gelu)
    return _perturb(model, seed).eval()


def _imagenet_normalised(b, size, seed=0):
    """Random 0-255 RGB images, as the SelfSupDataPreprocessor hands them over."""
    img = torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 255
    return (img - IMNET_MEAN) / IMNET_STD, img


def _open_clip_tokens(visual, img255):
    """open_clip's own patch tokens: ln_post output (``output_tokens``) @ proj."""
    x = (img255 / 255 - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(
        1, 3, 1, 1)
    visual = copy.deepcopy(visual)
    visual.output_tokens = True
    with torch.no_grad():
        _, tokens = visual(x)
        return tokens @ visual.proj


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """A tiny open_clip CLIP (text tower too, as real files have) saved as an open_clip state
    dict."""
    root = tmp_path_factory.mktemp('clip')
    model = _tiny_open_clip()
    path = root / 'open_clip_tiny.pth'
    torch.save(model.state_dict(), path)
    return model, path, root


def test_open_clip_vit_b16_equivalence(tmp_path):
    """open_clip's ViT-B-16 (QuickGELU = OpenAI's tower), random weights, full size."""
    model = open_clip.create_model('ViT-B-16-quickgelu', pretrained=None)
    visual = _perturb(model.visual.eval())
    path = tmp_path / 'vit_b16.pth'
    torch.save({'visual.' + k: v for k, v in visual.state_dict().items()}, path)
    teacher = CLIPTeacher(checkpoint=str(path))  # defaults: ViT-B/16 at 224
    inputs, img = _imagenet_normalised(1, 224)
    out = teacher(inputs)
    ref = _open_clip_tokens(visual, img)
    assert out.shape == (1, 196, 512) and teacher.out_channels == 512
    assert not out.requires_grad
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=2e-5 * ref.abs().max().item())


def test_tiny_equivalence_and_gelu_variant(tiny, tmp_path):
    model, path, _ = tiny
    inputs, img = _imagenet_normalised(3, TINY_IMG, seed=1)
    teacher = CLIPTeacher(checkpoint=str(path), arch=TINY, img_size=TINY_IMG)
    ref = _open_clip_tokens(model.visual, img)
    out = teacher(inputs)
    assert out.shape == (3, 16, 32)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)

    # open_clip towers trained with plain GELU (e.g. LAION ViT-B-16): quick_gelu=False.
    gelu = _tiny_open_clip(quick_gelu=False, seed=3)
    p = tmp_path / 'gelu.pth'
    torch.save(gelu.state_dict(), p)
    ref = _open_clip_tokens(gelu.visual, img)
    out = CLIPTeacher(checkpoint=str(p), arch=TINY, img_size=TINY_IMG, quick_gelu=False)(inputs)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    wrong = CLIPTeacher(checkpoint=str(p), arch=TINY, img_size=TINY_IMG)(inputs)
    assert not torch.allclose(wrong, ref, atol=1e-3)


def test_checkpoint_formats_agree(tiny):
    model, path, root = tiny
    inputs, _ = _imagenet_normalised(2, TINY_IMG)
    ref = CLIPTeacher(checkpoint=str(path), arch=TINY, img_size=TINY_IMG)(inputs)

    # OpenAI's published .pt: a TorchScript archive of the whole CLIP (fp16 weights).
    scripted = torch.jit.script(copy.deepcopy(model).half())
    jit_path = root / 'ViT-tiny.pt'
    torch.jit.save(scripted, str(jit_path))
    # Plain state dict with only visual.* keys (the converted form official DeepMIM loads).
    plain = {k: v for k, v in model.state_dict().items() if k.startswith('visual.')}
    plain_path = root / 'visual_only.pth'
    torch.save(plain, plain_path)
    # open_clip training checkpoint: nested under 'state_dict', DDP 'module.' prefix.
    nested_path = root / 'epoch_1.pt'
    torch.save({'epoch': 1, 'state_dict': {'module.' + k: v
                                           for k, v in model.state_dict().items()}}, nested_path)

    # open_clip's hub files: .safetensors.
    from safetensors.torch import save_file
    st_path = root / 'open_clip_model.safetensors'
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(st_path))

    for p, tol in ((plain_path, 1e-6), (nested_path, 1e-6), (st_path, 1e-6), (jit_path, 5e-2)):
        out = CLIPTeacher(checkpoint=str(p), arch=TINY, img_size=TINY_IMG)(inputs)
        torch.testing.assert_close(out, ref, rtol=tol, atol=tol * ref.abs().max().item())
    # The scripted archive really is the fp16 model's weights (not a coincidence of tolerance).
    jit_teacher = CLIPTeacher(checkpoint=str(jit_path), arch=TINY, img_size=TINY_IMG)
    torch.testing.assert_close(jit_teacher.tower.proj,
                               model.visual.proj.detach().half().float())


def test_registry_build(tiny):
    _, path, _ = tiny
    teacher = MODELS.build(dict(type='CLIPTeacher', checkpoint=str(path), arch=TINY,
                                img_size=TINY_IMG))
    assert isinstance(teacher, CLIPTeacher) and teacher.grid_size == (4, 4)


def test_errors(tiny, tmp_path):
    model, path, _ = tiny
    missing = tmp_path / 'nope' / 'clip.pt'
    with pytest.raises(FileNotFoundError, match=str(missing)):
        CLIPTeacher(checkpoint=str(missing), arch=TINY, img_size=TINY_IMG)

    text_only = tmp_path / 'text_only.pth'
    torch.save({k: v for k, v in model.state_dict().items() if not k.startswith('visual.')},
               text_only)
    with pytest.raises(ValueError, match='text encoder only'):
        CLIPTeacher(checkpoint=str(text_only), arch=TINY, img_size=TINY_IMG)

    # A file of another architecture: the field, the arch and the mismatched keys are named.
    field = 'model.target_generator.checkpoint'
    with pytest.raises(ValueError) as err:
        CLIPTeacher(checkpoint=str(path), img_size=TINY_IMG * 7)
    assert field in str(err.value) and "'ViT-B/16'" in str(err.value)
    assert 'vit.pos_embed: checkpoint (1, 17, 64) vs model (1, 197, 768)' in str(err.value)
    with pytest.raises(ValueError, match=f'{field}.*missing.*vit.layers.2'):
        CLIPTeacher(checkpoint=str(path), arch=dict(TINY, layers=3), img_size=TINY_IMG)
    with pytest.raises(ValueError, match=f'{field}.*proj'):
        CLIPTeacher(checkpoint=str(path), arch=dict(TINY, output_dim=16), img_size=TINY_IMG)

    garbage = tmp_path / 'clip.pt'
    garbage.write_bytes(b'not a checkpoint at all')
    with pytest.raises(ValueError, match='not a checkpoint: .*clip.pt'):
        CLIPTeacher(checkpoint=str(garbage), arch=TINY, img_size=TINY_IMG)

    with pytest.raises(ValueError, match='checkpoint is required'):
        CLIPTeacher(arch=TINY, img_size=TINY_IMG)
    with pytest.raises(ValueError, match='ViT-L/14'):
        CLIPTeacher(checkpoint=str(path), arch='ViT-H/99')
    with pytest.raises(ValueError, match='mean/std need 3 values'):
        CLIPTeacher(arch=TINY, img_size=TINY_IMG, random_init=True, mean=(1.0, 2.0))
    with pytest.raises(ValueError, match='arch=16 is unknown'):
        CLIPTeacher(arch=16, random_init=True)
    with pytest.raises(ValueError, match=r"missing \['output_dim'\], unknown \['depth'\]"):
        CLIPTeacher(arch=dict({k: v for k, v in TINY.items() if k != 'output_dim'}, depth=2),
                    random_init=True)
    with pytest.raises(ValueError, match='width 64 is not divisible by heads 5'):
        CLIPTeacher(arch=dict(TINY, heads=5), img_size=TINY_IMG, random_init=True)
    with pytest.raises(ValueError, match='img_size'):
        CLIPTeacher(checkpoint=str(path), arch=TINY, img_size=30)
    with pytest.raises(ValueError, match='B x 3 x H x W'):
        CLIPTeacher(checkpoint=str(path), arch=TINY, img_size=TINY_IMG)(torch.zeros(2, 1, 32, 32))


def test_arch_presets():
    # open_clip's spelling of the presets is accepted.
    assert _normalise_arch('ViT-L-14') == ('ViT-L/14', CLIP_ARCHS['ViT-L/14'])
    # Random weights (tests only) with CLIP's layout: conv1 without bias, the arch's heads.
    teacher = CLIPTeacher(arch=TINY, img_size=TINY_IMG, random_init=True)
    vit = teacher.tower.vit
    assert teacher.grid_size == (4, 4) and teacher.out_channels == 32
    assert vit.patch_embed.projection.bias is None and vit.layers[0].attn.num_heads == 4
    assert teacher(torch.zeros(1, 3, TINY_IMG, TINY_IMG)).shape == (1, 16, 32)


def test_token_grid_mismatch_and_interpolation(tiny):
    _, path, _ = tiny  # positional grid 4x4 (32 px, patch 8)
    inputs, _ = _imagenet_normalised(2, 48)
    with pytest.raises(ValueError, match='interpolate_pos=True'):
        CLIPTeacher(checkpoint=str(path), arch=TINY, img_size=48)
    teacher = CLIPTeacher(checkpoint=str(path), arch=TINY, img_size=48, interpolate_pos=True)
    assert teacher(inputs).shape == (2, 36, 32)

    # The student's grid: equal is fine, different is an error unless interpolate_pos.
    strict = CLIPTeacher(checkpoint=str(path), arch=TINY, img_size=TINY_IMG)
    strict.match_token_grid((4, 4))
    with pytest.raises(ValueError, match='student grid \\(3, 3\\)'):
        strict.match_token_grid((3, 3))
    loose = CLIPTeacher(checkpoint=str(path), arch=TINY, img_size=TINY_IMG, interpolate_pos=True)
    ref = loose(inputs[..., :32, :32])
    loose.match_token_grid(3)
    assert loose.img_size == 24 and loose.grid_size == (3, 3)
    out = loose(inputs[..., :32, :32])  # resized to 24 px inside
    assert out.shape == (2, 9, 32) and torch.isfinite(out).all()
    loose.match_token_grid(4)  # back to the checkpoint's grid: the original embedding
    torch.testing.assert_close(loose(inputs[..., :32, :32]), ref)


class _Student(BaseModule):
    """A stand-in parent model: one trainable layer and the teacher, as an algorithm holds it."""

    def __init__(self, teacher):
        super().__init__(init_cfg=dict(type='Normal', layer='Linear', std=0.5))
        self.linear = nn.Linear(4, 4)
        self.target_generator = teacher


def test_frozen_not_saved_not_optimised(tiny):
    _, path, _ = tiny
    teacher = CLIPTeacher(checkpoint=str(path), arch=TINY, img_size=TINY_IMG)
    student = _Student(teacher)
    tower_sd = {k: v.clone() for k, v in teacher.tower.state_dict().items()}
    # print(model) names the hidden tower, which state_dict() and parameters() do not show.
    assert f'img_size={TINY_IMG}' in repr(student) and str(path) in repr(student)

    # Not in the training checkpoint; the checkpoint reloads strictly.
    keys = list(student.state_dict())
    assert keys == ['linear.weight', 'linear.bias']
    assert list(get_state_dict(student)) == keys  # what mmengine's Runner saves
    student.load_state_dict(student.state_dict(), strict=True)

    # Not in the optimizer: default constructor (model.parameters()) and the paramwise one
    # (named_children recursion) alike. Why the networks are hidden rather than registered: the
    # default constructor would put a registered frozen network's parameters in its group.
    student.registered = copy.deepcopy(teacher.tower)
    for paramwise in (None, dict(norm_decay_mult=0.0, bias_decay_mult=0.0)):
        cfg = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))
        if paramwise:
            cfg['paramwise_cfg'] = paramwise
        optim = build_optim_wrapper(student, cfg).optimizer
        in_optim = {id(p) for g in optim.param_groups for p in g['params']}
        expected = [*student.linear.parameters(),
                    *(student.registered.parameters() if paramwise is None else [])]
        assert in_optim == {id(p) for p in expected}
    del student.registered
    assert all(not p.requires_grad for p in teacher.tower.parameters())

    # mmengine's init_weights of the parent leaves the loaded CLIP weights alone.
    student.init_weights()
    for k, v in teacher.tower.state_dict().items():
        assert torch.equal(v, tower_sd[k]), k

    # Always eval mode, no graph even for inputs that require grad.
    student.train()
    assert student.training and not teacher.training and not teacher.tower.training
    assert not any(m.training for m in teacher.tower.modules())
    inputs = _imagenet_normalised(2, TINY_IMG)[0].requires_grad_(True)
    out = teacher(inputs)
    assert not out.requires_grad and out.grad_fn is None


def test_moves_and_casts_with_parent(tiny):
    _, path, _ = tiny
    teacher = CLIPTeacher(checkpoint=str(path), arch=TINY, img_size=TINY_IMG)
    student = _Student(teacher)
    student.to(torch.float64)
    assert teacher.tower.proj.dtype == torch.float64 and teacher.scale.dtype == torch.float64
    assert teacher(_imagenet_normalised(1, TINY_IMG)[0]).dtype == torch.float64
    student.float()
    student.to('meta')
    assert teacher.tower.proj.device.type == 'meta'
    assert teacher.tower.vit.pos_embed.device.type == 'meta'
    assert teacher.scale.device.type == 'meta'


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a GPU')
def test_cuda_and_amp(tiny):
    _, path, _ = tiny
    teacher = CLIPTeacher(checkpoint=str(path), arch=TINY, img_size=TINY_IMG)
    student = _Student(teacher).cuda()
    assert teacher.tower.proj.is_cuda and teacher.tower.vit.pos_embed.is_cuda
    inputs = _imagenet_normalised(2, TINY_IMG)[0].cuda()
    ref = teacher(inputs)
    with torch.autocast('cuda', dtype=torch.float16):
        out = teacher(inputs)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2 * ref.abs().max().item())
    assert student.state_dict().keys() == {'linear.weight', 'linear.bias'}


def test_cpu_autocast_bf16(tiny):
    _, path, _ = tiny
    teacher = CLIPTeacher(checkpoint=str(path), arch=TINY, img_size=TINY_IMG)
    inputs = _imagenet_normalised(2, TINY_IMG)[0]
    ref = teacher(inputs)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = teacher(inputs)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=5e-2, atol=5e-2 * ref.abs().max().item())


def test_in_deepmim_as_target_generator(tiny):
    """The teacher as DeepMIM's ``target_generator``: 512-d-style feature targets for every
    level, nothing of it in the checkpoint, no gradient into it."""
    _, path, _ = tiny
    model = MODELS.build(dict(TINY_DEEPMIM, target_generator=dict(
        type='CLIPTeacher', checkpoint=str(path), arch=TINY, img_size=TINY_IMG)))
    model.init_weights()
    model.train()
    teacher = model.target_generator
    assert isinstance(teacher, CLIPTeacher) and not teacher.training
    teacher.match_token_grid(model.backbone.patch_resolution)
    assert not any(k.startswith('target_generator') for k in get_state_dict(model))

    inputs = _imagenet_normalised(2, TINY_IMG)[0]
    losses = model.loss(inputs, [])
    assert set(losses) == {'loss_block2', 'loss_block4'}
    total = sum(losses.values())
    assert torch.isfinite(total) and 0 < total.item() < 8  # two levels of 2 - 2 cos
    total.backward()
    assert all(p.grad is None for p in teacher.tower.parameters())
    assert model.neck.decoder_pred.weight.grad is not None
