"""Input-side benchmark: ``make-set`` (JPEGs from the bundled photos), ``pipeline`` (img/s per
worker of the three input paths), ``quality`` (crop-aware decoding), ``end-to-end`` (training from
files) and ``decoders`` (batched JPEG decoding); more: docs/en/notes/input-and-benchmarks.md."""
import argparse
import copy
import os
import os.path as osp
import time

import numpy as np
import torch
from benchmark import maybe_compile

from benchmark_utils import (add_config_args, add_training_args, at_least, build_for_training,
                             check_device, hardware_summary, load_cfg, progress, report,
                             synthetic_batch, timed, write_json)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_IMAGES = osp.join(ROOT, 'deepmim_mm', 'demo', 'images')
CPU = torch.device('cpu')
PIPELINE_PATHS = {'standard': 'standard', 'crop-aware': 'crop-aware', 'bytes-only': 'device'}


# ------------------------------------------------------------------------------ make-set
def make_set(out_dir, size=(1000, 750), count=400, quality=90, grain=3.0, seed=0):
    """``count`` JPEGs of ``size`` (W, H) cut from the bundled photos, with Gaussian grain of std
    ``grain`` grey levels; returns their mean size in KiB."""
    from PIL import Image
    photos = list_images(DEMO_IMAGES)
    rng = np.random.default_rng(seed)
    os.makedirs(out_dir, exist_ok=True)
    total = 0
    for i in range(count):
        im = Image.open(photos[i % len(photos)]).convert('RGB')
        w = int(im.width * rng.uniform(0.7, 1.0))
        h = min(im.height, int(w * size[1] / size[0]))
        w = int(h * size[0] / size[1])
        x, y = rng.integers(0, im.width - w + 1), rng.integers(0, im.height - h + 1)
        im = im.crop((x, y, x + w, y + h)).resize(size, Image.Resampling.BICUBIC)
        a = np.asarray(im, np.float32)
        if rng.random() < 0.5:
            a = a[:, ::-1]
        a = np.clip(a + rng.normal(0, grain, a.shape), 0, 255).astype(np.uint8)
        path = osp.join(out_dir, f'{i:05d}.JPEG')
        Image.fromarray(a).save(path, quality=quality)
        total += osp.getsize(path)
    return total / count / 1024


def run_make_set(args):
    kib = make_set(args.out, tuple(args.size), args.count, args.quality, args.grain, args.seed)
    print(f'{args.count} JPEGs of {args.size[0]}x{args.size[1]} (quality {args.quality}, grain '
          f'{args.grain}) in {args.out}: {kib:.1f} KiB on average')
    return dict(folder=args.out, size=args.size, count=args.count, mean_kib=kib)


# ------------------------------------------------------------------------------ pipeline
def build_loader(cfg, path, folder, batch_size, workers, pin_memory=False):
    """mmengine's dataloader over the images in ``folder`` (mmpretrain ``CustomDataset``) with
    the train pipeline and collate function of ``cfg`` switched to ``path``."""
    from mmengine.runner import Runner

    from deepmim_mm.datasets import apply_fast_path
    from deepmim_mm.datasets.fast_paths import innermost_dataset
    loader_cfg = apply_fast_path(copy.deepcopy(cfg), path).train_dataloader
    collate = dict(loader_cfg.get('collate_fn') or dict(type='pseudo_collate'))
    collate.pop('_scope_', None)
    return Runner.build_dataloader(dict(
        batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0,
        pin_memory=pin_memory, sampler=dict(type='InfiniteSampler', shuffle=True),
        collate_fn=collate, dataset=dict(
            type='CustomDataset', data_root=folder, with_label=False,
            pipeline=innermost_dataset(loader_cfg.dataset)['pipeline'])), seed=0)


def rates_in_process(cfg, args):
    """0 workers: the paths take turns batch by batch in this process (no prefetching), so a
    change of the machine's load falls on all of them alike; img/s per repeat and path."""
    its = {name: iter(build_loader(cfg, PIPELINE_PATHS[name], args.data, args.batch_size, 0))
           for name in args.paths}
    for it in its.values():
        next(it)
    rates = {name: [] for name in args.paths}
    for r in range(args.repeats):
        spent = dict.fromkeys(args.paths, 0.0)
        for _ in range(args.batches):
            for name, it in its.items():
                t0 = time.perf_counter()
                next(it)
                spent[name] += time.perf_counter() - t0
        for name in args.paths:
            rates[name].append(args.batch_size * args.batches / spent[name])
        progress(f'[0 workers] repeat {r + 1}/{args.repeats}: ' + ', '.join(
            f'{n} {v[-1]:.1f} img/s' for n, v in rates.items()))
    return rates


def rates_with_workers(cfg, args, workers):
    """``workers`` > 0: each path in turn, a fresh dataloader per repeat (one untimed batch for
    the workers' start-up); img/s per worker."""
    rates = {name: [] for name in args.paths}
    for r in range(args.repeats):
        for name in args.paths:
            it = iter(build_loader(cfg, PIPELINE_PATHS[name], args.data, args.batch_size, workers))
            spent = sum(timed(it.__next__, 1, args.batches, CPU, name))
            rates[name].append(args.batch_size * args.batches / spent / workers)
            del it  # its workers stop before the next loader's start
            progress(f'[{workers} workers] repeat {r + 1}/{args.repeats} {name}: '
                     f'{rates[name][-1]:.1f} img/s per worker')
    return rates


def run_pipeline(args):
    cfg = load_cfg(args.config, args.cfg_options, args.allow_new_keys)
    rows, results = [], []
    for w in args.workers:
        rates = rates_with_workers(cfg, args, w) if w else rates_in_process(cfg, args)
        for name in args.paths:
            res = dict(path=name, workers=w, img_per_s_per_worker=np.median(rates[name]),
                       repeats=rates[name])
            if 'standard' in rates and name != 'standard':  # paired: the same repeat's load
                res['ratio_to_standard'] = np.median(
                    [a / b for a, b in zip(rates[name], rates['standard'])])
            results.append(res)
            rows.append([str(w), name, f"{res['img_per_s_per_worker']:.1f}",
                         f"{res['ratio_to_standard']:.2f}x" if 'ratio_to_standard' in res
                         else '-', ' '.join(f'{v:.0f}' for v in rates[name])])
    hw = hardware_summary(CPU)
    return report(f'Input pipeline of {args.config} over {args.data} (batch {args.batch_size}, '
                  f'{args.batches} timed batches x {args.repeats} repeats; 0 workers: the paths '
                  f'take turns batch by batch), {hw["cpu"]}, {hw["cores"]} cores',
                  ['workers', 'path', 'img/s per worker (median)',
                   'vs standard (median of paired ratios)', 'each repeat'], rows,
                  config=args.config, folder=args.data, batch_size=args.batch_size, hardware=hw,
                  results=results)


# ------------------------------------------------------------------------------ quality
def run_quality(args):
    """Each crop box decoded crop-aware and fully (decode, crop, resize with the same filter)."""
    from mmpretrain.registry import TRANSFORMS
    from PIL import Image

    from deepmim_mm.datasets.fast_paths import innermost_dataset
    from deepmim_mm.datasets.image_codec import PIL_FILTERS, decode_crop_resize, decode_rgb
    cfg = load_cfg(args.config, args.cfg_options, args.allow_new_keys)
    rrc_cfg = next(t for t in innermost_dataset(cfg.train_dataloader.dataset)['pipeline']
                   if t['type'] == 'RandomResizedCrop')
    rrc = TRANSFORMS.build(dict(rrc_cfg, type='RandomResizedCropBox'))
    files = list_images(args.data)[:args.files]
    np.random.seed(args.seed)
    per_scale = {}
    for k, f in enumerate(files):
        data = open(f, 'rb').read()
        full = decode_rgb(data)
        for _ in range(args.draws):
            top, left, h, w = box = rrc.transform(dict(img_shape=full.shape[:2]))['crop_box']
            ref = Image.fromarray(full[top:top + h, left:left + w]).resize(
                rrc.scale[::-1], PIL_FILTERS[rrc.interpolation])
            fast, scale = decode_crop_resize(data, box, rrc.scale, rrc.interpolation)
            mse = np.mean((np.asarray(ref, np.float64) - np.asarray(fast))**2)
            per_scale.setdefault(scale, []).append(float(mse))
        progress(f'quality: {k + 1}/{len(files)} files')
    mses = {f'1/{s}': v for s, v in sorted(per_scale.items())}  # per DCT scale, then all
    mses['all'] = [m for v in mses.values() for m in v]
    crops = len(mses['all'])
    results = [dict(dct_scale=s, fraction=len(v) / crops, psnr_db=psnr_db(v))
               for s, v in mses.items()]
    return report(f'Crop-aware decoding vs full decode + crop + resize, {crops} crops of '
                  f'{len(files)} files in {args.data} ({rrc_cfg})',
                  ['DCT scale', 'share of crops', 'PSNR dB (of the mean MSE)'],
                  [[r['dct_scale'], f"{100 * r['fraction']:.1f}%", f"{r['psnr_db']:.1f}"]
                   for r in results],
                  config=args.config, folder=args.data, crops=crops, results=results)


def psnr_db(mses):
    m = float(np.mean(mses))
    return float('inf') if m == 0 else float(10 * np.log10(255**2 / m))


# ------------------------------------------------------------------------------ end-to-end
def run_end_to_end(args):
    from deepmim_mm.datasets import apply_fast_path
    device = torch.device(args.device)
    cfg = apply_fast_path(load_cfg(args.config, args.cfg_options, args.allow_new_keys), args.path)
    bs = args.batch_size or cfg.train_dataloader.batch_size
    # cfg already has the path's pipeline and collate function: 'standard' keeps them
    loader = build_loader(cfg, 'standard', args.data, bs, args.workers,
                          pin_memory=device.type == 'cuda')
    model, optim_wrapper, ow_cfg, size = build_for_training(
        cfg, device, args.amp, args.fused_adamw, args.random_teachers)
    step = maybe_compile(model.train_step, cfg)
    synthetic = synthetic_batch(bs, size, device)
    batches = iter(loader)

    def img_per_s(next_batch, label):  # total wall time: stalls waiting for data count
        return bs * args.steps / sum(timed(lambda: step(next_batch(), optim_wrapper),
                                           args.warmup, args.steps, device, label))

    model_only = [img_per_s(lambda: synthetic, 'model')]
    e2e = img_per_s(batches.__next__, 'end-to-end')
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == 'cuda' else None
    model_only.append(img_per_s(lambda: synthetic, 'model'))
    del batches, loader
    res = dict(path=args.path, batch_size=bs, workers=args.workers,
               optim_wrapper=ow_cfg['type'], compile=bool(cfg.get('compile')),
               model_only_img_per_s=max(model_only), end_to_end_img_per_s=e2e,
               ratio=e2e / max(model_only), peak_mem_mib=peak)
    hw = hardware_summary(device)
    return report(f"End-to-end training of {args.config} from {args.data} ({args.path} path, "
                  f"{args.workers} workers, batch {bs}) on {hw.get('gpu', hw['cpu'])}",
                  ['path', 'model-only img/s (synthetic batch, best of 2)',
                   'end-to-end img/s (files)', 'end-to-end / model-only'],
                  [[args.path, f'{max(model_only):.1f}', f'{e2e:.1f}',
                    f"{100 * res['ratio']:.0f}%"]],
                  config=args.config, folder=args.data, hardware=hw, results=[res])


# ------------------------------------------------------------------------------ decoders
def decoder_backends(device, paths):
    """name -> function(``paths`` read as 1-D uint8 CPU tensors) -> decoded images; the last one is
    the whole device path of configs/pretrain/_base_/device_decode.py in the main process."""
    import warnings

    import torchvision.io as tio
    from mmengine.config import Config
    from mmengine.dataset import Compose
    from mmpretrain.registry import MODELS, TRANSFORMS

    from deepmim_mm.datasets import image_bytes_collate
    from deepmim_mm.datasets.data_preprocessor import torchcodec_decode_jpeg
    from deepmim_mm.datasets.image_codec import decode_rgb
    out = {}
    tc = torchcodec_decode_jpeg()
    if tc is not None:
        out['torchcodec'] = lambda files: tc(files, mode='RGB', device=device)
    warnings.filterwarnings('ignore', category=DeprecationWarning, module='torchvision')
    out['torchvision.io'] = lambda files: tio.decode_jpeg(
        files, mode=tio.ImageReadMode.RGB, device=device)
    out['pillow (1 CPU thread)'] = lambda files: [decode_rgb(f.numpy().tobytes()) for f in files]
    piece = Config.fromfile(osp.join(ROOT, 'configs', 'pretrain', '_base_', 'device_decode.py'))
    pipe = Compose([TRANSFORMS.build(t) for t in piece.device_decode_pipeline])
    batch = image_bytes_collate([pipe(dict(img_path=f)) for f in paths])
    pre = MODELS.build(piece.device_decode_preprocessor).to(device)
    out[f'DecodeDataPreprocessor ({pre.decoder}: decode + crop + resize + flip + normalise)'] = \
        lambda files: pre(batch, True)
    return out


def run_decoders(args):
    device = torch.device(args.device)
    paths = list_images(args.data)[:args.batch_size]
    files = [torch.frombuffer(bytearray(open(f, 'rb').read()), dtype=torch.uint8) for f in paths]
    results = []
    for name, fn in decoder_backends(device, paths).items():
        try:  # one untimed call first (CUDA context, nvJPEG handles)
            spent = sum(timed(lambda: fn(files), 1, args.batches, device, name))
            results.append(dict(decoder=name, img_per_s=len(files) * args.batches / spent))
        except Exception as e:  # a backend that does not work here is reported, not fatal
            results.append(dict(decoder=name, error=f'{type(e).__name__}: {e}'))
        progress(f'decoder {name}: {results[-1]}')
    rows = [[r['decoder'], f"{r['img_per_s']:.0f}" if 'img_per_s' in r else r['error'][:80]]
            for r in results]
    return report(f'Batched JPEG decoding of {len(files)} files from {args.data} on {device}',
                  ['decoder', 'img/s'], rows, folder=args.data, device=device.type,
                  hardware=hardware_summary(device), results=results)


# ------------------------------------------------------------------------------ common
def list_images(folder):
    """The image files in or under ``folder``, found (and a missing or empty folder named) by
    mmpretrain's ``CustomDataset``, as ``pipeline`` and ``end-to-end`` read it."""
    from mmpretrain.datasets import CustomDataset
    dataset = CustomDataset(data_root=folder, with_label=False)
    return [dataset.get_data_info(i)['img_path'] for i in range(len(dataset))]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = p.add_subparsers(dest='mode', required=True)
    m = sub.add_parser('make-set', help='JPEGs made from the bundled photos')
    m.add_argument('out')
    m.add_argument('--size', type=at_least(1), nargs=2, default=[1000, 750], metavar=('W', 'H'))
    m.add_argument('--count', type=at_least(1), default=400)
    m.add_argument('--quality', type=at_least(1), default=90)
    m.add_argument('--grain', type=float, default=3.0)
    m.add_argument('--seed', type=int, default=0)
    for name, help_ in (('pipeline', 'img/s per worker of the three input paths'),
                        ('quality', 'PSNR of crop-aware decoding against the full decode'),
                        ('end-to-end', 'training from files next to the model-only rate')):
        q = sub.add_parser(name, help=help_)
        q.add_argument('config', help='pretraining config (file or pkg::path.py)')
        q.add_argument('--data', required=True, help='folder of images')
        add_config_args(q)
        if name == 'pipeline':
            q.add_argument('--paths', nargs='+', choices=list(PIPELINE_PATHS),
                           default=list(PIPELINE_PATHS))
            q.add_argument('--workers', type=at_least(0), nargs='+', default=[0],
                           help='0: in this process, the paths taking turns batch by batch '
                                '(the per-worker rate, robust to load changes)')
            q.add_argument('--batch-size', type=at_least(1), default=32)
            q.add_argument('--batches', type=at_least(1), default=10)
            q.add_argument('--repeats', type=at_least(1), default=3)
        elif name == 'quality':
            q.add_argument('--files', type=at_least(1), default=100)
            q.add_argument('--draws', type=at_least(1), default=5, help='crops per file')
            q.add_argument('--seed', type=int, default=0)
        else:
            q.add_argument('--path', choices=['standard', 'crop-aware', 'device'],
                           default='device')
            q.add_argument('--workers', type=at_least(0), default=2)
            add_training_args(q, warmup=3, steps=10)
    d = sub.add_parser('decoders', help='batched JPEG decoders on one device')
    d.add_argument('--data', required=True)
    d.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    d.add_argument('--batch-size', type=at_least(1), default=128)
    d.add_argument('--batches', type=at_least(1), default=5)
    d.add_argument('--json')
    args = p.parse_args(argv)
    check_device(args)
    return args


MODES = {'make-set': run_make_set, 'pipeline': run_pipeline, 'quality': run_quality,
         'end-to-end': run_end_to_end, 'decoders': run_decoders}


def main(argv=None):
    args = parse_args(argv)
    return write_json(dict(mode=args.mode, **MODES[args.mode](args)), getattr(args, 'json', None))


if __name__ == '__main__':
    main()
