"""The image folders a config's datasets scan, checked for symbolic links before the scan."""
import errno
import os
import os.path as osp
from typing import Iterator, Sequence

from mmengine.logging import print_log


def dataset_folders(dataset_cfg) -> Iterator[str]:
    """The local folders the datasets of ``dataset_cfg`` (inside wrappers too) scan: ``data_root``
    joined with ``data_prefix`` (its ``img_path``), for datasets without an ``ann_file``."""
    if not dataset_cfg:
        return
    for inner in [dataset_cfg.get('dataset')] + list(dataset_cfg.get('datasets') or []):
        yield from dataset_folders(inner)
    if dataset_cfg.get('dataset') or dataset_cfg.get('datasets') or dataset_cfg.get('ann_file'):
        return
    prefix = dataset_cfg.get('data_prefix') or ''
    if isinstance(prefix, dict):
        prefix = prefix.get('img_path') or ''
    root = dataset_cfg.get('data_root') or ''
    folder = osp.join(root, prefix) if prefix else root
    if folder and osp.isdir(folder):
        yield folder


def check_image_folder(folder: str) -> None:
    """Walk ``folder`` as mmengine's scan does, following links to folders: a ``ValueError``
    naming a link that loops and its target, a warning naming the links to no file."""
    dangling = []
    stack = [(folder, {osp.realpath(folder)})]
    while stack:
        path, above = stack.pop()
        with os.scandir(path) as entries:
            for entry in entries:
                if not (entry.is_symlink() or entry.is_dir(follow_symlinks=False)):
                    continue  # a file: no system call
                try:
                    real = osp.realpath(entry.path, strict=True)
                except FileNotFoundError:
                    dangling.append(entry.path)
                    continue
                except OSError as e:
                    if e.errno != errno.ELOOP:
                        raise
                    raise _loop(folder, entry.path, 'itself') from None
                if not entry.is_dir():
                    continue
                if real in above:
                    raise _loop(folder, entry.path, f'{real}, which holds it')
                stack.append((entry.path, above | {real}))
    if dangling:  # the count, then the first five links
        print_log(f'data folder {folder}: {len(dangling)} symbolic links point to no file and are '
                  'left out of the dataset: ' + ', '.join(
                      f'{p} -> {os.readlink(p)}' for p in dangling[:5]),
                  logger='current', level=30)


def check_data_folders(cfg, dataloaders: Sequence[str]) -> None:
    """:func:`check_image_folder` on the folders the datasets of ``cfg``'s ``dataloaders`` scan."""
    for field in dataloaders:
        for folder in dataset_folders((cfg.get(field) or {}).get('dataset')):
            check_image_folder(folder)


def _loop(folder, link, leads_to):
    where = osp.join(osp.realpath(osp.dirname(link)), osp.basename(link))  # not the walked path
    return ValueError(f'data folder {folder}: the symbolic link {where} -> {os.readlink(link)} '
                      f'loops (it leads to {leads_to}); remove or retarget it')
