"""Measurement helpers shared by tools/analysis/benchmark.py and benchmark_data.py."""
import argparse
import ctypes
import os
import os.path as osp
import platform
import sys
import time
from collections import Counter
from contextlib import suppress
from datetime import datetime, timezone
from typing import Callable, List, Optional, Sequence

import torch
from mmengine.fileio import dump
from torch.utils._python_dispatch import TorchDispatchMode

# Operators that make the host wait for the device (a value or a data-dependent shape has to come
# back): on a GPU each one stalls the launch queue.
SYNC_OPS = {
    'aten::_local_scalar_dense',  # .item(), float(t), bool(t), if t: ...
    'aten::nonzero', 'aten::masked_select', 'aten::_unique', 'aten::_unique2',
    'aten::unique_dim', 'aten::unique_consecutive', 'aten::equal', 'aten::is_nonzero',
    'aten::allclose', 'aten::nonzero_static',
}


class HostSyncRecorder(TorchDispatchMode):
    """Counts (``counts``: op -> calls) every operator that would synchronise the host with a
    GPU, on any device: the ``SYNC_OPS``, boolean indexing, ``repeat_interleave`` without
    ``output_size`` and copies from a GPU to the host."""

    def __init__(self):
        super().__init__()
        self.counts = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name
        flagged = name in SYNC_OPS
        if name in ('aten::index', 'aten::index_put', 'aten::index_put_'):  # by a boolean mask
            flagged = any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1])
        elif name == 'aten::repeat_interleave':  # the output's length comes back
            flagged = kwargs.get('output_size') is None and args[0].device.type != 'cpu'
        elif name == 'aten::copy_':  # dst.copy_(src)
            flagged = args[1].device.type != 'cpu' and args[0].device.type == 'cpu'
        elif name == 'aten::_to_copy':  # src.to(device)
            flagged = args[0].device.type != 'cpu' and kwargs.get('device') is not None \
                and torch.device(kwargs['device']).type == 'cpu'
        if flagged:
            self.counts[name] += 1
        return func(*args, **kwargs)


def flop_counter():
    """``FlopCounterMode`` that also counts the CPU flash-attention kernels, with torch's
    formulas for the CUDA ones (torch registers those only)."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop, sdpa_flop
    aten = torch.ops.aten
    return FlopCounterMode(display=False, custom_mapping={
        aten._scaled_dot_product_flash_attention_for_cpu: sdpa_flop.__wrapped__,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: sdpa_backward_flop.__wrapped__})


def timed(fn: Callable, warmup: int, steps: int, device: torch.device, label: str) -> List[float]:
    """Seconds of each of ``steps`` calls of ``fn()`` after ``warmup`` untimed ones, the device
    synchronised after each call (mmengine's loop waits for the losses every step as well)."""
    sync = torch.cuda.synchronize if device.type == 'cuda' else lambda: None
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for i in range(steps):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
        progress(f'[{label}] step {i + 1}/{steps}: {times[-1] * 1e3:.1f} ms')
    return times


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype) -> float:
    """Best TFLOP/s of 5 square matmuls on ``device`` in ``dtype`` (the MFU denominator)."""
    n = 8192 if device.type == 'cuda' else 1024
    a, b = torch.randn(2, n, n, device=device, dtype=dtype)
    return 2 * n**3 / min(timed(lambda: a @ b, 2, 5, device, f'{dtype} matmul')) / 1e12


def rss_bytes(peak: bool = False) -> int:
    """Resident set size of this process, or its peak since :func:`reset_peak_rss` (Linux)."""
    key = 'VmHWM:' if peak else 'VmRSS:'
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))


def reset_peak_rss() -> None:
    """Start a new peak for ``rss_bytes(peak=True)`` (Linux >= 4.0)."""
    with suppress(OSError), open('/proc/self/clear_refs', 'w') as f:
        f.write('5')


def release_host_memory() -> None:
    """gc + glibc ``malloc_trim``, so an RSS baseline does not include freed memory."""
    import gc
    gc.collect()
    with suppress(OSError, AttributeError):
        ctypes.CDLL('libc.so.6').malloc_trim(0)


def hardware_summary(device: torch.device) -> dict:
    with open('/proc/cpuinfo') as f:
        cpu = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')),
                   platform.processor())
    info = dict(torch=torch.__version__, python=platform.python_version(),
                threads=torch.get_num_threads(), cpu=cpu, cores=os.cpu_count())
    if device.type == 'cuda':
        info.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda)
    return info


def now() -> str:
    return datetime.now(timezone.utc).isoformat()


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def format_table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    return '\n'.join('| ' + ' | '.join(r) + ' |'
                     for r in [headers, ['---'] * len(headers), *rows])


def report(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]], **result) -> dict:
    """Print ``title`` and the Markdown table; ``result`` with the date, for the JSON."""
    print(f'\n{title}\n{format_table(rows, headers)}')
    return dict(date=now(), **result)


def at_least(low: int) -> Callable[[str], int]:
    """argparse type: an integer >= ``low``."""
    def parse(v: str) -> int:
        if int(v) < low:
            raise argparse.ArgumentTypeError(f'must be >= {low}, got {v}')
        return int(v)
    return parse


def add_config_args(p: argparse.ArgumentParser) -> None:
    """``--cfg-options``, ``--allow-new-keys`` and ``--json``."""
    from deepmim_mm.utils import add_cfg_options
    add_cfg_options(p)
    p.add_argument('--json', help='also write the results to this JSON file')


def add_training_args(p: argparse.ArgumentParser, warmup: int, steps: int,
                      cpu_batch: str = '') -> None:
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--batch-size', type=at_least(1),
                   help=f"images per step (default: the config's train_dataloader.batch_size"
                        f'{cpu_batch})')
    p.add_argument('--amp', default='config', choices=['config', 'fp32', 'bf16', 'fp16'],
                   help="config: the config's optimizer wrapper (on the CPU an AmpOptimWrapper "
                        'becomes fp32 OptimWrapper); fp32; bf16 / fp16: AmpOptimWrapper with '
                        'that dtype (GPU only)')
    p.add_argument('--fused-adamw', action='store_true',
                   help='optimizer.fused=True (one fused kernel, no GradScaler host sync)')
    p.add_argument('--random-teachers', action='store_true',
                   help='build frozen teachers (CLIP, hybrid) with random weights instead of '
                        'loading their checkpoint files: same cost, no file needed')
    p.add_argument('--warmup', type=at_least(0), default=warmup, help='untimed steps first')
    p.add_argument('--steps', type=at_least(1), default=steps, help='timed steps')


def check_device(args: argparse.Namespace) -> None:
    """``--device cuda`` needs a GPU; ``--amp bf16/fp16`` needs ``--device cuda``."""
    device = getattr(args, 'device', 'cpu')
    if device == 'cuda' and not torch.cuda.is_available():
        raise ValueError('--device cuda: no CUDA device is available; use --device cpu')
    if device == 'cpu' and getattr(args, 'amp', None) in ('bf16', 'fp16'):
        raise ValueError(f"--amp {args.amp}: mmengine's AmpOptimWrapper needs a GPU; "
                         'accepted on --device cpu: config, fp32')


def label_of(path: str) -> str:
    return osp.splitext(osp.basename(path.split('::')[-1]))[0]


def load_cfg(path: str, options=None, allow_new_keys: bool = False):
    """The config as tools/train.py reads it: stack fixes applied, its default scope current."""
    from mmengine.registry import init_default_scope

    from deepmim_mm.utils import load_config  # importing deepmim_mm registers its modules
    cfg = load_config(path, options, allow_new_keys)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    return cfg


def optim_wrapper_cfg(cfg, amp: str, device: torch.device, fused_adamw: bool = False) -> dict:
    """The config's optimizer wrapper for ``--amp`` (config | fp32 | bf16 | fp16): 'config' keeps
    it (AMP becomes fp32 on the CPU, as tools/train.py does)."""
    from deepmim_mm.utils import fall_back_to_fp32_without_gpu, to_fp32_optim_wrapper
    ow = cfg.optim_wrapper.copy()
    if amp == 'fp32' and ow.get('type') == 'AmpOptimWrapper':
        to_fp32_optim_wrapper(ow)
    elif amp == 'config':
        fall_back_to_fp32_without_gpu(dict(optim_wrapper=ow), device=device.type)
    elif amp in ('bf16', 'fp16'):
        ow['type'] = 'AmpOptimWrapper'
        ow['dtype'] = 'bfloat16' if amp == 'bf16' else 'float16'
    if fused_adamw:
        ow['optimizer'] = dict(ow['optimizer'], fused=True)
    return ow


def compute_dtype(ow: dict) -> str:
    """The autocast dtype of an optimizer wrapper config: 'float32', 'bfloat16', 'float16'."""
    if ow.get('type') != 'AmpOptimWrapper':
        return 'float32'
    return str(ow.get('dtype') or 'float16').replace('torch.', '')  # AmpOptimWrapper's default


def build_for_training(cfg, device: torch.device, amp: str = 'config', fused_adamw: bool = False,
                       random_teachers: bool = False):
    """(model, optim wrapper, its config, img size), built as the Runner builds them."""
    import logging

    from mmengine.logging import MMLogger
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.registry import MODELS

    from deepmim_mm.analysis import model_input_size
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    if random_teachers and model_cfg.get('target_generator') is not None:
        model_cfg['target_generator'] = dict(model_cfg['target_generator'], checkpoint=None,
                                             random_init=True)
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.ERROR)  # per-parameter init reports, for the build only
    try:
        model = MODELS.build(model_cfg)
        model.init_weights()
    finally:
        logger.setLevel(level)
    model.to(device).train()
    ow_cfg = optim_wrapper_cfg(cfg, amp, device, fused_adamw)
    return model, build_optim_wrapper(model, ow_cfg), ow_cfg, model_input_size(model)


def synthetic_batch(batch_size: int, size: int, device: torch.device) -> dict:
    """A uint8 image batch already on the device, as a dataloader would deliver it."""
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8, generator=g)
    return dict(inputs=inputs.to(device), data_samples=[DataSample() for _ in range(batch_size)])


def write_json(out: dict, path: Optional[str]) -> dict:
    if path:
        dump(out, path, indent=2)
        print(f'results written to {path}')
    return out
