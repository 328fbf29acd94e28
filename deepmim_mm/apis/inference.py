"""Build a pretrained encoder from a config and a checkpoint and get every level's features."""
import os.path as osp
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Union

import torch
from mmengine.config import Config
from mmengine.model import BaseModel
from mmpretrain.apis import FeatureExtractor, get_model

from ..analysis.features import eval_pipeline, extract_features, model_input_size
from ..checkpoint import load_pretrained_encoder
from ..utils import load_config


def init_encoder(config: Union[str, Config],
                 checkpoint: Optional[str],
                 device: Union[str, torch.device] = 'cpu',
                 cfg_options: Optional[dict] = None,
                 prefix: Optional[str] = 'backbone.',
                 allow_new_keys: bool = False) -> BaseModel:
    """mmpretrain's ``get_model`` without the teacher, the checkpoint's encoder (under ``prefix``;
    ``''``: a bare encoder; ``None``: every key into the whole model, teacher kept) loaded
    strictly (``model.encoder_load_report``; upstream only warns), or with ``checkpoint=None``
    initialised. ``cfg_options`` are checked as ``tools/train.py`` checks ``--cfg-options``; a
    bad config, override or checkpoint is a ``ValueError`` naming it (a missing file:
    ``FileNotFoundError``)."""
    cfg = load_config(config, cfg_options, allow_new_keys)
    name = osp.basename(config) if isinstance(config, str) else 'the config'
    if 'model' not in cfg:
        raise ValueError(f'{name}: no `model` field')
    if prefix is not None:
        cfg.model.pop('target_generator', None)
    try:
        model = get_model(cfg, device=device)  # in eval mode
    except TypeError as e:  # an argument the class does not take (a cfg_options typo?)
        raise ValueError(f'{name}: model: {e}') from e
    if not hasattr(getattr(model, 'backbone', None), 'layers'):
        raise ValueError(f'{name}: model.backbone must be a ViT with `layers` (DeepMIMViT, '
                         'MAEViT, VisionTransformer, ...)')
    model.encoder_load_report = None
    if checkpoint is None:
        model.init_weights()
    else:
        model.encoder_load_report = load_pretrained_encoder(
            model if prefix is None else model.backbone, checkpoint, prefix=prefix or None,
            ignore=(), resizable=('pos_embed', ), field_name=f'checkpoint (for {name})')
    return model


class LevelFeatureExtractor(FeatureExtractor):
    """mmpretrain's ``FeatureExtractor`` for pretraining configs: without ``test_dataloader``
    they get :func:`~deepmim_mm.analysis.eval_pipeline` at the model's input size, and a config
    is built with :func:`init_encoder` (strict loading)."""

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
        size = model_input_size(self.model)
        return Compose([TRANSFORMS.build(t) for t in eval_pipeline(size)])


def extract_levels(model: BaseModel,
                   images: Union[str, Sequence, torch.Tensor],
                   blocks: str = 'supervised',
                   pool: Optional[str] = None,
                   batch_size: int = 8) -> Dict[str, torch.Tensor]:
    """``{'block{n}': (N, T, C) float32 CPU tokens}`` of the ``'supervised'`` levels or ``'all'``
    blocks (raw) of ``images`` (a file, a folder, a list of files or BGR arrays, or a
    preprocessed ``(B, 3, H, W)`` tensor); ``pool`` ``'cls'`` / ``'avg'``: ``(N, C)``."""
    model.eval()
    if isinstance(images, torch.Tensor):
        batches = (images[i:i + batch_size] for i in range(0, len(images), batch_size))
    else:
        extractor = LevelFeatureExtractor(model)
        batches = extractor.preprocess(extractor._inputs_to_list(images), batch_size=batch_size)
    feats = extract_features(model, batches, blocks, pools=(pool, ))
    return OrderedDict((name, per[pool]) for name, per in feats.items())
