"""mmseg's ``MAE`` backbone that loads this plugin's pretraining checkpoints."""
from mmseg.models.backbones import MAE
from mmseg.registry import MODELS

from ..checkpoint import DENSE_NEW_KEYS, PretrainedEncoderMixin


@MODELS.register_module()
class PretrainedMAE(PretrainedEncoderMixin, MAE):
    """mmseg's :class:`~mmseg.models.backbones.MAE` (same architecture and parameter names, so
    mmseg's ``LayerDecayOptimizerConstructor`` applies) that loads MIM pretraining checkpoints.

    Adds: ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')`` loads the
    encoder of a DeepMIM / MFF / MAE checkpoint of this plugin or mmpretrain (mmseg's ``MAE``
    ignores ``prefix`` and would load nothing from such a file) through
    :func:`deepmim_mm.checkpoint.load_pretrained_encoder`: only the relative position tables and
    layer scale may be new; the position embedding is resized by mmseg's
    ``resize_abs_pos_embed``; the report is kept as ``self.pretrain_report``.
    """

    def encoder_load_policy(self) -> dict:
        return dict(allow_new=DENSE_NEW_KEYS, prepare=self.resize_abs_pos_embed)
