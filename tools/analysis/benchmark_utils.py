"""Measurement helpers of tools/analysis/benchmark.py and benchmark_data.py: host-sync
detection, FLOP counting, matmul peak, memory, config loading, building a model for training
steps, progress and tables."""
import ctypes
import json
import os
import os.path as osp
import sys
import threading
import time
from collections import Counter
from typing import Optional, Sequence

import torch
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
    """Records every operator that would synchronise the host with a GPU.

    Works on any device (also on the CPU, where nothing actually waits): ``.item()``, boolean
    indexing (``nonzero``), ``masked_select``, ``unique``, ``torch.equal``, repeat_interleave
    without ``output_size``, and copies from a GPU to the host. ``counts`` maps op -> calls.
    """

    def __init__(self):
        super().__init__()
        self.counts = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name
        flagged = name in SYNC_OPS
        if name in ('aten::index', 'aten::index_put', 'aten::index_put_'):
            idx = args[1] if len(args) > 1 else []
            flagged = any(isinstance(i, torch.Tensor) and i.dtype == torch.bool
                          for i in (idx or []))
        elif name == 'aten::repeat_interleave' and kwargs.get('output_size') is None \
                and isinstance(args[0], torch.Tensor) and args[0].device.type != 'cpu':
            flagged = True
        elif name in ('aten::_to_copy', 'aten::copy_') and args and \
                isinstance(args[0], torch.Tensor):
            src = args[1] if name == 'aten::copy_' else args[0]
            dst_dev = args[0].device if name == 'aten::copy_' else kwargs.get('device')
            flagged = (isinstance(src, torch.Tensor) and src.device.type != 'cpu'
                       and dst_dev is not None and torch.device(dst_dev).type == 'cpu')
        if flagged:
            self.counts[name] += 1
        return func(*args, **kwargs)


def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
    from torch.utils.flop_counter import sdpa_flop_count
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _sdpa_cpu_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args,
                            out_shape=None, **kwargs):
    from torch.utils.flop_counter import sdpa_backward_flop_count
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


def flop_counter():
    """``FlopCounterMode`` that also counts the CPU flash-attention kernels (torch registers the
    CUDA ones only)."""
    from torch.utils.flop_counter import FlopCounterMode
    custom = {}
    aten = torch.ops.aten
    if hasattr(aten, '_scaled_dot_product_flash_attention_for_cpu'):
        custom[aten._scaled_dot_product_flash_attention_for_cpu] = _sdpa_cpu_flop
        custom[aten._scaled_dot_product_flash_attention_for_cpu_backward] = (
            _sdpa_cpu_backward_flop)
    return FlopCounterMode(display=False, custom_mapping=custom)


def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype, size: Optional[int] = None,
                       reps: int = 5) -> float:
    """Best TFLOP/s of a square matmul on ``device`` in ``dtype`` (the MFU denominator)."""
    size = size or (8192 if device.type == 'cuda' else 2048)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    synchronize(device)
    best = float('inf')
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best / 1e12


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc)."""
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


def release_host_memory() -> None:
    """gc + glibc ``malloc_trim``, so an RSS baseline does not include freed memory."""
    import gc
    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


class RSSPeak:
    """Samples RSS every ``interval`` s in a thread while active; ``peak`` is the maximum."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def __enter__(self):
        self.peak = rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


def hardware_summary(device: torch.device) -> dict:
    import platform
    info = dict(torch=torch.__version__, python=platform.python_version(),
                threads=torch.get_num_threads(), cpu=_cpu_name(), cores=os.cpu_count())
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
        info['cuda'] = torch.version.cuda
    return info


def _cpu_name() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or 'unknown'


def progress(msg: str, end: bool = False) -> None:
    """One status line on stderr (rewritten in place on a terminal)."""
    if sys.stderr.isatty():
        sys.stderr.write('\r\033[K' + msg + ('\n' if end else ''))
    else:
        sys.stderr.write(msg + '\n')
    sys.stderr.flush()


def format_table(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    """A Markdown table."""
    cols = [[h] + [r[i] for r in rows] for i, h in enumerate(headers)]
    widths = [max(len(c) for c in col) for col in cols]

    def line(cells):
        return '| ' + ' | '.join(c.ljust(w) for c, w in zip(cells, widths)) + ' |'

    out = [line(headers), '|' + '|'.join('-' * (w + 2) for w in widths) + '|']
    return '\n'.join(out + [line(r) for r in rows])


def label_of(path: str) -> str:
    return osp.splitext(osp.basename(path.split('::')[-1]))[0]


def load_cfg(path: str, options=None, allow_new_keys: bool = False):
    """The config (file or ``pkg::path``) with ``--cfg-options`` checked and merged
    (:func:`deepmim_mm.engine.config_checks.load_config`), its default scope made current and
    its ``custom_imports`` imported (as the Runner does)."""
    from mmengine.registry import DefaultScope, init_default_scope

    import deepmim_mm  # noqa: F401  registers the plugin's modules
    from deepmim_mm.engine.config_checks import load_config
    cfg = load_config(path, options, allow_new_keys, import_custom=True)
    scope = cfg.get('default_scope', 'mmpretrain')
    current = DefaultScope.get_current_instance()
    if current is None or current.scope_name != scope:
        init_default_scope(scope)
    return cfg


def optim_wrapper_cfg(cfg, amp: str, device: torch.device, fused_adamw: bool = False) -> dict:
    """The config's optimizer wrapper for ``--amp`` (config | fp32 | bf16 | fp16): 'config' keeps
    it (AMP becomes fp32 on the CPU, as tools/train.py does)."""
    from deepmim_mm.engine.amp import fall_back_to_fp32_without_gpu, to_fp32_optim_wrapper
    ow = cfg.optim_wrapper.copy()
    if amp == 'fp32' and ow.get('type') == 'AmpOptimWrapper':
        to_fp32_optim_wrapper(ow)
    elif amp == 'config':
        fall_back_to_fp32_without_gpu(dict(optim_wrapper=ow), device=device.type)
    elif amp in ('bf16', 'fp16'):
        ow['type'] = 'AmpOptimWrapper'
        ow['dtype'] = 'bfloat16' if amp == 'bf16' else 'float16'
        ow.setdefault('loss_scale', 'dynamic')
    if fused_adamw:
        ow['optimizer'] = dict(ow['optimizer'], fused=True)
    return ow


def compute_dtype(ow: dict) -> str:
    """The autocast dtype of an optimizer wrapper config: 'float32', 'bfloat16', 'float16'."""
    if ow.get('type') == 'AmpOptimWrapper':
        return 'bfloat16' if str(ow.get('dtype')) == 'bfloat16' else (
            'float32' if str(ow.get('dtype')) == 'float32' else 'float16')
    return 'float32'


def compute_dtype_of(cfg, args, device: torch.device) -> str:
    return compute_dtype(optim_wrapper_cfg(cfg, args.amp, device, args.fused_adamw))


def img_size_of(cfg) -> int:
    size = cfg.model.get('backbone', {}).get('img_size', 224)
    return size if isinstance(size, int) else size[0]


def build_for_training(cfg, device: torch.device, amp: str = 'config', fused_adamw: bool = False,
                       random_teachers: bool = False):
    """The real model and optimizer wrapper (``MODELS.build`` + mmengine's
    ``build_optim_wrapper``, as the Runner does): (model, optim wrapper, its config, img size).
    ``random_teachers``: frozen teachers get random weights instead of their checkpoint file."""
    import logging

    from mmengine.logging import MMLogger
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.registry import MODELS
    MMLogger.get_current_instance().setLevel(logging.ERROR)  # per-parameter init reports
    model_cfg = cfg.model.copy()
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    if random_teachers and model_cfg.get('target_generator') is not None:
        model_cfg['target_generator'] = dict(model_cfg['target_generator'], checkpoint=None,
                                             random_init=True)
    model = MODELS.build(model_cfg)
    model.init_weights()
    model.to(device).train()
    ow_cfg = optim_wrapper_cfg(cfg, amp, device, fused_adamw)
    return model, build_optim_wrapper(model, ow_cfg), ow_cfg, img_size_of(cfg)


def synthetic_batch(batch_size: int, size: int, device: torch.device) -> dict:
    """A uint8 image batch already on the device, as a dataloader would deliver it."""
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, 256, (batch_size, 3, size, size), dtype=torch.uint8, generator=g)
    return dict(inputs=inputs.to(device), data_samples=[DataSample() for _ in range(batch_size)])


def write_json(out: dict, path: Optional[str]) -> dict:
    """Write ``out`` to ``path`` (if given) and return it."""
    if path:
        with open(path, 'w') as f:
            json.dump(out, f, indent=2)
        print(f'results written to {path}')
    return out
