"""Rewrite a pretraining config's input pipeline for a fast path, keeping its own parameters."""
import copy
from typing import List

PATHS = ('standard', 'crop-aware', 'device')
_LOADERS = ('LoadImageFromFile', 'LoadImageFromFileChecked')
_LOADER_KEYS = ('on_corrupt', 'backend_args', 'file_client_args')  # LoadImageBytes takes


def fast_path_pipeline(pipeline: List[dict], path: str) -> List[dict]:
    """``pipeline`` (LoadImageFromFile, RandomResizedCrop, ..., PackInputs) for ``path``
    (``'device'`` refuses a transform that needs the decoded image)."""
    if path not in PATHS:
        raise ValueError(f'input path {path!r}; accepted: {list(PATHS)}')
    if path == 'standard':
        return copy.deepcopy(list(pipeline))
    types = [t.get('type') for t in pipeline]
    if not types or types[0] not in _LOADERS or 'RandomResizedCrop' not in types:
        raise ValueError(f'the {path} path rewrites a pipeline that starts with one of '
                         f'{list(_LOADERS)} and has a RandomResizedCrop; got {types}')
    out = []
    for t in pipeline:
        t, kind = dict(t), t.get('type')
        if kind in _LOADERS:
            out.append(dict(type='LoadImageBytes', **{k: t[k] for k in _LOADER_KEYS if k in t}))
        elif kind == 'RandomResizedCrop':
            out.append(dict(t, type='RandomResizedCropBox'))
            if path == 'crop-aware':
                out.append(dict(type='DecodeCropResize'))
        elif path == 'crop-aware':
            out.append(t)
        elif kind == 'RandomFlip':
            out.append(dict(t, type='RandomFlipFlag'))
        elif kind == 'PackInputs':
            out.append(dict(type='PackImageBytes'))
        else:
            raise ValueError(f'the device path decodes on the device after the workers: it '
                             f'supports LoadImageFromFile, RandomResizedCrop, RandomFlip and '
                             f'PackInputs, not {kind}')
    return out


def innermost_dataset(dataset_cfg: dict) -> dict:
    """The dataset config that holds the pipeline (inside wrappers such as RepeatDataset)."""
    while 'pipeline' not in dataset_cfg and 'dataset' in dataset_cfg:
        dataset_cfg = dataset_cfg['dataset']
    if 'pipeline' not in dataset_cfg:
        raise ValueError('the config has no train_dataloader.dataset(.dataset...).pipeline')
    return dataset_cfg


def apply_fast_path(cfg, path: str):
    """Switch ``cfg``'s train pipeline to ``path`` in place and return ``cfg``; ``'device'`` also
    sets ``image_bytes_collate`` and ``DecodeDataPreprocessor`` (the config's mean, std, order)."""
    dataset = innermost_dataset(cfg.train_dataloader.dataset)
    dataset['pipeline'] = fast_path_pipeline(dataset['pipeline'], path)
    if path != 'device':
        return cfg
    cfg.train_dataloader['collate_fn'] = dict(type='image_bytes_collate')
    pre = dict(cfg.model.get('data_preprocessor') or cfg.get('data_preprocessor') or {})
    pre['type'] = 'DecodeDataPreprocessor'  # in mmpretrain's registry: an inherited _scope_ fits
    cfg.model['data_preprocessor'] = pre
    return cfg
