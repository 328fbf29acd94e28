"""Measurement helpers of tools/analysis/benchmark.py: host-sync detection, FLOP counting,
matmul peak, memory, config loading."""
import ctypes
import importlib.util
import os
import os.path as osp
import threading
import time
from collections import Counter
from typing import Optional

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


def resolve_config_path(path: str) -> str:
    """A config file, or ``pkg::rel/path.py`` inside an installed OpenMMLab package's configs."""
    if '::' in path:
        pkg, rel = path.split('::', 1)
        spec = importlib.util.find_spec(pkg)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f'config {path}: package {pkg!r} is not installed')
        full = osp.join(list(spec.submodule_search_locations)[0], '.mim', 'configs', rel)
    else:
        full = path
    if not osp.isfile(full):
        raise FileNotFoundError(f'config file not found: {path}')
    return full


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
