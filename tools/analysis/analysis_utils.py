"""Helpers shared by the analysis tools: their common arguments (``CONFIG CHECKPOINT`` pairs,
``--img``...), building models from configs + checkpoints that must fit exactly, reading images
the way the models were trained on them, writing CSV files, and :func:`run`, which turns the
errors a user can fix into one line and exit status 1."""
import csv
import os
import os.path as osp
import pickle
import sys
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import torch

import deepmim_mm  # noqa: F401  registers the models
from deepmim_mm.checkpoint import NotACheckpointError
from deepmim_mm.datasets import LoadImageFromFileChecked
from deepmim_mm.datasets.transforms import corrupt_image
from deepmim_mm.engine.config_checks import ALLOW_NEW_FLAG

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')
CONFIG_EXTENSIONS = ('.py', '.json', '.yaml', '.yml')  # what Config.fromfile reads


class InputError(ValueError):
    """A bad input the user can fix (a file, an option, a config that does not fit its
    checkpoint); the message names it. :func:`run` prints it as one line and exits 1."""


#: What :func:`run` reports as one line: missing files, files that hold no checkpoint (or one
#: holding objects torch refuses to unpickle), and the :class:`InputError` s of these helpers.
#: Any other exception is a bug and keeps its traceback.
EXPECTED_ERRORS = (FileNotFoundError, NotACheckpointError, pickle.UnpicklingError, InputError)


def run(main: Callable[[], None]) -> None:
    """Run a tool's ``main``; an :data:`EXPECTED_ERRORS` error becomes ``error: <message>`` on
    stderr and exit status 1 (nothing is written after it: the tools write their files last,
    or per image)."""
    try:
        main()
    except EXPECTED_ERRORS as e:
        raise SystemExit(f'error: {e}') from None


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------
def add_common_args(parser) -> None:
    """``--img``, ``--skip-corrupt``, ``--out-dir``, ``--device``, ``--batch-size``,
    ``--max-images``, ``--cfg-options``, ``--allow-new-keys``."""
    from mmengine.config import DictAction
    parser.add_argument('--img', nargs='+', required=True,
                        help='image files and/or folders (searched recursively)')
    parser.add_argument('--skip-corrupt', action='store_true',
                        help='skip images that cannot be decoded, with a warning naming each '
                        '(default: such an image is an error naming it)')
    parser.add_argument('--out-dir', required=True, help='where PNG and CSV files are written')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'],
                        help='device to run on (default: cpu)')
    parser.add_argument('--batch-size', type=int, default=8, help='images per forward pass')
    parser.add_argument('--max-images', type=int, default=None,
                        help='use at most this many images (sorted by path)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings (applied to every config), as in tools/train.py; a key '
        f'the config does not have is an error unless {ALLOW_NEW_FLAG}')
    parser.add_argument(ALLOW_NEW_FLAG, action='store_true',
                        help='let --cfg-options add keys the config does not have')


def add_model_args(parser) -> None:
    """Positional ``CONFIG CHECKPOINT [CONFIG CHECKPOINT ...]`` and ``--name``."""
    parser.add_argument(
        'models', nargs='+', metavar='CONFIG CHECKPOINT',
        help='one config (a file, or pkg::path.py inside an installed OpenMMLab package, e.g. '
        'mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py) and its checkpoint per '
        'model')
    parser.add_argument('--name', nargs='+', help='display names, one per model (default: the '
                        'config file names)')


def model_pairs(parser, paths: Sequence[str], max_models: Optional[int] = None
                ) -> List[Tuple[str, str]]:
    """``[(config, checkpoint), ...]`` from the positional paths; ``parser.error`` (exit 2) for an
    odd count, more than ``max_models`` pairs or a pair whose first file is not a config."""
    if len(paths) % 2:
        parser.error(f'give CONFIG CHECKPOINT pairs: got {len(paths)} paths ({" ".join(paths)}); '
                     'the last config has no checkpoint')
    pairs = list(zip(paths[0::2], paths[1::2]))
    if max_models is not None and len(pairs) > max_models:
        parser.error(f'at most {max_models} CONFIG CHECKPOINT pairs, got {len(pairs)}')
    for i, (config, ckpt) in enumerate(pairs, 1):
        check_config_name(parser, config, ckpt, i)
    return pairs


def check_config_name(parser, config: str, checkpoint: str, index: int = 1) -> None:
    """``parser.error`` when the config of pair ``index`` is not a config file name."""
    if not config.lower().endswith(CONFIG_EXTENSIONS):
        swapped = checkpoint.lower().endswith(CONFIG_EXTENSIONS)
        parser.error(f'pair {index}: {config!r} is not a config ({"/".join(CONFIG_EXTENSIONS)})'
                     + ('; the config comes first: CONFIG CHECKPOINT' if swapped else ''))


def model_names(configs: Sequence[str], names: Optional[Sequence[str]]) -> List[str]:
    if names:
        if len(names) != len(configs):
            raise InputError(f'--name: {len(names)} names for {len(configs)} models')
        return list(names)
    return [osp.splitext(osp.basename(c))[0] for c in configs]


def check_out_dir(path: str, flag: str = '--out-dir') -> None:
    """:func:`deepmim_mm.engine.config_checks.check_output_folder`, as an :class:`InputError`."""
    from deepmim_mm.engine.config_checks import check_output_folder
    try:
        check_output_folder(path, flag)
    except ValueError as e:
        raise InputError(str(e)) from e


def check_device(device: str) -> torch.device:
    if device == 'cuda' and not torch.cuda.is_available():
        raise InputError('--device cuda: no CUDA device is available; use --device cpu')
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


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------
def load_config(config: str, cfg_options: Optional[dict] = None, allow_new_keys: bool = False):
    """:func:`deepmim_mm.engine.config_checks.load_config`, a bad override an
    :class:`InputError`."""
    from deepmim_mm.engine.config_checks import load_config as load
    try:
        return load(config, cfg_options, allow_new_keys)
    except ValueError as e:
        raise InputError(str(e)) from e


def _field(config: str) -> str:
    return f'checkpoint (for {osp.basename(config)})'


def _check_parts(state: dict, checkpoint: str, config: str, parts: Sequence[str]) -> None:
    """The top-level parts of the model (``backbone``, then ``neck``) must be in the checkpoint:
    one short message for a file of another format instead of every key of the model."""
    have = sorted({k.split('.', 1)[0] for k in state})
    part = next((p for p in parts if p not in have), None)
    if part is None:
        return
    if part == 'backbone':
        hint = ('it is no pretraining checkpoint of this plugin or mmpretrain (encoder under '
                '"backbone."); convert timm or official MAE / DeepMIM files with '
                'tools/model_converters/timm_to_deepmim.py or official_to_deepmim.py first')
    else:
        hint = ('this tool needs the full pretraining checkpoint, with the decoders the training '
                'wrote; an encoder-only file (converted from timm, or a fine-tuned model) has '
                'none (attention.py and layer_similarity.py need only "backbone.")')
    raise InputError(f'{_field(config)}: {checkpoint} has no {part + "."!r} weights (its '
                     f'{len(state)} tensors are under {have[:8]}{"..." if len(have) > 8 else ""})'
                     f': {hint}')


def load_models(pairs: Sequence[Tuple[str, str]], device: torch.device,
                cfg_options: Optional[dict] = None, encoder_only: bool = False,
                allow_new_keys: bool = False) -> List[torch.nn.Module]:
    """Build ``cfg.model`` of every config in its registry scope and load its checkpoint into it
    (eval mode, on ``device``).

    Works for this plugin's ``DeepMIM`` and for mmpretrain's ``MAE`` / ``MFF`` configs. Every
    config and checkpoint is read (and checked) before any model is built, so a bad second file
    fails at once. The checkpoint must fit exactly (:func:`deepmim_mm.checkpoint.
    load_checked_state`, nothing allowed to be new or dropped): the whole model, or with
    ``encoder_only`` its ``backbone`` (what the attention and CKA tools run; the other keys are
    not used). A file of another format, size or model is an :class:`InputError` naming it and
    what differs, not figures drawn from random weights. A missing file is a
    ``FileNotFoundError``, a file that is no checkpoint a ``NotACheckpointError``.
    """
    from deepmim_mm.checkpoint import read_state_dict
    cfgs = [load_config(config, cfg_options, allow_new_keys) for config, _ in pairs]
    states = []
    for cfg, (config, ckpt) in zip(cfgs, pairs):
        state = read_state_dict(ckpt, _field(config))
        parts = ['backbone'] + ([] if encoder_only or not cfg.model.get('neck') else ['neck'])
        _check_parts(state, ckpt, config, parts)
        states.append(state)
    models = []
    for i, (config, ckpt) in enumerate(pairs):
        state, states[i] = states[i], None  # free each file's tensors once loaded
        models.append(_build_and_load(cfgs[i], config, ckpt, state, device, encoder_only))
    return models


def _covering(keys: Sequence[str], universe: Sequence[str], limit: int = 8) -> str:
    """``keys`` as the shortest dotted prefixes that hold only them among ``universe``
    (``neck.aux_decoders.0.*`` for a whole missing decoder), at most ``limit`` of them."""
    chosen, keys = [], set(keys)
    for key in (k for k in universe if k in keys):
        parts = key.split('.')
        for n in range(1, len(parts) + 1):
            head = '.'.join(parts[:n])
            if all(u in keys for u in universe if u == head or u.startswith(head + '.')):
                label = head if n == len(parts) else head + '.*'
                if label not in chosen:
                    chosen.append(label)
                break
    more = f' and {len(chosen) - limit} more' if len(chosen) > limit else ''
    return ', '.join(chosen[:limit]) + more


def _check_fit(target, state, prefix, checkpoint, config, shown=3) -> None:
    """Every key and shape of ``target`` must be in the checkpoint, and nothing else: the
    mismatch as one readable line (whole modules as ``prefix.*``, the first ``shown`` tensors of
    another shape; a model of another width has one per tensor). The load itself is
    ``load_checked_state``'s, with the same strict policy."""
    from deepmim_mm.checkpoint import extract_prefix
    want, p = target.state_dict(), prefix or ''
    have, _ = extract_prefix(state, prefix)
    missing = [p + k for k in want if k not in have]
    unknown = [p + k for k in have if k not in want]
    shapes = [f'{p}{k}: checkpoint {tuple(v.shape)} vs model {tuple(want[k].shape)}'
              for k, v in have.items() if k in want and v.shape != want[k].shape]
    problems = []
    if missing:
        problems.append(f'{len(missing)} model tensors missing from the checkpoint: '
                        + _covering(missing, [p + k for k in want]))
    if unknown:
        problems.append(f'{len(unknown)} checkpoint tensors the model does not have: '
                        + _covering(unknown, [p + k for k in have]))
    if shapes:
        more = f' and {len(shapes) - shown} more' if len(shapes) > shown else ''
        problems.append(f'{len(shapes)} tensors of another shape: ' + '; '.join(shapes[:shown])
                        + more)
    if problems:
        raise InputError(f'{_field(config)}: {checkpoint} does not fit the '
                         f'{"backbone" if prefix else "model"} ({type(target).__name__}) of '
                         f'{config} (another architecture or size?): ' + '; '.join(problems))


def _build_and_load(cfg, config, checkpoint, state, device, encoder_only):
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    from deepmim_mm.checkpoint import load_checked_state
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    if cfg.get('data_preprocessor') is not None:  # as the Runner does
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    try:
        model = MODELS.build(cfg.model)
    except ValueError as e:  # the models' own build-time checks of their fields
        raise InputError(f'{config}: {e}') from e
    except TypeError as e:  # an argument the class does not take (a --cfg-options typo?)
        if 'unexpected keyword argument' not in str(e):
            raise
        raise InputError(f'{config}: model: {e}') from e
    target, prefix = (model.backbone, 'backbone.') if encoder_only else (model, None)
    _check_fit(target, state, prefix, checkpoint, config)
    try:
        report = load_checked_state(target, state, checkpoint, prefix=prefix, ignore=(),
                                    field_name=_field(config))
    except ValueError as e:
        raise InputError(str(e)) from e
    unused = (f' ({len(report.dropped)} outside "backbone." not used)' if report.dropped
              else '')
    print(f'{osp.basename(config)}: loaded {len(report.loaded)} tensors from {checkpoint}{unused}')
    return model.to(device).eval()


def load_model(config: str, checkpoint: str, device: torch.device,
               cfg_options: Optional[dict] = None, encoder_only: bool = False,
               allow_new_keys: bool = False) -> torch.nn.Module:
    """:func:`load_models` for one model."""
    return load_models([(config, checkpoint)], device, cfg_options, encoder_only,
                       allow_new_keys)[0]


def image_size(model: torch.nn.Module) -> int:
    """The square input size the backbone was built for (``patch_resolution * patch_size``)."""
    from deepmim_mm.analysis import vit_geometry
    (h, w), patch, _ = vit_geometry(model.backbone)
    if h != w:
        raise InputError(f'model.backbone: only square token grids are supported, got {h}x{w}')
    return h * patch


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------
class _ImageLoader(LoadImageFromFileChecked):
    """``LoadImageFromFileChecked`` whose error names the tools' ``--skip-corrupt`` flag (the
    user does not write this pipeline, so its ``on_corrupt`` is no remedy) and is an
    :class:`InputError`."""

    def _corrupt(self, filename: str, e: BaseException) -> None:
        try:
            corrupt_image(filename, e, self.on_corrupt, type(self).__name__,
                          how_to_skip='pass --skip-corrupt')
        except ValueError as error:
            raise InputError(f'--img: {error}') from e


def iter_batches(model: torch.nn.Module, files: Sequence[str], batch_size: int,
                 progress: bool = True, skip_corrupt: bool = False
                 ) -> Iterator[Tuple[List[str], torch.Tensor]]:
    """Yield ``(paths, inputs)``: images read with mmpretrain's test-style pipeline (resize the
    short side to the model's size, centre crop, bicubic) and put through the model's own data
    preprocessor (normalisation, BGR->RGB), so they match what the model trained on.

    An image that cannot be decoded is an :class:`InputError` naming it, or with
    ``skip_corrupt`` a warning naming it, and the batches are filled with the next readable
    images (an error if none is readable). Shows an mmengine progress bar over images."""
    from mmengine.dataset import Compose, default_collate
    from mmengine.utils import ProgressBar
    if batch_size < 1:
        raise InputError(f'--batch-size must be at least 1, got {batch_size}')
    size = image_size(model)
    load = _ImageLoader(on_corrupt='skip' if skip_corrupt else 'error')
    pipeline = Compose([
        dict(type='ResizeEdge', scale=size, edge='short', backend='pillow',
             interpolation='bicubic'),
        dict(type='CenterCrop', crop_size=size),
        dict(type='PackInputs'),
    ])
    bar = ProgressBar(len(files)) if progress else None
    paths, samples, used, pending = [], [], 0, 0
    for i, f in enumerate(files):
        results = load(dict(img_path=f))
        pending += 1
        if results is not None:
            paths.append(f)
            samples.append(pipeline(results))
        if samples and (len(samples) == batch_size or i == len(files) - 1):
            inputs = model.data_preprocessor(default_collate(samples), False)['inputs']
            used += len(samples)
            yield paths, inputs
            paths, samples = [], []
        if bar is not None and not samples:  # the files so far are analysed or skipped
            for _ in range(pending):
                bar.update()
            pending = 0
    if bar is not None:
        sys.stdout.write('\n')
    if not used:
        raise InputError(f'--img: none of the {len(files)} images could be decoded (all skipped)')


def write_csv(path: str, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow([f'{v:.6g}' if isinstance(v, float) else v for v in r])


def safe_name(s: str) -> str:
    return ''.join(c if c.isalnum() or c in '-_.' else '_' for c in s)
