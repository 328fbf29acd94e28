"""The fast input paths (deepmim_mm.datasets): crop boxes drawn exactly as mmpretrain's
RandomResizedCrop draws them, the device path's batch equal to the standard pipeline's, the
crop-aware CPU path's quality, bad files named or skipped, and a device-path config that trains
through tools/train.py and resumes exactly after a SIGKILL."""
import glob
import io
import os
import os.path as osp
import re
import sys

import numpy as np
import pytest
import torch
from mmengine.dataset import Compose, default_collate
from mmpretrain.datasets.transforms import RandomResizedCrop
from mmpretrain.registry import MODELS, TRANSFORMS
from PIL import Image

import deepmim_mm  # noqa: F401
from deepmim_mm.datasets import image_bytes_collate
from deepmim_mm.datasets.data_preprocessor import torchcodec_decode_jpeg
from deepmim_mm.datasets.image_codec import dct_scale, decode_crop_resize, decode_rgb, read_header

from conftest import DEMO_IMAGES, ROOT, run_main

sys.path.insert(0, osp.join(ROOT, 'tools', 'analysis'))
import benchmark_data  # noqa: E402

pytestmark = pytest.mark.usefixtures('mmpretrain_scope')

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
RRC = dict(scale=64, crop_ratio_range=(0.2, 1.0), backend='pillow', interpolation='bicubic')
DEMO = sorted(glob.glob(osp.join(DEMO_IMAGES, '*', '*', '*.JPEG')))


def pipelines(rrc=RRC):
    standard = [dict(type='LoadImageFromFile'), dict(type='RandomResizedCrop', **rrc),
                dict(type='RandomFlip', prob=0.5), dict(type='PackInputs')]
    device = [dict(type='LoadImageBytes'), dict(type='RandomResizedCropBox', **rrc),
              dict(type='RandomFlipFlag', prob=0.5), dict(type='PackImageBytes')]
    crop_aware = [dict(type='LoadImageBytes'), dict(type='RandomResizedCropBox', **rrc),
                  dict(type='DecodeCropResize'), dict(type='RandomFlip', prob=0.5),
                  dict(type='PackInputs')]
    return Compose(standard), Compose(device), Compose(crop_aware)


def odd_files(tmp_path):
    """A PNG, a grey JPEG, a CMYK JPEG, an EXIF-rotated JPEG (orientation 6) and a progressive
    JPEG: every case the device path decodes differently from a plain RGB JPEG."""
    src = np.asarray(Image.open(DEMO[3]).convert('RGB'))
    out = {}
    for name, kw in [('png.png', {}), ('grey.JPEG', {}), ('cmyk.JPEG', {}),
                     ('rotated.JPEG', {}), ('progressive.JPEG', dict(progressive=True))]:
        im = Image.fromarray(src)
        if name.startswith('grey'):
            im = im.convert('L')
        elif name.startswith('cmyk'):
            im = im.convert('CMYK')
        if name.startswith('rotated'):
            exif = im.getexif()
            exif[0x0112] = 6
            kw = dict(exif=exif.tobytes())
        path = str(tmp_path / name)
        im.save(path, quality=90, **kw)
        out[name] = path
    return out


def grey_levels(x):
    return x * torch.tensor(STD)[:, None, None]


# ---------------------------------------------------------------- crop-box distribution
@pytest.mark.parametrize('shape,ratio,fallback', [
    ((375, 500), (0.2, 1.0), None), ((750, 1000), (0.08, 1.0), None),
    ((40, 400), (0.2, 1.0), (0, 173, 40, 53)), ((400, 30), (0.9, 1.0), (180, 0, 40, 30))])
def test_crop_box_draws_equal_random_resized_crop(shape, ratio, fallback):
    """Same seed, same boxes as mmpretrain's RandomResizedCrop (also its central-crop fallback:
    the last two shapes are too elongated for most draws), and the same numpy RNG state after,
    so the flip drawn next is the standard pipeline's too."""
    ours = TRANSFORMS.build(dict(type='RandomResizedCropBox', scale=224, crop_ratio_range=ratio))
    upstream = RandomResizedCrop(scale=224, crop_ratio_range=ratio, backend='pillow')
    img = np.zeros(shape + (3, ), np.uint8)
    np.random.seed(0)
    ref = [upstream.rand_crop_params(img) for _ in range(2000)]
    state = np.random.get_state()[1].copy()
    np.random.seed(0)
    got = [ours.transform(dict(img_shape=shape))['crop_box'] for _ in range(2000)]
    assert got == [tuple(int(v) for v in r) for r in ref]
    assert np.array_equal(np.random.get_state()[1], state)
    if fallback is not None:  # the central-crop fallback is exercised
        assert sum(b == fallback for b in got) > 100
    h, w = shape
    assert all(0 <= t and 0 <= lf and t + bh <= h and lf + bw <= w for t, lf, bh, bw in got)


def test_crop_box_distribution_statistics():
    """Many draws: box area fraction and log aspect ratio follow RandomResizedCrop's
    (two-sample Kolmogorov-Smirnov against the upstream transform applied to images)."""
    from scipy.stats import ks_2samp
    ours = TRANSFORMS.build(dict(type='RandomResizedCropBox', scale=8, crop_ratio_range=(0.2, 1)))
    upstream = RandomResizedCrop(scale=8, crop_ratio_range=(0.2, 1), backend='pillow')
    h, w = 60, 80
    np.random.seed(1)
    got = np.array([ours.transform(dict(img_shape=(h, w)))['crop_box'] for _ in range(3000)])
    np.random.seed(2)  # independent draws from the upstream code path itself
    ref = np.array([upstream.rand_crop_params(np.zeros((h, w, 3))) for _ in range(3000)])
    for stat in (lambda b: b[:, 2] * b[:, 3], lambda b: np.log(b[:, 3] / b[:, 2]),
                 lambda b: b[:, 0], lambda b: b[:, 1]):
        assert ks_2samp(stat(got), stat(ref)).pvalue > 1e-3


@pytest.mark.parametrize('interpolation', ['bilinear', 'bicubic', 'lanczos'])
def test_resized_crops_equal_pillow(interpolation):
    """Every filter of the device path: crops of several sizes (shrunk, enlarged, both) resized
    in one batch, within one grey level of Pillow's crop-then-resize."""
    from deepmim_mm.datasets.image_codec import PIL_FILTERS
    from deepmim_mm.datasets.resample import resized_crops
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (60 + 7 * k, 70 + 5 * k, 3), dtype=np.uint8) for k in range(4)]
    boxes = [(2, 3, 50, 55), (0, 0, 67, 75), (10, 5, 20, 30), (1, 1, 8, 70)]
    got = resized_crops([torch.from_numpy(i).permute(2, 0, 1) for i in imgs], boxes, (16, 24),
                        interpolation=interpolation, chunk=2)  # and in chunks
    for out, img, (top, left, h, w) in zip(got, imgs, boxes):
        ref = Image.fromarray(img[top:top + h, left:left + w]).resize(
            (24, 16), PIL_FILTERS[interpolation])
        assert (out.permute(1, 2, 0) - torch.tensor(np.asarray(ref))).abs().max() <= 1


def test_dct_scale():
    assert dct_scale((1000, 900), (224, 224)) == 4
    assert dct_scale((448, 448), (224, 224)) == 2
    assert dct_scale((447, 1000), (224, 224)) == 1
    assert dct_scale((1792, 1792), (224, 224)) == 8


# ---------------------------------------------------------------- decoding
def test_torchcodec_loads_and_decodes_as_pillow():
    """TorchCodec imports against this torch and decodes the bundled JPEGs as Pillow does
    (within one grey level: the JPEG decoder tolerance; measured here: identical)."""
    decode = torchcodec_decode_jpeg()
    assert decode is not None, 'torchcodec (requirements/runtime.txt) does not import'
    files = [open(f, 'rb').read() for f in DEMO]
    tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in files]
    for img, data in zip(decode(tensors, mode='RGB', device='cpu'), files):
        ref = torch.from_numpy(decode_rgb(data).copy()).permute(2, 0, 1)
        assert img.shape == ref.shape
        assert (img.int() - ref.int()).abs().max() <= 1


@pytest.mark.parametrize('decoder', ['torchcodec', 'pillow'])
@pytest.mark.parametrize('collate', [default_collate, image_bytes_collate])
def test_device_path_equals_standard_pipeline(tmp_path, decoder, collate):
    """Same seed: the device path's normalised batch is the standard pipeline's (cv2 decode,
    mmpretrain RandomResizedCrop with Pillow, RandomFlip, SelfSupDataPreprocessor) to one grey
    level, non-JPEG and odd JPEGs decoded on the CPU in the same batch."""
    files = DEMO + list(odd_files(tmp_path).values())
    standard, device, _ = pipelines()
    np.random.seed(0)
    ref_batch = default_collate([standard(dict(img_path=f)) for f in files])
    np.random.seed(0)
    batch = collate([device(dict(img_path=f)) for f in files])
    up = MODELS.build(dict(type='SelfSupDataPreprocessor', mean=MEAN, std=STD, to_rgb=True))
    ours = MODELS.build(dict(type='DecodeDataPreprocessor', mean=MEAN, std=STD, to_rgb=True,
                             decoder=decoder, chunk=5))
    assert ours.decoder == decoder
    ref, got = up(ref_batch)['inputs'], ours(batch)['inputs']
    assert got.shape == ref.shape == (len(files), 3, 64, 64)
    diff = grey_levels(got - ref).abs().flatten(1)
    cmyk = files.index(osp.join(str(tmp_path), 'cmyk.JPEG'))
    # cv2 and Pillow convert CMYK to RGB slightly differently (decoders, not the resampling)
    assert diff[cmyk].max() <= 2 + 1e-3 and diff[cmyk].mean() < 1.5
    others = torch.cat([diff[:cmyk], diff[cmyk + 1:]])
    assert others.max() <= 1 + 1e-3 and others.mean() < 0.01
    assert [s.img_path for s in ours(batch)['data_samples']] == files


def test_device_path_channel_order_and_tensor_batches():
    """to_rgb=False gives BGR as upstream does for cv2-decoded images; an image tensor batch
    (synthetic benchmark batches) passes through the upstream code."""
    _, device, _ = pipelines()
    np.random.seed(0)
    batch = default_collate([device(dict(img_path=f)) for f in DEMO[:3]])
    rgb = MODELS.build(dict(type='DecodeDataPreprocessor', to_rgb=True))(batch)['inputs']
    bgr = MODELS.build(dict(type='DecodeDataPreprocessor', to_rgb=False))(batch)['inputs']
    assert torch.equal(rgb, bgr[:, [2, 1, 0]])
    x = torch.randint(0, 256, (2, 3, 8, 8), dtype=torch.uint8)
    pre = MODELS.build(dict(type='DecodeDataPreprocessor', mean=MEAN, std=STD, to_rgb=True))
    up = MODELS.build(dict(type='SelfSupDataPreprocessor', mean=MEAN, std=STD, to_rgb=True))
    assert torch.equal(pre(dict(inputs=x, data_samples=None))['inputs'],
                       up(dict(inputs=x, data_samples=None))['inputs'])


def test_crop_aware_path(tmp_path):
    """At DCT scale 1 the crop-aware path gives the standard pipeline's pixels; where it
    decodes at 1/2 or 1/4 the crop still has the output's resolution, and the PSNR against
    full decoding stays high."""
    folder = str(tmp_path / 'big')
    benchmark_data.make_set(folder, size=(1000, 750), count=6)
    files = sorted(glob.glob(osp.join(folder, '*.JPEG')))
    standard, _, crop_aware = pipelines(dict(RRC, scale=224))
    np.random.seed(3)
    ref = default_collate([standard(dict(img_path=f)) for f in files * 4])
    np.random.seed(3)
    got = [crop_aware(dict(img_path=f)) for f in files * 4]
    assert all(s['inputs'].shape == (3, 224, 224) for s in got)
    got = default_collate(got)
    mse = ((ref['inputs'].double() - got['inputs'].double())**2).mean((1, 2, 3))
    exact = mse == 0  # DCT scale 1: the standard operations, bit for bit
    assert 0 < exact.sum() < len(mse)
    assert 10 * torch.log10(255**2 / mse[~exact]).min() > 30
    data = open(files[0], 'rb').read()
    for box, scale in [((10, 20, 300, 300), 1), ((0, 0, 750, 700), 2)]:
        img, used = decode_crop_resize(data, box, (224, 224))
        assert used == scale and img.size == (224, 224)
    top, left, h, w = 10, 20, 300, 300
    full = Image.fromarray(decode_rgb(data)[top:top + h, left:left + w]).resize(
        (224, 224), Image.Resampling.BICUBIC)
    assert np.array_equal(np.asarray(decode_crop_resize(data, (top, left, h, w),
                                                        (224, 224))[0]), np.asarray(full))


def test_header_sizes_follow_exif_orientation(tmp_path):
    paths = odd_files(tmp_path)
    plain = read_header(open(paths['png.png'], 'rb').read())
    rotated = read_header(open(paths['rotated.JPEG'], 'rb').read())
    assert rotated['img_shape'] == plain['img_shape'][::-1]
    assert rotated['img_orientation'] == 6 and plain['img_format'] == 'PNG'
    assert decode_rgb(open(paths['rotated.JPEG'], 'rb').read()).shape[:2] == rotated['img_shape']


# ---------------------------------------------------------------- bad files
@pytest.fixture
def warnings_logged(monkeypatch):
    """The messages the on_corrupt policy logs (mmengine's logger writes to the stream it was
    created with, which pytest's capture fixtures do not see)."""
    from deepmim_mm.datasets import transforms
    logged = []
    monkeypatch.setattr(transforms, 'print_log', lambda msg, **kw: logged.append(msg))
    return logged


def bad_files(tmp_path):
    good = open(DEMO[0], 'rb').read()
    bad = {'empty.JPEG': b'', 'garbage.JPEG': b'\xff\xd8\xff\xe0' + os.urandom(200),
           'text.JPEG': b'not an image at all', 'truncated.JPEG': good[:len(good) // 2]}
    out = {}
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        out[name] = str(tmp_path / name)
    return out


@pytest.mark.parametrize('loader', ['LoadImageFromFileChecked', 'LoadImageBytes'])
def test_loaders_name_or_skip_unreadable_files(tmp_path, loader, warnings_logged):
    """An empty file (upstream: a bare cv2.error) and a file that is not an image are named,
    or skipped with a warning; a truncated JPEG too where the loader decodes."""
    files = bad_files(tmp_path)
    err = TRANSFORMS.build(dict(type=loader))
    skip = TRANSFORMS.build(dict(type=loader, on_corrupt='skip'))
    header_only = loader == 'LoadImageBytes'
    for name, path in files.items():
        if name == 'truncated.JPEG' and header_only:  # its header is valid: named at decode
            assert err(dict(img_path=path))['img_shape'] == (307, 256)
            continue
        with pytest.raises(ValueError) as info:
            err(dict(img_path=path))
        assert f'cannot decode image {path}' in str(info.value)
        assert 'on_corrupt="skip"' in str(info.value) and loader in str(info.value)
        if name == 'empty.JPEG':
            assert 'the file is empty (0 bytes)' in str(info.value)
        assert skip(dict(img_path=path)) is None
        assert f'cannot decode image {path}' in '\n'.join(warnings_logged)
    with pytest.raises(FileNotFoundError):
        skip(dict(img_path=str(tmp_path / 'missing.JPEG')))


def test_corrupt_file_in_a_device_batch_is_named_or_dropped(tmp_path, warnings_logged):
    path = bad_files(tmp_path)['truncated.JPEG']
    _, device, crop_aware = pipelines()
    batch = default_collate([device(dict(img_path=f)) for f in [DEMO[1], path, DEMO[2]]])
    pre = MODELS.build(dict(type='DecodeDataPreprocessor', mean=MEAN, std=STD, to_rgb=True))
    with pytest.raises(ValueError, match=f'cannot decode image {path} .*DecodeDataPreprocessor'):
        pre(batch)
    skip = MODELS.build(dict(type='DecodeDataPreprocessor', on_corrupt='skip'))
    out = skip(batch)
    assert out['inputs'].shape[0] == 2
    assert [s.img_path for s in out['data_samples']] == [DEMO[1], DEMO[2]]
    assert f'cannot decode image {path}' in '\n'.join(warnings_logged)
    with pytest.raises(ValueError, match=f'cannot decode image {path}'):
        crop_aware(dict(img_path=path))


@pytest.mark.parametrize('registry,cfg,named', [
    (TRANSFORMS, dict(type='RandomResizedCropBox', scale=8, backend='cv2'), "backend='cv2'"),
    (TRANSFORMS, dict(type='RandomResizedCropBox', scale=8, interpolation='area'),
     "interpolation='area'"),
    (TRANSFORMS, dict(type='DecodeCropResize', channel_order='rgba'), "channel_order='rgba'"),
    (TRANSFORMS, dict(type='LoadImageBytes', on_corrupt='ignore'), "on_corrupt='ignore'"),
    (TRANSFORMS, dict(type='LoadImageFromFileChecked', ignore_empty=True), 'ignore_empty=True'),
    (MODELS, dict(type='DecodeDataPreprocessor', decoder='nvjpeg'), "decoder='nvjpeg'"),
    (MODELS, dict(type='DecodeDataPreprocessor', on_corrupt='ignore'), "on_corrupt='ignore'")])
def test_bad_arguments_are_named(registry, cfg, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        registry.build(cfg)


def test_device_path_names_a_transform_it_cannot_run():
    from deepmim_mm.datasets import fast_path_pipeline
    with pytest.raises(ValueError, match='ColorJitter'):
        fast_path_pipeline([dict(type='LoadImageFromFile'), dict(type='RandomResizedCrop'),
                            dict(type='ColorJitter'), dict(type='PackInputs')], 'device')


def test_device_decode_piece_switches_a_config():
    from mmengine.config import Config
    base = Config.fromfile(osp.join(
        ROOT, 'configs/pretrain/deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'))
    cfg = Config.fromfile(osp.join(
        ROOT, 'configs/pretrain/deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k_device-decode.py'))
    assert cfg.model.data_preprocessor.type == 'DecodeDataPreprocessor'
    assert cfg.train_dataloader.collate_fn == dict(type='image_bytes_collate')
    types = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert types == ['LoadImageBytes', 'RandomResizedCropBox', 'RandomFlipFlag', 'PackImageBytes']
    # the same recipe as the standard pipeline, written out by apply_fast_path from the base
    from deepmim_mm.datasets import apply_fast_path
    derived = apply_fast_path(base.copy(), 'device')
    assert derived.train_dataloader.dataset.pipeline == cfg.train_dataloader.dataset.pipeline
    for key in ('mean', 'std', 'to_rgb'):
        assert cfg.model.data_preprocessor[key] == base.data_preprocessor[key]
    model = MODELS.build(dict(cfg.model, backbone=dict(cfg.model.backbone, arch=dict(
        embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64), out_indices=None),
        neck=dict(cfg.model.neck, embed_dim=32, decoder_embed_dim=32, decoder_depth=1,
                  decoder_num_heads=2)))
    assert type(model.data_preprocessor).__name__ == 'DecodeDataPreprocessor'


# ---------------------------------------------------------------- training and exact resume
DEVICE_CFG = '''
_base_ = [{tiny!r}, {piece!r}]
train_dataloader = dict(collate_fn=dict(_delete_=True, type='image_bytes_collate'),
                        dataset=dict(pipeline={{{{_base_.device_decode_pipeline}}}}))
model = dict(data_preprocessor={{{{_base_.device_decode_preprocessor}}}})
'''
SCALE_32 = ['--cfg-options', 'train_dataloader.dataset.pipeline.1.scale=32']


def test_device_path_trains_and_resumes_exactly_after_sigkill(tmp_path):
    """The device-path config (the _base_ piece on the resume test's tiny DeepMIM, 2 workers)
    trains through tools/train.py on the CPU; killed mid-epoch (a process of its own) and
    resumed, every loss and the final weights equal the uninterrupted run's. (That its batches
    are the standard pipeline's: test_device_path_equals_standard_pipeline and
    test_device_decode_piece_switches_a_config.)"""
    from test_resume import KILL_PLUGIN, assert_resumed_exactly, make_data, run_killed, tiny_config
    data = make_data(tmp_path)
    piece = osp.join(ROOT, 'configs', 'pretrain', '_base_', 'device_decode.py')
    std_cfg = tiny_config(tmp_path / 'tiny.py', data, workers=2)
    (tmp_path / 'kill_plugin.py').write_text(KILL_PLUGIN)
    killed_base = tiny_config(tmp_path / 'tiny_killed.py', data, workers=2,
                              extra_imports=['kill_plugin'],
                              extra_hooks="\ncustom_hooks.append(dict(type='KillAtIter', at=10))")
    cfg, killed = tmp_path / 'device.py', tmp_path / 'device_killed.py'
    cfg.write_text(DEVICE_CFG.format(tiny=std_cfg, piece=piece))
    killed.write_text(DEVICE_CFG.format(tiny=killed_base, piece=piece))

    ref, work = str(tmp_path / 'ref'), str(tmp_path / 'work')
    assert run_main('tools/train.py', cfg, '--work-dir', ref, *SCALE_32) == 0
    run_killed(['tools/train.py', str(killed), '--work-dir', work] + SCALE_32,
               env={'PYTHONPATH': f'{tmp_path}{os.pathsep}{os.environ.get("PYTHONPATH", "")}'})
    assert run_main('tools/train.py', cfg, '--work-dir', work, '--resume', *SCALE_32) == 0
    (log, ) = glob.glob(osp.join(sorted(glob.glob(osp.join(work, '2*')))[-1], '*.log'))
    assert 'resumed epoch: 0, iter: 8' in open(log).read()
    assert_resumed_exactly(ref, work, iters=16)


def test_image_bytes_collate_joins_files():
    _, device, _ = pipelines()
    samples = [device(dict(img_path=f)) for f in DEMO[:3]]
    batch = image_bytes_collate(samples)
    offsets = batch['inputs']['offsets'].tolist()
    assert offsets[0] == 0 and len(offsets) == 4
    for k, s in enumerate(samples):
        assert batch['inputs']['data'][offsets[k]:offsets[k + 1]].numpy().tobytes() == \
            s['inputs']
    assert io.BytesIO(s['inputs']).read(2) == b'\xff\xd8'
