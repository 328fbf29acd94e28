"""What the analysis tools share: arguments, models, images, outputs and :func:`run`."""
import argparse
import csv
import os
import os.path as osp
import pickle
import sys
from contextlib import contextmanager
from itertools import islice
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import torch

import deepmim_mm  # noqa: F401  registers the models
from deepmim_mm.analysis import eval_pipeline, model_input_size
from deepmim_mm.apis import init_encoder
from deepmim_mm.checkpoint import NotACheckpointError
from deepmim_mm.datasets import LoadImageFromFileChecked
from deepmim_mm.datasets.transforms import corrupt_image
from deepmim_mm.utils import add_cfg_options, check_output_folder

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')
CONFIG_EXTENSIONS = ('.py', '.json', '.yaml', '.yml')  # what Config.fromfile reads


class InputError(ValueError):
    """A bad input the user can fix; the message names it."""


#: What :func:`run` reports as one line; any other exception is a bug and keeps its traceback.
EXPECTED_ERRORS = (FileNotFoundError, NotACheckpointError, pickle.UnpicklingError, InputError)


def run(main: Callable[[], None]) -> None:
    """Run a tool's ``main``; an :data:`EXPECTED_ERRORS` error is one ``error:`` line, exit 1."""
    try:
        main()
    except EXPECTED_ERRORS as e:
        raise SystemExit(f'error: {e}') from None


# -- Arguments ---------------------------------------------------------------------------------
def parse_args(doc: str, argv=None, add_args: Optional[Callable] = None,
               max_models: Optional[int] = None):
    """An image tool's arguments, checked: ``args.pairs`` of (config, checkpoint), ``args.device``
    a ``torch.device``, ``--out-dir``, ``args.files`` the images."""
    parser = argparse.ArgumentParser(description=doc.split('\n\n')[0])
    parser.add_argument(
        'models', nargs='+', metavar='CONFIG CHECKPOINT',
        help='one config (a file, or pkg::path.py inside an installed OpenMMLab package, '
        'e.g. mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-300e_in1k.py) and its '
        'checkpoint per model')
    if max_models != 1:
        parser.add_argument('--name', nargs='+', help='display names, one per model (default: '
                            'the config file names)')
    if add_args is not None:
        add_args(parser)
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
    add_cfg_options(parser)  # applied to every config
    args = parser.parse_args(argv)
    args.pairs = model_pairs(parser, args.models, max_models)
    args.device = check_device(args.device)
    with user_input():
        check_output_folder(args.out_dir, '--out-dir')
    args.files = collect_images(args.img, args.max_images)
    return args


def model_pairs(parser, paths: Sequence[str], max_models: Optional[int] = None
                ) -> List[Tuple[str, str]]:
    """``[(config, checkpoint), ...]``; ``parser.error`` when the paths are not such pairs."""
    if len(paths) % 2:
        parser.error(f'give CONFIG CHECKPOINT pairs: got {len(paths)} paths ({" ".join(paths)}); '
                     'the last config has no checkpoint')
    pairs = list(zip(paths[0::2], paths[1::2]))
    if max_models is not None and len(pairs) > max_models:
        parser.error(f'at most {max_models} CONFIG CHECKPOINT pairs, got {len(pairs)}')
    for i, (config, ckpt) in enumerate(pairs, 1):
        if not config.lower().endswith(CONFIG_EXTENSIONS):
            swapped = ckpt.lower().endswith(CONFIG_EXTENSIONS)
            parser.error(f'pair {i}: {config!r} is not a config ({"/".join(CONFIG_EXTENSIONS)})'
                         + ('; the config comes first: CONFIG CHECKPOINT' if swapped else ''))
    return pairs


def model_names(configs: Sequence[str], names: Optional[Sequence[str]], flag: str = '--name'
                ) -> List[str]:
    if names:
        if len(names) != len(configs):
            raise InputError(f'{flag}: {len(names)} names for {len(configs)} models')
        return list(names)
    return [osp.splitext(osp.basename(c))[0] for c in configs]


def check_device(device: str) -> torch.device:
    if device == 'cuda' and not torch.cuda.is_available():
        raise InputError('--device cuda: no CUDA device is available; use --device cpu')
    return torch.device(device)


def collect_images(paths: Sequence[str], max_images: Optional[int] = None) -> List[str]:
    """Image files from files and folders (recursive, sorted)."""
    from mmengine.utils import scandir
    files = []
    for p in paths:
        if osp.isdir(p):
            files += sorted(osp.join(p, f) for f in scandir(p, IMG_EXTENSIONS, recursive=True,
                                                            case_sensitive=False))
        elif osp.isfile(p):
            files.append(p)
        else:
            raise FileNotFoundError(f'--img: no such file or folder: {p}')
    if not files:
        raise FileNotFoundError(f'--img: no images ({", ".join(IMG_EXTENSIONS)}) in {list(paths)}')
    return files[:max_images] if max_images else files


# -- Models ------------------------------------------------------------------------------------
@contextmanager
def user_input():
    """A ``ValueError`` raised inside becomes an :class:`InputError`."""
    try:
        yield
    except ValueError as e:
        raise InputError(str(e)) from e


def load_model(config: str, checkpoint: str, args, prefix: Optional[str] = 'backbone.'):
    """:func:`~deepmim_mm.apis.init_encoder` on the CPU with ``args``' overrides."""
    with user_input():
        model = init_encoder(config, checkpoint, 'cpu', args.cfg_options, prefix,
                             args.allow_new_keys)
    print(model.encoder_load_report.format().split('\n')[0])
    return model


def encoder_results(args, analyse: Callable) -> Tuple[List[str], List]:
    """``(names, [analyse(model, files) per model])``: every encoder loaded (and checked) first,
    one on ``--device`` at a time."""
    names = model_names([c for c, _ in args.pairs], args.name)
    models = [load_model(config, ckpt, args) for config, ckpt in args.pairs]
    results = []
    for i, (name, (cfg, ckpt)) in enumerate(zip(names, args.pairs)):
        print(f'{name}: {cfg}, {ckpt}')
        model, models[i] = models[i].to(args.device), None
        results.append(analyse(model, args.files))
        del model
    return names, results


# -- Images ------------------------------------------------------------------------------------
class _ImageLoader(LoadImageFromFileChecked):
    """``LoadImageFromFileChecked`` whose error is an :class:`InputError` naming --skip-corrupt."""

    def _corrupt(self, filename: str, e: BaseException) -> None:
        try:
            corrupt_image(filename, e, self.on_corrupt, type(self).__name__,
                          how_to_skip='pass --skip-corrupt')
        except ValueError as error:
            raise InputError(f'--img: {error}') from e


def iter_batches(model: torch.nn.Module, files: Sequence[str], batch_size: int,
                 skip_corrupt: bool = False) -> Iterator[Tuple[List[str], torch.Tensor]]:
    """Yield ``(paths, inputs)``: images through :func:`~deepmim_mm.analysis.eval_pipeline` (whole
    short side) and the data preprocessor; ``skip_corrupt``: undecodable images are skipped."""
    from mmengine.dataset import Compose, default_collate
    from mmpretrain.registry import TRANSFORMS
    from tqdm import tqdm
    if batch_size < 1:
        raise InputError(f'--batch-size must be at least 1, got {batch_size}')
    pipeline = Compose([_ImageLoader(on_corrupt='skip' if skip_corrupt else 'error')] + [
        TRANSFORMS.build(t) for t in eval_pipeline(model_input_size(model), crop_fraction=1)])
    loaded = ((f, pipeline(dict(img_path=f))) for f in tqdm(files, file=sys.stdout))
    readable = ((f, sample) for f, sample in loaded if sample is not None)
    used = 0
    while batch := list(islice(readable, batch_size)):
        paths, samples = zip(*batch)
        used += len(paths)
        yield list(paths), model.data_preprocessor(default_collate(list(samples)), False)['inputs']
    if not used:
        raise InputError(f'--img: none of the {len(files)} images could be decoded (all skipped)')


def pyplot():
    """``matplotlib.pyplot`` on the file-only ``Agg`` backend."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: str, dpi: int = 100) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)


def write_csv(path: str, header: Sequence[str], rows: Sequence[Sequence]) -> None:
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow([f'{v:.6g}' if isinstance(v, float) else '' if v is None else v
                        for v in r])


def safe_name(s: str) -> str:
    return ''.join(c if c.isalnum() or c in '-_.' else '_' for c in s)
