"""Unmasked features of a ViT encoder, per level or per block: the one extraction path of the
Python API (``deepmim_mm.apis``), the kNN monitor hook and the analysis tools."""
from collections import OrderedDict
from contextlib import contextmanager
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

BLOCKS = ('supervised', 'all')
FEATURES = ('cls', 'avg')


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP/FSDP wrapper (``.module``), or the model itself."""
    from mmengine.model import is_model_wrapper
    return model.module if is_model_wrapper(model) else model


def vit_geometry(backbone: nn.Module) -> Tuple[Tuple[int, int], int, int]:
    """``(grid, patch_size, num_extra_tokens)`` of an mmpretrain ViT backbone."""
    grid = tuple(int(g) for g in backbone.patch_resolution)
    patch = backbone.patch_embed.projection.kernel_size[0]
    return grid, int(patch), int(getattr(backbone, 'num_extra_tokens', 1))


def model_input_size(model: nn.Module) -> int:
    """The square input size ``model.backbone`` was built for (token grid x patch size)."""
    (h, w), patch, _ = vit_geometry(model.backbone)
    if h != w:
        raise ValueError(f'model.backbone: only square token grids are supported, got {h}x{w}')
    return h * patch


def level_names(model: nn.Module, blocks: str = 'supervised') -> List[str]:
    """``block{n}`` (1-indexed) of each level :func:`level_features` returns."""
    backbone = model.backbone
    n = len(backbone.layers)
    if blocks == 'all':
        return [f'block{i + 1}' for i in range(n)]
    names = getattr(backbone, 'level_names', None)
    return list(names) if names is not None else [f'block{i % n + 1}' for i in backbone.out_indices]


@contextmanager
def capture(modules: Sequence[nn.Module], record: Callable,
            pre: bool = False) -> Iterator[Dict[int, torch.Tensor]]:
    """Yield ``{i: record(module, args, output)}`` of the ``i``-th module, refreshed by every
    forward pass (``pre``: ``record(module, args)`` before the module runs)."""
    outs: Dict[int, torch.Tensor] = {}

    def hook(i):
        return lambda module, *io: outs.__setitem__(i, record(module, *io))

    register = 'register_forward_pre_hook' if pre else 'register_forward_hook'
    handles = [getattr(m, register)(hook(i)) for i, m in enumerate(modules)]
    try:
        yield outs
    finally:
        for h in handles:
            h.remove()


def capture_block_outputs(layers: Sequence[nn.Module]):
    """:func:`capture` of the raw output (``(B, T, C)``, before any final norm) of every block."""
    return capture(layers, lambda module, args, out: (
        out[0] if isinstance(out, (tuple, list)) else out).detach())


def encode_unmasked(backbone: nn.Module, inputs: torch.Tensor):
    """Run a ViT encoder on every patch (mmpretrain 1.2.0's ``MFFViT`` masks even with
    ``mask=None``; fine-tuning ViTs take no ``mask``)."""
    from mmpretrain.models.backbones import VisionTransformer
    if hasattr(backbone, 'level_names') or not isinstance(backbone, VisionTransformer):
        return backbone(inputs, mask=None)
    return VisionTransformer.forward(backbone, inputs)


def pool_tokens(tokens: torch.Tensor, feature: Optional[str],
                num_extra_tokens: int = 1) -> torch.Tensor:
    """``(B, D)`` class token (``'cls'``) or mean patch token (``'avg'``); ``None``: the tokens."""
    if feature is None:
        return tokens
    if feature == 'cls':
        return tokens[:, 0]
    if feature == 'avg':
        return tokens[:, num_extra_tokens:].mean(dim=1)
    raise ValueError(f'pool_tokens: feature must be one of {FEATURES}, got {feature!r}')


@torch.no_grad()
def level_features(model: nn.Module, inputs: torch.Tensor,
                   blocks: str = 'supervised') -> Dict[str, torch.Tensor]:
    """``{name: (B, T, C) tokens}`` of preprocessed ``inputs``, unmasked: the backbone's output
    per supervised level (``'supervised'``) or the raw output of every block (``'all'``)."""
    if blocks not in BLOCKS:
        raise ValueError(f'blocks must be one of {BLOCKS}, got {blocks!r}')
    backbone = model.backbone
    names = level_names(model, blocks)
    if blocks == 'all':
        with capture_block_outputs(backbone.layers) as outs:
            encode_unmasked(backbone, inputs)
        return OrderedDict((name, outs[i]) for i, name in enumerate(names))
    feats = encode_unmasked(backbone, inputs)
    feats = [feats] if isinstance(feats, torch.Tensor) else list(feats)
    if len(feats) != len(names) or any(f.dim() != 3 for f in feats):
        raise ValueError(f'level_features: the backbone must return one (B, T, C) token tensor '
                         f'per level {names}; got {[tuple(f.shape) for f in feats]} (set '
                         "model.backbone.out_type='raw')")
    return OrderedDict(zip(names, feats))


@torch.no_grad()
def extract_features(model: nn.Module, batches: Iterable[Union[torch.Tensor, dict]],
                     blocks: str = 'supervised',
                     pools: Sequence[Optional[str]] = (None, )
                     ) -> Dict[str, Dict[Optional[str], torch.Tensor]]:
    """``{level: {pool: (N, ...) float32 CPU tensor}}`` over ``batches`` of preprocessed tensors
    or collated data (put through ``model.data_preprocessor``), in the model's current mode."""
    device = next(model.parameters()).device
    extra = vit_geometry(model.backbone)[2]
    out: Dict[str, Dict[Optional[str], List[torch.Tensor]]] = OrderedDict()
    for x in batches:
        if not isinstance(x, torch.Tensor):
            x = model.data_preprocessor(x, False)['inputs']
        for name, tokens in level_features(model, x.to(device), blocks).items():
            for pool in pools:
                feats = pool_tokens(tokens, pool, extra).float().cpu()
                out.setdefault(name, {}).setdefault(pool, []).append(feats)
    if not out:
        raise ValueError('extract_features: no images')
    return OrderedDict((name, {p: torch.cat(v) for p, v in per.items()})
                       for name, per in out.items())


def eval_pipeline(img_size: int, crop_fraction: float = 224 / 256) -> List[dict]:
    """mmpretrain's ImageNet test pipeline: bicubic short side ``img_size / crop_fraction``."""
    return [
        dict(type='ResizeEdge', scale=int(round(img_size / crop_fraction)), edge='short',
             backend='pillow', interpolation='bicubic'),
        dict(type='CenterCrop', crop_size=img_size),
        dict(type='PackInputs'),
    ]


def labelled_splits(data_root: str, img_size: int, max_per_class: Optional[int] = None,
                    seed: int = 0, field_name: str = 'data_root') -> tuple:
    """``(train, val)`` ``CustomDataset`` of ``data_root/{train,val}/<class>/*`` through
    :func:`eval_pipeline`, at most ``max_per_class`` random images per class (``seed``). An
    error names ``field_name`` when a split is missing or empty or the classes differ."""
    import os.path as osp

    from mmengine.registry import DefaultScope
    from mmpretrain.registry import DATASETS
    pipeline = [dict(type='LoadImageFromFileChecked')] + eval_pipeline(img_size)
    splits = []
    for split in ('train', 'val'):
        if not osp.isdir(osp.join(data_root, split)):
            raise FileNotFoundError(f'{field_name}: {osp.join(data_root, split)!r} not found; '
                                    f'expected ImageNet layout: {data_root}/{split}/<class>/*')
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            ds = DATASETS.build(dict(type='CustomDataset', data_root=data_root, data_prefix=split,
                                     pipeline=pipeline))
        if len(ds) == 0:
            raise ValueError(f'{field_name}: no images in {data_root}/{split}')
        if max_per_class:
            g = torch.Generator().manual_seed(seed)
            counts: Dict[int, int] = {}
            keep = []
            for i in torch.randperm(len(ds), generator=g).tolist():
                label = int(ds.get_data_info(i)['gt_label'])
                if counts.get(label, 0) < max_per_class:
                    counts[label] = counts.get(label, 0) + 1
                    keep.append(i)
            ds = ds.get_subset(sorted(keep))
        splits.append(ds)
    classes = [list(ds.metainfo['classes']) for ds in splits]
    if classes[0] != classes[1]:
        raise ValueError(f'{field_name}: train/ and val/ have different classes: {classes[0]} vs '
                         f'{classes[1]}')
    return tuple(splits)


def labels_of(ds) -> torch.Tensor:
    """The ``gt_label`` of every sample of a dataset, as a long tensor."""
    return torch.tensor([int(ds.get_data_info(i)['gt_label']) for i in range(len(ds))])
