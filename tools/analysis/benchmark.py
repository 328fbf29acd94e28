"""Training-step benchmark of pretraining configs, and input-pipeline benchmark.

Mode 1 (default): for every CONFIG (and a baseline, mmpretrain's own MAE by default) build the
real model and optimizer wrapper (``MODELS.build`` + mmengine's ``build_optim_wrapper``, as the
Runner does), run warm-up then timed training steps (``model.train_step``: data preprocessor,
forward, backward, optimizer step) on a synthetic uint8 batch already on the device, and print:
median step time, img/s, peak memory, FLOPs per image (``torch.utils.flop_counter`` on one step),
achieved TFLOP/s and MFU against a matmul peak measured on the device in the compute dtype,
host-synchronising operators in forward+backward, and throughput / memory ratios to the baseline.

    python tools/analysis/benchmark.py \\
        configs/pretrain/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py \\
        configs/pretrain/deepmim_vit-base-p16_8xb512-amp-coslr-300e_in1k.py \\
        --device cuda --batch-size 256 --amp bf16 --json bench.json

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over the timed steps (parameters,
gradients, optimizer state, activations); on the CPU the growth of the process's resident set
size (RSS, sampled every 2 ms) from before the model was built to the peak of the timed steps:
an estimate that includes allocator caching; each config runs in its own fresh process on the
CPU (``--no-isolate`` to disable) so one config's memory does not count for another. ``state`` is the exact size of parameters +
gradients + optimizer state. ``compile=True`` in a config (mmengine's Runner key) compiles
``train_step`` as the Runner does; its compile time is part of the warm-up.

Mode 2 (``--data-pipeline DIR``): the first config's training pipeline over the images in DIR
(mmpretrain ``CustomDataset``, mmengine's dataloader builder with the config's collate function),
images/s for each ``--workers`` count, to see whether data loading keeps up with the model.
"""
import argparse
import json
import os.path as osp
import statistics
import sys
import time
from datetime import datetime, timezone

import torch

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import deepmim_mm  # noqa: E402,F401
from benchmark_utils import (HostSyncRecorder, RSSPeak, flop_counter,  # noqa: E402
                             hardware_summary, matmul_peak_tflops, release_host_memory,
                             resolve_config_path, rss_bytes, synchronize)

DEFAULT_BASELINE = 'mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'
AMP_CHOICES = ('config', 'fp32', 'bf16', 'fp16')


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('configs', nargs='+', help='pretraining configs (files or pkg::path.py)')
    p.add_argument('--labels', nargs='+', help='one label per config (default: file names)')
    p.add_argument('--baseline', default=DEFAULT_BASELINE,
                   help=f'config every result is compared with, measured in the same run '
                        f'(default: {DEFAULT_BASELINE}); "none" for no baseline')
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--batch-size', type=int, default=None,
                   help='images per step (default: the config\'s train_dataloader.batch_size; '
                        'training mode on the CPU: 8)')
    p.add_argument('--amp', default='config', choices=AMP_CHOICES,
                   help='config: the config\'s optimizer wrapper (on the CPU an AmpOptimWrapper '
                        'becomes fp32 OptimWrapper); fp32; bf16 / fp16: AmpOptimWrapper with '
                        'that dtype (GPU only)')
    p.add_argument('--fused-adamw', action='store_true',
                   help='optimizer.fused=True (one fused kernel, no GradScaler host sync)')
    p.add_argument('--warmup', type=int, default=5, help='untimed steps first')
    p.add_argument('--steps', type=int, default=20, help='timed steps')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='overrides applied to every config (and the baseline unless '
                        '--baseline-cfg-options is given)')
    p.add_argument('--baseline-cfg-options', nargs='+', action=DictAction,
                   help='overrides for the baseline config only')
    p.add_argument('--random-teachers', action='store_true',
                   help='build frozen teachers (CLIP, hybrid) with random weights instead of '
                        'loading their checkpoint files: same cost, no file needed')
    p.add_argument('--no-isolate', action='store_true',
                   help='on the CPU, measure every config in this process (default: each in a '
                        'fresh process, so that its RSS growth is its own)')
    p.add_argument('--json', help='also write the results to this JSON file')
    p.add_argument('--data-pipeline', metavar='DIR',
                   help='mode 2: measure the first config\'s train pipeline over images in DIR')
    p.add_argument('--workers', type=int, nargs='+', default=[0, 1, 2, 4],
                   help='mode 2: dataloader worker counts to measure')
    p.add_argument('--batches', type=int, default=10,
                   help='mode 2: timed batches per worker count (after one untimed batch)')
    args = p.parse_args(argv)
    if args.labels and len(args.labels) != len(args.configs):
        p.error(f'--labels: {len(args.labels)} labels for {len(args.configs)} configs')
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise ValueError('--device cuda: no CUDA device is available; use --device cpu')
    if args.device == 'cpu' and args.amp in ('bf16', 'fp16'):
        raise ValueError(f'--amp {args.amp}: mmengine\'s AmpOptimWrapper needs a GPU; '
                         'accepted on --device cpu: config, fp32')
    for name in ('warmup', 'steps', 'batches'):
        if getattr(args, name) < (0 if name == 'warmup' else 1):
            raise ValueError(f'--{name} must be positive, got {getattr(args, name)}')
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f'--batch-size must be positive, got {args.batch_size}')
    return args


def progress(msg: str, end: bool = False) -> None:
    """One status line on stderr (rewritten in place on a terminal)."""
    if sys.stderr.isatty():
        sys.stderr.write('\r\033[K' + msg + ('\n' if end else ''))
    else:
        sys.stderr.write(msg + '\n')
    sys.stderr.flush()


def load_cfg(path: str, options=None):
    from mmengine.config import Config
    cfg = Config.fromfile(resolve_config_path(path))
    if options:
        cfg.merge_from_dict(options)
    return cfg


def optim_wrapper_cfg(cfg, args):
    ow = cfg.optim_wrapper.copy()
    if args.amp == 'fp32' or (args.amp == 'config' and args.device == 'cpu'
                              and ow.get('type') == 'AmpOptimWrapper'):
        ow['type'] = 'OptimWrapper'
        for k in ('loss_scale', 'dtype', 'use_fsdp'):
            ow.pop(k, None)
    elif args.amp in ('bf16', 'fp16'):
        ow['type'] = 'AmpOptimWrapper'
        ow['dtype'] = 'bfloat16' if args.amp == 'bf16' else 'float16'
        ow.setdefault('loss_scale', 'dynamic')
    if args.fused_adamw:
        ow['optimizer'] = dict(ow['optimizer'], fused=True)
    return ow


def compute_dtype(ow: dict) -> torch.dtype:
    if ow.get('type') == 'AmpOptimWrapper':
        return {'bfloat16': torch.bfloat16, 'float32': torch.float32}.get(
            str(ow.get('dtype')), torch.float16)
    return torch.float32


def img_size_of(cfg) -> int:
    size = cfg.model.get('backbone', {}).get('img_size', 224)
    return size if isinstance(size, int) else size[0]


def benchmark_config(path, label, options, args, device):
    """Build, measure, free. Returns a result dict (MFU is filled in by the caller)."""
    import logging
    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().setLevel(logging.ERROR)  # per-parameter init reports
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope, init_default_scope
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample

    cfg = load_cfg(path, options)
    scope = cfg.get('default_scope', 'mmpretrain')
    if DefaultScope.get_current_instance() is None or \
            DefaultScope.get_current_instance().scope_name != scope:
        init_default_scope(scope)
    if cfg.get('custom_imports'):
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
    bs = args.batch_size or (cfg.train_dataloader.batch_size if device.type == 'cuda' else 8)
    release_host_memory()
    rss0 = rss_bytes()
    progress(f'[{label}] build')
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    if args.random_teachers and model_cfg.get('target_generator') is not None:
        model_cfg['target_generator'] = dict(model_cfg['target_generator'], checkpoint=None,
                                             random_init=True)
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.to(device).train()
    ow_cfg = optim_wrapper_cfg(cfg, args)
    optim_wrapper = build_optim_wrapper(model, ow_cfg)
    size = img_size_of(cfg)
    g = torch.Generator().manual_seed(0)
    data = dict(inputs=torch.randint(0, 256, (bs, 3, size, size), dtype=torch.uint8,
                                     generator=g).to(device),
                data_samples=[DataSample() for _ in range(bs)])

    # FLOPs and host-sync audit on one eager step each (before compiling).
    progress(f'[{label}] count FLOPs')
    with flop_counter() as fc:
        model.train_step(data, optim_wrapper)
    flops = fc.get_total_flops()
    with HostSyncRecorder() as rec:
        with optim_wrapper.optim_context(model):
            d = model.data_preprocessor(data, True)
            losses = model._run_forward(d, mode='loss')
        loss, _ = model.parse_losses(losses)
        optim_wrapper.backward(loss)
    optim_wrapper.zero_grad()
    syncs = dict(rec.counts)

    step = model.train_step
    compile_cfg = cfg.get('compile')
    if compile_cfg:  # as mmengine's Runner._maybe_compile
        # (param groups are plain dicts, which dynamo needs: deepmim_mm.utils.compat fix 7)
        step = torch.compile(step, **({} if compile_cfg is True else dict(compile_cfg)))
    for i in range(args.warmup):
        progress(f'[{label}] warm-up {i + 1}/{args.warmup}')
        step(data, optim_wrapper)
    synchronize(device)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    with RSSPeak() as rss:
        for i in range(args.steps):
            t = time.perf_counter()
            step(data, optim_wrapper)
            synchronize(device)  # mmengine's loop waits for the losses every step as well
            times.append(time.perf_counter() - t)
            progress(f'[{label}] step {i + 1}/{args.steps}: {times[-1] * 1e3:.1f} ms')
    if device.type == 'cuda':
        peak_mem, mem_kind = torch.cuda.max_memory_allocated(device), 'cuda max allocated'
    else:
        peak_mem, mem_kind = rss.peak - rss0, 'RSS growth'
    state = sum(p.numel() * p.element_size() * (2 if p.requires_grad else 1)
                for p in model.parameters())
    for st in optim_wrapper.optimizer.state.values():
        state += sum(v.numel() * v.element_size() for v in st.values()
                     if isinstance(v, torch.Tensor))
    med = statistics.median(times)
    dtype = compute_dtype(ow_cfg)
    progress(f'[{label}] done: {med * 1e3:.1f} ms/step', end=True)
    result = dict(
        label=label, config=path, batch_size=bs, img_size=size, steps=args.steps,
        optim_wrapper=ow_cfg.get('type'), dtype=str(dtype).replace('torch.', ''),
        fused_adamw=bool(ow_cfg['optimizer'].get('fused', False)), compile=bool(compile_cfg),
        step_ms_median=med * 1e3, step_ms_p25=_q(times, 0.25) * 1e3,
        step_ms_p75=_q(times, 0.75) * 1e3, img_per_s=bs / med,
        peak_mem_mib=peak_mem / 2**20, mem_kind=mem_kind, state_mib=state / 2**20,
        gflop_per_img=flops / bs / 1e9, achieved_tflops=flops / med / 1e12,
        host_sync_ops=syncs,
        params_m=sum(p.numel() for p in model.parameters()) / 1e6)
    del model, optim_wrapper, step, data
    release_host_memory()
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    return result


def _child(queue, *a):
    try:
        queue.put(('ok', benchmark_config(*a)))
    except BaseException as e:  # report it in the parent
        import traceback
        queue.put(('error', f'{type(e).__name__}: {e}\n{traceback.format_exc()}'))


def _in_subprocess(path, label, opts, args, device):
    """One config in a fresh (spawned) process, so its RSS is its own."""
    import multiprocessing as mp
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue, path, label, opts, args, device))
    proc.start()
    status, payload = queue.get()
    proc.join()
    if status != 'ok':
        raise RuntimeError(f'benchmark of {path} failed:\n{payload}')
    return payload


def _q(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1) + 0.5))]


def format_table(rows, headers):
    cols = [[h] + [r[i] for r in rows] for i, h in enumerate(headers)]
    widths = [max(len(c) for c in col) for col in cols]
    line = lambda cells: '| ' + ' | '.join(c.ljust(w) for c, w in zip(cells, widths)) + ' |'  # noqa
    out = [line(headers), '|' + '|'.join('-' * (w + 2) for w in widths) + '|']
    out += [line(r) for r in rows]
    return '\n'.join(out)


def training_table(results, baseline_label):
    base = next((r for r in results if r['label'] == baseline_label), None)
    rows = []
    for r in results:
        syncs = sum(r['host_sync_ops'].values())
        rows.append([
            r['label'], str(r['batch_size']), f"{r['step_ms_median']:.1f}",
            f"{r['img_per_s']:.1f}", f"{r['peak_mem_mib']:.0f}", f"{r['state_mib']:.0f}",
            f"{r['gflop_per_img']:.2f}", f"{r['achieved_tflops']:.3f}", f"{100 * r['mfu']:.1f}%",
            str(syncs),
            f"{r['img_per_s'] / base['img_per_s']:.2f}x" if base else '-',
            f"{r['peak_mem_mib'] / base['peak_mem_mib']:.2f}x"
            if base and base['peak_mem_mib'] > 0 else '-'])
    mem = results[0]['mem_kind'] if results else ''
    return format_table(rows, [
        'config', 'batch', 'step ms (median)', 'img/s', f'peak MiB ({mem})', 'state MiB',
        'GFLOP/img', 'TFLOP/s', 'MFU', 'host syncs', 'img/s vs base', 'mem vs base'])


def run_training(args):
    device = torch.device(args.device)
    labels = args.labels or [_label(c) for c in args.configs]
    jobs = []
    base_label = None
    if args.baseline and args.baseline.lower() != 'none':
        if args.baseline in args.configs:
            base_label = labels[args.configs.index(args.baseline)]
        else:
            base_label = 'baseline: ' + _label(args.baseline)
            jobs.append((args.baseline, base_label,
                         args.baseline_cfg_options
                         if args.baseline_cfg_options is not None else args.cfg_options))
    jobs += [(c, lab, args.cfg_options) for c, lab in zip(args.configs, labels)]
    for path, _, _ in jobs:  # every file exists before anything is measured
        resolve_config_path(path)
    peaks, results = {}, []
    dtypes = {torch.float32}
    dtypes |= {compute_dtype(optim_wrapper_cfg(load_cfg(p, o), args)) for p, _, o in jobs}
    for dt in dtypes:  # measured before and after the configs (best of both: less noise)
        progress(f'measuring the {dt} matmul peak', end=True)
        peaks[dt] = matmul_peak_tflops(device, dt)
    isolate = device.type == 'cpu' and not args.no_isolate
    for k, (path, label, opts) in enumerate(jobs):
        progress(f'config {k + 1}/{len(jobs)}: {label}', end=True)
        if isolate:
            result = _in_subprocess(path, label, opts, args, device)
        else:
            result = benchmark_config(path, label, opts, args, device)
        results.append(result)
    for dt in dtypes:
        peaks[dt] = max(peaks[dt], matmul_peak_tflops(device, dt))
    for result in results:
        peak = peaks[getattr(torch, result['dtype'])]
        result['peak_tflops'] = peak
        result['mfu'] = result['achieved_tflops'] / peak
    hw = hardware_summary(device)
    print(f'\nTraining step: {args.warmup} warm-up + {args.steps} timed steps, synthetic batch '
          f'on {device.type}, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC')
    print(f"Hardware: {hw.get('gpu', hw['cpu'])}; torch {hw['torch']}, {hw['threads']} threads")
    print('Matmul peaks measured: ' + ', '.join(
        f"{str(k).replace('torch.', '')} {v:.3f} TFLOP/s" for k, v in peaks.items()))
    print(training_table(results, base_label))
    for r in results:
        if r['host_sync_ops']:
            print(f"  {r['label']}: host-sync ops in forward+backward: {r['host_sync_ops']}")
    return dict(mode='training', date=datetime.now(timezone.utc).isoformat(),
                device=device.type, hardware=hw, baseline=base_label,
                matmul_peak_tflops={str(k).replace('torch.', ''): v for k, v in peaks.items()},
                results=results)


def find_pipeline(cfg):
    ds = cfg.train_dataloader.dataset
    while 'pipeline' not in ds and 'dataset' in ds:
        ds = ds.dataset
    if 'pipeline' not in ds:
        raise ValueError('--data-pipeline: the config has no train_dataloader.dataset.pipeline')
    return ds.pipeline


def run_pipeline(args):
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    if not osp.isdir(args.data_pipeline):
        raise FileNotFoundError(f'--data-pipeline: no such folder: {args.data_pipeline}')
    cfg = load_cfg(args.configs[0], args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    bs = args.batch_size or cfg.train_dataloader.batch_size
    results = []
    for w in args.workers:
        if w < 0:
            raise ValueError(f'--workers: counts must be >= 0, got {w}')
        loader = Runner.build_dataloader(dict(
            batch_size=bs, num_workers=w, persistent_workers=False,
            sampler=dict(type='InfiniteSampler', shuffle=True),
            collate_fn=cfg.train_dataloader.get('collate_fn', dict(type='pseudo_collate')),
            dataset=dict(type='CustomDataset', data_root=args.data_pipeline, with_label=False,
                         pipeline=find_pipeline(cfg))), seed=0)
        if len(loader.dataset) == 0:
            raise FileNotFoundError(f'--data-pipeline: no images in {args.data_pipeline}')
        it = iter(loader)
        t0 = time.perf_counter()
        next(it)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(args.batches):
            next(it)
            progress(f'[{w} workers] batch {i + 1}/{args.batches}')
        dt = time.perf_counter() - t0
        del it, loader
        results.append(dict(workers=w, batch_size=bs, batches=args.batches,
                            img_per_s=bs * args.batches / dt, batch_ms=dt / args.batches * 1e3,
                            first_batch_s=first))
    progress('done', end=True)
    hw = hardware_summary(torch.device('cpu'))
    print(f'\nInput pipeline of {args.configs[0]} over {args.data_pipeline} '
          f'(batch {bs}, {args.batches} timed batches), {hw["cpu"]}, {hw["cores"]} cores')
    print(format_table([[str(r['workers']), f"{r['img_per_s']:.1f}", f"{r['batch_ms']:.1f}",
                         f"{r['first_batch_s']:.2f}"] for r in results],
                       ['workers', 'img/s', 'ms/batch', 'first batch s']))
    print('Data loading keeps up when img/s here >= img/s of the training step on this machine.')
    return dict(mode='data_pipeline', date=datetime.now(timezone.utc).isoformat(),
                config=args.configs[0], folder=args.data_pipeline, hardware=hw,
                results=results)


def _label(path):
    return osp.splitext(osp.basename(path.split('::')[-1]))[0]


def main(argv=None):
    args = parse_args(argv)
    out = run_pipeline(args) if args.data_pipeline else run_training(args)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=2)
        print(f'results written to {args.json}')
    return out


if __name__ == '__main__':
    main()
