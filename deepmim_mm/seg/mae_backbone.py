"""mmseg's ``MAE`` backbone that loads this plugin's pretraining checkpoints."""
from mmseg.models.backbones import MAE
from mmseg.registry import MODELS

from ..checkpoint import DENSE_NEW_KEYS, PretrainedEncoderMixin


@MODELS.register_module()
class PretrainedMAE(PretrainedEncoderMixin, MAE):
    """mmseg's :class:`~mmseg.models.backbones.MAE`, plus checked loading of MIM pretraining
    checkpoints.

    Same architecture, forward and parameter names as mmseg's ``MAE`` (BEiT-style layers with
    relative position bias and layer scale, both new at fine-tune time), so mmseg's
    ``LayerDecayOptimizerConstructor`` applies unchanged (it recognises the class by ``'MAE'`` in
    its name). What it adds: with ``init_cfg=dict(type='Pretrained', checkpoint=...,
    prefix='backbone.')`` it loads a DeepMIM/MFF/MAE pretraining checkpoint of this plugin or of
    mmpretrain (mmseg's ``MAE`` ignores ``prefix`` and would load nothing from such a file)
    through :func:`deepmim_mm.checkpoint.load_pretrained_encoder`: every encoder weight must
    load; only the relative position tables and layer scale may be new; decoder, head, teacher,
    MFF fusion keys and the pretraining encoder's final norm are dropped with their reason; the
    position embedding is resized to the ``img_size / patch_size`` grid (32x32 at 512/16) by
    mmseg's own ``resize_abs_pos_embed``. The report is logged and kept in
    ``self.pretrain_report``.
    """

    def encoder_load_policy(self) -> dict:
        return dict(allow_new=DENSE_NEW_KEYS, prepare=self.resize_abs_pos_embed)
