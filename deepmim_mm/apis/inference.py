"""Build a pretrained encoder from a config and a checkpoint and get every level's features.

mmpretrain's ``get_model`` builds the model; mmpretrain's ``FeatureExtractor`` reads images but
takes its pipeline from ``cfg.test_dataloader``, which pretraining configs (mmpretrain's MAE /
MFF ones and this plugin's) do not have: it stops with ``AttributeError: ... test_dataloader``.
:class:`LevelFeatureExtractor` falls back to a deterministic test pipeline built from the model's
input size; the rest is upstream's.
"""
import os.path as osp
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import BaseModel
from mmpretrain.apis import FeatureExtractor, get_model

from ..analysis.attention import capture_block_outputs, encode_unmasked, vit_geometry
from ..analysis.probe import pool_tokens
from ..engine.config_checks import load_config
from ..models.backbones import DeepMIMViT

BLOCKS = ('supervised', 'all')


def init_encoder(config: Union[str, Config],
                 checkpoint: Optional[str],
                 device: Union[str, torch.device] = 'cpu',
                 cfg_options: Optional[dict] = None,
                 prefix: str = 'backbone.',
                 allow_new_keys: bool = False) -> BaseModel:
    """The config's pretraining model (``DeepMIM``, mmpretrain's ``MAE`` / ``MFF``, ...) with the
    checkpoint's encoder, in eval mode on ``device``.

    Built with mmpretrain's ``get_model`` (``model._config`` is the config). A frozen teacher
    (``model.target_generator``) is left out: features do not need it and its weights are not in
    pretraining checkpoints. The encoder (``model.backbone``) is loaded strictly with
    :func:`deepmim_mm.checkpoint.load_pretrained_encoder`: a missing, unknown or
    mis-shaped encoder key is a ``ValueError`` naming the keys (so is an MFF checkpoint in a
    config without MFF fusion); the decoders and heads are not loaded (their keys are reported
    as dropped) — use the model for features, not for the pretraining loss. The load report is
    ``model.encoder_load_report``. ``checkpoint=None`` keeps the random initialisation.
    ``cfg_options`` are checked as ``tools/train.py`` checks ``--cfg-options``: a key the config
    does not have is a ``ValueError`` unless ``allow_new_keys``.
    """
    from ..checkpoint import load_pretrained_encoder  # the plugin's one loader
    cfg = load_config(config, cfg_options, allow_new_keys)
    if 'model' not in cfg:
        raise ValueError(f'config {config!r} has no `model` field')
    cfg.model.pop('target_generator', None)
    model = get_model(cfg, pretrained=False)
    if not hasattr(model, 'backbone') or not hasattr(model.backbone, 'layers'):
        raise ValueError(f'config {config!r}: model.backbone must be a ViT with `layers` '
                         f'(DeepMIMViT, MAEViT, VisionTransformer, ...), got '
                         f'{type(getattr(model, "backbone", None)).__name__}')
    if checkpoint is None:
        model.init_weights()
        model.encoder_load_report = None
    else:
        model.encoder_load_report = load_pretrained_encoder(
            model.backbone, checkpoint, prefix=prefix or None, ignore=(),
            resizable=('pos_embed', ), field_name='checkpoint')
    model.to(device)
    model.eval()  # some backbones' train() returns None
    return model


def level_names(model: nn.Module, blocks: str = 'supervised') -> List[str]:
    """``block{n}`` (1-indexed) for each level :func:`level_features` returns."""
    backbone = model.backbone
    if blocks == 'all':
        return [f'block{i + 1}' for i in range(len(backbone.layers))]
    names = getattr(model, 'level_names', None)
    if names is not None:
        return list(names)
    n = len(backbone.layers)
    return [f'block{(i % n) + 1}' for i in backbone.out_indices]


@torch.no_grad()
def level_features(model: nn.Module, inputs: torch.Tensor,
                   blocks: str = 'supervised') -> Dict[str, torch.Tensor]:
    """``{name: (B, T, C) tokens}`` for a batch of preprocessed ``inputs`` (unmasked).

    ``blocks='supervised'``: what ``model.extract_feat`` returns, one entry per supervised level
    (DeepMIM: the raw outputs of the intermediate supervised blocks and the last block after the
    final norm; the plugin's MFF: fused; mmpretrain's ``MFFViT``: its unfused outputs, since its
    own unmasked path masks). ``'all'``: the raw output of every block (before any final norm),
    recorded during the same forward pass. The model's mode is left as it is (call ``eval()``).
    """
    if blocks not in BLOCKS:
        raise ValueError(f'blocks must be one of {BLOCKS}, got {blocks!r}')
    names = level_names(model, blocks)
    if blocks == 'all':
        with capture_block_outputs(model.backbone.layers) as outs:
            _unmasked(model, inputs)
        feats = [outs[i] for i in range(len(names))]
    else:
        feats = _unmasked(model, inputs)
        feats = [feats] if isinstance(feats, torch.Tensor) else list(feats)
        if len(feats) != len(names) or any(f.dim() != 3 for f in feats):
            raise ValueError(
                'level_features: model.extract_feat must return one (B, T, C) token tensor per '
                f'supervised level {names}; got {[tuple(f.shape) for f in feats]} (set '
                "model.backbone.out_type='raw')")
    return OrderedDict(zip(names, feats))


def _unmasked(model: nn.Module, inputs: torch.Tensor):
    """The backbone's features of every patch: ``extract_feat`` for this plugin's
    ``DeepMIMViT`` (which never masks then; MFF fused), the plain ``VisionTransformer`` forward for
    others (mmpretrain's ``MFFViT(x, mask=None)`` masks anyway, so its unfused block outputs)."""
    if isinstance(model.backbone, DeepMIMViT):
        return model.extract_feat(inputs)
    return encode_unmasked(model.backbone, inputs)


def eval_pipeline(img_size: int) -> List[dict]:
    """ImageNet's evaluation transform at ``img_size``: resize the short side to
    ``img_size * 256 / 224`` (bicubic, pillow) and take the centre crop (mmpretrain's ImageNet
    test pipeline at 224 px), then ``PackInputs`` — deterministic."""
    return [
        dict(type='ResizeEdge', scale=int(round(img_size * 256 / 224)), edge='short',
             backend='pillow', interpolation='bicubic'),
        dict(type='CenterCrop', crop_size=img_size),
        dict(type='PackInputs'),
    ]


def labelled_folder(data_root: str,
                    split: str,
                    img_size: int,
                    max_per_class: Optional[int] = None,
                    seed: int = 0,
                    field_name: str = 'data_root'):
    """mmpretrain's ``CustomDataset`` over ``data_root/split/<class>/*`` with
    :func:`eval_pipeline` (after ``LoadImageFromFileChecked``: an unreadable image is an error
    naming it); ``max_per_class`` keeps a class-balanced random subset (the same for the same
    ``seed``), in file order."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import DATASETS
    folder = osp.join(data_root, split)
    if not osp.isdir(folder):
        raise FileNotFoundError(f'{field_name}: {folder!r} not found; expected ImageNet layout: '
                                f'{data_root}/{split}/<class>/<image>')
    pipeline = [dict(type='LoadImageFromFileChecked')] + eval_pipeline(img_size)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ds = DATASETS.build(dict(type='CustomDataset', data_root=data_root, data_prefix=split,
                                 pipeline=pipeline, lazy_init=True))
        ds.full_init()
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
    return ds


def model_img_size(model: nn.Module) -> int:
    """The square input size the backbone was built for (token grid x patch size)."""
    (h, w), patch, _ = vit_geometry(model.backbone)
    if h != w:
        raise ValueError(f'only square token grids are supported, got {h}x{w}')
    return h * patch


class LevelFeatureExtractor(FeatureExtractor):
    """mmpretrain's ``FeatureExtractor`` for pretraining configs.

    Adds over ``FeatureExtractor``: (1) a config without ``test_dataloader`` (every pretraining
    config) gets :func:`eval_pipeline` at the model's input size instead of an
    ``AttributeError``; (2) given a config and a checkpoint, the model is built with
    :func:`init_encoder` (strict encoder loading; upstream's ``load_checkpoint`` only warns about
    keys that do not fit). Calling it is upstream's: ``extractor(images)`` returns, per image,
    the tuple of ``model.extract_feat`` outputs (one ``(T, C)`` tensor per supervised level).
    """

    def __init__(self,
                 model: Union[BaseModel, str, Config],
                 pretrained: Optional[str] = None,
                 device: Union[str, torch.device, None] = None,
                 cfg_options: Optional[dict] = None) -> None:
        if not isinstance(model, BaseModel):
            model = init_encoder(model, pretrained, device or 'cpu', cfg_options)
        elif pretrained:
            raise ValueError('LevelFeatureExtractor: give a config with `pretrained`, or a model '
                             'built by init_encoder without it')
        if not hasattr(model, '_config'):
            raise ValueError('LevelFeatureExtractor: the model has no `_config`; build it with '
                             'deepmim_mm.apis.init_encoder or mmpretrain.get_model')
        super().__init__(model, pretrained=False, device=device)

    def _init_pipeline(self, cfg: Config):
        if cfg.get('test_dataloader') is not None:
            return super()._init_pipeline(cfg)
        from mmengine.dataset import Compose
        from mmpretrain.registry import TRANSFORMS
        return Compose([TRANSFORMS.build(t) for t in eval_pipeline(model_img_size(self.model))])


def extract_levels(model: BaseModel,
                   images: Union[str, Sequence, torch.Tensor],
                   blocks: str = 'supervised',
                   pool: Optional[str] = None,
                   batch_size: int = 8) -> Dict[str, torch.Tensor]:
    """Every level's features of ``images``, ``{'block{n}': tensor}`` on the CPU (float32).

    Args:
        model: from :func:`init_encoder` (or mmpretrain's ``get_model``).
        images: an image file, a folder (its files), a list of files or of ``HxWx3`` BGR uint8
            arrays (read and transformed by :class:`LevelFeatureExtractor`'s pipeline and the
            model's data preprocessor), or a float tensor ``(B, 3, H, W)`` already preprocessed.
        blocks: ``'supervised'`` levels or ``'all'`` blocks (see :func:`level_features`).
        pool: ``None`` returns tokens ``(N, T, C)``; ``'cls'`` / ``'avg'`` image features
            ``(N, C)`` (class token / mean patch token).
        batch_size: images per forward pass.
    """
    model.eval()
    if isinstance(images, torch.Tensor):
        batches = (images[i:i + batch_size] for i in range(0, len(images), batch_size))
    else:
        extractor = LevelFeatureExtractor(model)
        data = extractor.preprocess(extractor._inputs_to_list(images), batch_size=batch_size)
        batches = (model.data_preprocessor(d, False)['inputs'] for d in data)
    device = next(model.parameters()).device
    extra = int(getattr(model.backbone, 'num_extra_tokens', 1))
    out: Dict[str, List[torch.Tensor]] = OrderedDict()
    for x in batches:
        for name, tokens in level_features(model, x.to(device), blocks).items():
            feats = tokens if pool is None else pool_tokens(tokens, pool, extra)
            out.setdefault(name, []).append(feats.float().cpu())
    if not out:
        raise ValueError('extract_levels: no images')
    return OrderedDict((k, torch.cat(v)) for k, v in out.items())
