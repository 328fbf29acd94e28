"""mmpretrain's VisionTransformer with a checked pretrained initialisation."""
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.registry import MODELS

from ..checkpoint import PRETRAIN_ONLY_KEYS, PretrainedEncoderMixin


@MODELS.register_module()
class PretrainedVisionTransformer(PretrainedEncoderMixin, VisionTransformer):
    """mmpretrain ``VisionTransformer`` whose ``Pretrained`` init must load every encoder weight
    (upstream's only warns); ``ln2`` may be new with ``out_type='avg_featmap'``."""

    def encoder_load_policy(self) -> dict:
        allow_new = (r'ln2\..*', ) if self.out_type == 'avg_featmap' else ()
        return dict(allow_new=allow_new, ignore=PRETRAIN_ONLY_KEYS, resizable=('pos_embed', ))
