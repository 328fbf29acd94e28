"""Training-step benchmark of pretraining configs (model only, synthetic batch), each next to a
baseline measured in the same run; what each column means: docs/en/notes/input-and-benchmarks.md."""
import argparse
from functools import partial

import numpy as np
import torch

from benchmark_utils import (HostSyncRecorder, add_config_args, add_training_args,
                             build_for_training, check_device, compute_dtype, flop_counter,
                             format_table, hardware_summary, label_of, load_cfg, matmul_peak_tflops,
                             now, optim_wrapper_cfg, progress, release_host_memory, reset_peak_rss,
                             rss_bytes, synthetic_batch, timed, write_json)

DEFAULT_BASELINE = 'mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py'


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('configs', nargs='+', help='pretraining configs (files or pkg::path.py)')
    p.add_argument('--labels', nargs='+', help='one label per config (default: file names)')
    p.add_argument('--baseline', default=DEFAULT_BASELINE,
                   help=f'config every result is compared with, measured in the same run '
                        f'(default: {DEFAULT_BASELINE}); "none" for no baseline')
    add_training_args(p, warmup=5, steps=20, cpu_batch='; on the CPU: 8')
    add_config_args(p)
    p.add_argument('--baseline-cfg-options', nargs='+', action=DictAction,
                   help='overrides for the baseline config only (default: --cfg-options)')
    p.add_argument('--no-isolate', action='store_true',
                   help='on the CPU, measure every config in this process (default: each in a '
                        'fresh process, so that its RSS growth is its own)')
    args = p.parse_args(argv)
    if args.labels and len(args.labels) != len(args.configs):
        p.error(f'--labels: {len(args.labels)} labels for {len(args.configs)} configs')
    check_device(args)
    return args


def audit_step(model, data, optim_wrapper):
    """FLOPs of one training step, and the host-synchronising operators of forward+backward."""
    with flop_counter() as fc:
        model.train_step(data, optim_wrapper)
    with HostSyncRecorder() as rec:
        with optim_wrapper.optim_context(model):
            losses = model(**model.data_preprocessor(data, True), mode='loss')
        optim_wrapper.backward(model.parse_losses(losses)[0])
    optim_wrapper.zero_grad()
    return fc.get_total_flops(), dict(rec.counts)


def maybe_compile(step, cfg):
    """``torch.compile`` of the step as the Runner does for its ``compile`` key."""
    compile_cfg = cfg.get('compile')
    if not compile_cfg:
        return step
    return torch.compile(step, **({} if compile_cfg is True else dict(compile_cfg)))


def benchmark_config(path, label, options, args, device):
    """The result of one config (MFU is filled in by the caller)."""
    cfg = load_cfg(path, options, args.allow_new_keys)
    bs = args.batch_size or (cfg.train_dataloader.batch_size if device.type == 'cuda' else 8)
    release_host_memory()
    rss0 = rss_bytes()
    progress(f'[{label}] build')
    model, optim_wrapper, ow_cfg, size = build_for_training(cfg, device, args.amp,
                                                            args.fused_adamw,
                                                            args.random_teachers)
    data = synthetic_batch(bs, size, device)
    flops, syncs = audit_step(model, data, optim_wrapper)  # eager, before compiling
    step = maybe_compile(model.train_step, cfg)
    run = partial(step, data, optim_wrapper)
    timed(run, args.warmup, 0, device, label)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    reset_peak_rss()
    times = timed(run, 0, args.steps, device, label)
    if device.type == 'cuda':
        peak_mem, mem_kind = torch.cuda.max_memory_allocated(device), 'cuda max allocated'
    else:
        peak_mem, mem_kind = rss_bytes(peak=True) - rss0, 'RSS growth'
    p25, med, p75 = np.percentile(times, [25, 50, 75])
    progress(f'[{label}] done: {med * 1e3:.1f} ms/step')
    return dict(
        label=label, config=path, batch_size=bs, img_size=size, steps=args.steps,
        optim_wrapper=ow_cfg.get('type'), dtype=compute_dtype(ow_cfg),
        fused_adamw=bool(ow_cfg['optimizer'].get('fused', False)),
        compile=bool(cfg.get('compile')),
        step_ms_median=med * 1e3, step_ms_p25=p25 * 1e3, step_ms_p75=p75 * 1e3,
        img_per_s=bs / med,
        peak_mem_mib=peak_mem / 2**20, mem_kind=mem_kind,
        gflop_per_img=flops / bs / 1e9, achieved_tflops=flops / med / 1e12,
        host_sync_ops=syncs,
        params_m=sum(p.numel() for p in model.parameters()) / 1e6)


def _in_subprocess(*args):
    """``benchmark_config(*args)`` in a fresh (spawned) process, so its RSS is its own."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(1, mp_context=mp.get_context('spawn')) as pool:
        return pool.submit(benchmark_config, *args).result()


def training_table(results, baseline_label):
    base = next((r for r in results if r['label'] == baseline_label), None)
    rows = [[r['label'], str(r['batch_size']), f"{r['step_ms_median']:.1f}",
             f"{r['img_per_s']:.1f}", f"{r['peak_mem_mib']:.0f}", f"{r['gflop_per_img']:.2f}",
             f"{r['achieved_tflops']:.3f}", f"{100 * r['mfu']:.1f}%",
             str(sum(r['host_sync_ops'].values())),
             f"{r['img_per_s'] / base['img_per_s']:.2f}x" if base else '-',
             f"{r['peak_mem_mib'] / base['peak_mem_mib']:.2f}x"
             if base and base['peak_mem_mib'] > 0 else '-'] for r in results]
    return format_table(rows, [
        'config', 'batch', 'step ms (median)', 'img/s', f"peak MiB ({results[0]['mem_kind']})",
        'GFLOP/img', 'TFLOP/s', 'MFU', 'host syncs', 'img/s vs base', 'mem vs base'])


def run_training(args):
    device = torch.device(args.device)
    labels = args.labels or [label_of(c) for c in args.configs]
    jobs = []
    base_label = None
    if args.baseline and args.baseline.lower() != 'none':
        if args.baseline in args.configs:
            base_label = labels[args.configs.index(args.baseline)]
        else:
            base_label = 'baseline: ' + label_of(args.baseline)
            jobs.append((args.baseline, base_label,
                         args.baseline_cfg_options
                         if args.baseline_cfg_options is not None else args.cfg_options))
    jobs += [(c, lab, args.cfg_options) for c, lab in zip(args.configs, labels)]
    dtypes = {'float32'}  # every config loads (file, overrides) before anything is measured
    dtypes |= {compute_dtype(optim_wrapper_cfg(
        load_cfg(p, o, args.allow_new_keys), args.amp, device, args.fused_adamw))
        for p, _, o in jobs}
    peaks = {dt: matmul_peak_tflops(device, getattr(torch, dt)) for dt in dtypes}
    isolate = device.type == 'cpu' and not args.no_isolate
    measure = _in_subprocess if isolate else benchmark_config
    results = []
    for k, (path, label, opts) in enumerate(jobs):
        progress(f'config {k + 1}/{len(jobs)}: {label}')
        results.append(measure(path, label, opts, args, device))
    for result in results:
        result['peak_tflops'] = peaks[result['dtype']]
        result['mfu'] = result['achieved_tflops'] / result['peak_tflops']
    hw = hardware_summary(device)
    print(f'\nTraining step: {args.warmup} warm-up + {args.steps} timed steps, synthetic batch '
          f'on {device.type}, {now()[:16]} UTC')
    print(f"Hardware: {hw.get('gpu', hw['cpu'])}; torch {hw['torch']}, {hw['threads']} threads")
    print('Matmul peaks measured: ' + ', '.join(f'{k} {v:.3f} TFLOP/s' for k, v in peaks.items()))
    print(training_table(results, base_label))
    for r in results:
        if r['host_sync_ops']:
            print(f"  {r['label']}: host-sync ops in forward+backward: {r['host_sync_ops']}")
    return dict(mode='training', date=now(), device=device.type, hardware=hw,
                baseline=base_label, matmul_peak_tflops=peaks, results=results)


def main(argv=None):
    args = parse_args(argv)
    return write_json(run_training(args), args.json)


if __name__ == '__main__':
    main()
