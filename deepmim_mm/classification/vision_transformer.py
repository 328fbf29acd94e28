"""mmpretrain's VisionTransformer with a checked pretrained initialisation."""
from typing import Sequence

from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.registry import MODELS

from ..checkpoint import PRETRAIN_ONLY_KEYS, PretrainedEncoderMixin


@MODELS.register_module()
class PretrainedVisionTransformer(PretrainedEncoderMixin, VisionTransformer):
    """mmpretrain ``VisionTransformer`` whose ``init_cfg=dict(type='Pretrained', ...)`` must load
    every encoder weight.

    Adds over mmpretrain's ``VisionTransformer`` (whose ``Pretrained`` init loads with
    ``strict=False`` and only *warns* about missing keys, silently fine-tuning a randomly
    initialised encoder when the checkpoint or ``prefix`` is wrong):

    - the pretrained load goes through :func:`deepmim_mm.checkpoint.load_pretrained_encoder`,
      which raises ``ValueError`` naming the missing keys when the checkpoint has no encoder under
      ``prefix`` or lacks any encoder weight the model has, when it has encoder keys the model does
      not know (another architecture) or a shape differs; ``FileNotFoundError`` when the file is
      missing;
    - keys that are new by design are allowed: ``ln2`` (the norm after global average pooling,
      ``out_type='avg_featmap'``) and ``ln1`` is dropped when ``final_norm=False``; MFF's
      pretraining-only ``proj_layers``/``proj_weights`` and every key outside ``prefix``
      (decoders, heads, teachers) are dropped;
    - the position embedding is resized to the fine-tuning grid by the upstream load hook;
    - a report of loaded / new / dropped keys is logged and kept as ``self.pretrain_report``.

    Everything else (architecture, outputs, layer-wise depth for learning-rate decay) is
    upstream's.

    Args:
        allow_new (Sequence[str]): extra regexes of model keys the checkpoint may lack.
        ignore_keys (Sequence[str]): extra regexes of checkpoint encoder keys to drop.
        **kwargs: ``VisionTransformer`` arguments.
    """

    def __init__(self, *args, allow_new: Sequence[str] = (),
                 ignore_keys: Sequence[str] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.allow_new = tuple(allow_new)
        self.ignore_keys = tuple(ignore_keys)

    def encoder_load_policy(self) -> dict:
        allow_new = list(self.allow_new)
        if self.out_type == 'avg_featmap':
            allow_new.append(r'ln2\..*')
        ignore = list(PRETRAIN_ONLY_KEYS) + [(k, 'ignore_keys') for k in self.ignore_keys]
        return dict(allow_new=allow_new, ignore=ignore, resizable=('pos_embed', ))
