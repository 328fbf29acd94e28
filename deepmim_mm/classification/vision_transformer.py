"""mmpretrain's VisionTransformer with a checked pretrained initialisation."""
from typing import Sequence

from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.registry import MODELS

from ..checkpoint import PRETRAIN_ONLY_KEYS, PretrainedEncoderMixin


@MODELS.register_module()
class PretrainedVisionTransformer(PretrainedEncoderMixin, VisionTransformer):
    """mmpretrain ``VisionTransformer`` whose ``Pretrained`` init must load every encoder weight
    (upstream's only warns); ``ln2`` may be new with ``out_type='avg_featmap'``.

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
        allow_new = self.allow_new + ((r'ln2\..*', ) if self.out_type == 'avg_featmap' else ())
        ignore = PRETRAIN_ONLY_KEYS + tuple((k, 'ignore_keys') for k in self.ignore_keys)
        return dict(allow_new=allow_new, ignore=ignore, resizable=('pos_embed', ))
