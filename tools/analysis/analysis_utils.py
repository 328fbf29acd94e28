"""Helpers shared by the analysis tools: build a model from a config + checkpoint, read images
the way the model was trained on them, write CSV files."""
import csv
import os
import os.path as osp
import sys
from typing import Iterator, List, Optional, Sequence, Tuple

import torch

import deepmim_mm  # noqa: F401  registers the models

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')


def add_common_args(parser) -> None:
    """``--img``, ``--out-dir``, ``--device``, ``--batch-size``, ``--cfg-options``."""
    from mmengine.config import DictAction
    parser.add_argument('--img', nargs='+', required=True,
                        help='image files and/or folders (searched recursively)')
    parser.add_argument('--out-dir', required=True, help='where PNG and CSV files are written')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'],
                        help='device to run on (default: cpu)')
    parser.add_argument('--batch-size', type=int, default=8, help='images per forward pass')
    parser.add_argument('--max-images', type=int, default=None,
                        help='use at most this many images (sorted by path)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings (applied to every config), as in tools/train.py')


def add_model_args(parser, config_help: str = 'one config per model') -> None:
    """``--config`` (one or more), ``--checkpoint`` (one per config) and ``--name``."""
    parser.add_argument('--config', nargs='+', required=True, help=config_help)
    parser.add_argument('--checkpoint', nargs='+', required=True,
                        help='one checkpoint per config, same order')
    parser.add_argument('--name', nargs='+', help='display names (default: config file names)')


def check_device(device: str) -> torch.device:
    if device == 'cuda' and not torch.cuda.is_available():
        raise ValueError('--device cuda: no CUDA device is available; use --device cpu')
    return torch.device(device)


def collect_images(paths: Sequence[str], max_images: Optional[int] = None) -> List[str]:
    """Image files from files and folders (recursive, sorted); FileNotFoundError if none."""
    files = []
    for p in paths:
        if osp.isdir(p):
            found = []
            for dirpath, _, names in os.walk(p):
                found += [osp.join(dirpath, n) for n in names
                          if n.lower().endswith(IMG_EXTENSIONS)]
            files += sorted(found)
        elif osp.isfile(p):
            files.append(p)
        else:
            raise FileNotFoundError(f'--img: no such file or folder: {p}')
    if not files:
        raise FileNotFoundError(f'--img: no images ({", ".join(IMG_EXTENSIONS)}) in {list(paths)}')
    return files[:max_images] if max_images else files


def load_model(config: str, checkpoint: Optional[str], device: torch.device,
               cfg_options: Optional[dict] = None) -> torch.nn.Module:
    """Build ``cfg.model`` in its registry scope and load ``checkpoint`` into it (eval mode).

    Works for this plugin's ``DeepMIM`` and for mmpretrain's ``MAE`` / ``MFF`` configs. The
    checkpoint must fit the model exactly (:func:`deepmim_mm.checkpoint.load_checked_state`
    with nothing allowed to be new or dropped): a file of another format, size or model is an
    error naming the keys, not figures drawn from random weights. A missing file is a
    ``FileNotFoundError``, a file that is no checkpoint a ``NotACheckpointError``.
    """
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    from deepmim_mm.checkpoint import load_checked_state, read_state_dict
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file not found: {config}')
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    if cfg.get('data_preprocessor') is not None:  # as the Runner does
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(cfg.model)
    if checkpoint is not None:
        state = read_state_dict(checkpoint, 'checkpoint')
        load_checked_state(model, state, checkpoint, prefix=None, ignore=(),
                           field_name=f'checkpoint (for {osp.basename(config)})')
    else:
        model.init_weights()
    return model.to(device).eval()


def image_size(model: torch.nn.Module) -> int:
    """The square input size the backbone was built for (``patch_resolution * patch_size``)."""
    from deepmim_mm.analysis import vit_geometry
    (h, w), patch, _ = vit_geometry(model.backbone)
    if h != w:
        raise ValueError(f'only square token grids are supported, got {h}x{w}')
    return h * patch


def iter_batches(model: torch.nn.Module, files: Sequence[str], batch_size: int,
                 progress: bool = True) -> Iterator[Tuple[List[str], torch.Tensor]]:
    """Yield ``(paths, inputs)``: images read with mmpretrain's test-style pipeline (resize the
    short side to the model's size, centre crop, bicubic) and put through the model's own data
    preprocessor (normalisation, BGR->RGB), so they match what the model trained on.

    Shows an mmengine progress bar over images."""
    from mmengine.dataset import Compose, default_collate
    from mmengine.utils import ProgressBar
    size = image_size(model)
    pipeline = Compose([
        dict(type='LoadImageFromFile'),
        dict(type='ResizeEdge', scale=size, edge='short', backend='pillow',
             interpolation='bicubic'),
        dict(type='CenterCrop', crop_size=size),
        dict(type='PackInputs'),
    ])
    bar = ProgressBar(len(files)) if progress else None
    for start in range(0, len(files), batch_size):
        chunk = list(files[start:start + batch_size])
        data = default_collate([pipeline(dict(img_path=f)) for f in chunk])
        inputs = model.data_preprocessor(data, False)['inputs']
        yield chunk, inputs
        if bar is not None:
            for _ in chunk:
                bar.update()
    if bar is not None:
        sys.stdout.write('\n')


def write_csv(path: str, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow([f'{v:.6g}' if isinstance(v, float) else v for v in r])


def model_names(configs: Sequence[str], names: Optional[Sequence[str]]) -> List[str]:
    if names:
        if len(names) != len(configs):
            raise ValueError(f'--name: {len(names)} names for {len(configs)} configs')
        return list(names)
    return [osp.splitext(osp.basename(c))[0] for c in configs]


def safe_name(s: str) -> str:
    return ''.join(c if c.isalnum() or c in '-_.' else '_' for c in s)
