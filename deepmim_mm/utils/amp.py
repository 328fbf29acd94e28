"""One rule for AMP configs on a machine without a GPU (tools/train.py, tools/analysis)."""
from typing import Optional

from mmengine.device import get_device
from mmengine.logging import print_log


def to_fp32_optim_wrapper(optim_wrapper: dict) -> None:
    """Turn an ``AmpOptimWrapper`` config into a plain fp32 ``OptimWrapper`` config, in place."""
    optim_wrapper['type'] = 'OptimWrapper'
    for key in ('loss_scale', 'dtype', 'use_fsdp'):  # AmpOptimWrapper's own arguments
        optim_wrapper.pop(key, None)


def fall_back_to_fp32_without_gpu(cfg, device: Optional[str] = None) -> None:
    """Run an AMP config in fp32 on ``device`` ``'cpu'`` (default: mmengine's ``get_device()``)
    with a warning, where ``AmpOptimWrapper`` would refuse to start."""
    optim = cfg.get('optim_wrapper')
    if optim is None or optim.get('type') != 'AmpOptimWrapper':
        return
    if (device or get_device()) != 'cpu':
        return
    print_log('No GPU: AmpOptimWrapper needs one, so this run trains in fp32 with '
              'OptimWrapper.', logger='current', level=30)
    to_fp32_optim_wrapper(optim)
