"""mmseg's ``MAE`` backbone that loads this plugin's pretraining checkpoints."""
from mmseg.models.backbones import MAE
from mmseg.registry import MODELS

from ..utils.checkpoint import upstream_init_then_pretrained_cfg
from ..utils.pretrain_loading import load_pretrained_encoder


@MODELS.register_module()
class PretrainedMAE(MAE):
    """mmseg's :class:`~mmseg.models.backbones.MAE`, plus loading of MIM pretraining checkpoints.

    Same architecture, forward and parameter names as mmseg's ``MAE`` (BEiT-style layers with
    relative position bias and layer scale, both new at fine-tune time), so mmseg's
    ``LayerDecayOptimizerConstructor`` applies unchanged (it recognises the class by ``'MAE'`` in
    its name). What it adds: with ``init_cfg=dict(type='Pretrained', checkpoint=...,
    prefix='backbone.')`` it loads a DeepMIM/MFF/MAE pretraining checkpoint of this plugin or of
    mmpretrain (mmseg's ``MAE`` ignores ``prefix`` and would load nothing from such a file): the
    encoder keys are taken from under ``prefix``, decoder/head/teacher/MFF keys and the
    pretraining encoder's final norm are dropped, the position embedding is resized to the
    ``img_size / patch_size`` grid (32x32 at 512/16), and a report of every loaded, dropped and new
    key is logged (:func:`~deepmim_mm.utils.pretrain_loading.load_pretrained_encoder`). The report
    is kept in ``self.pretrain_report``.
    """

    def init_weights(self):
        # Random initialisation of everything first (relative position bias, layer scale, ...),
        # exactly as mmseg's MAE does without a checkpoint, then the encoder from the file.
        init_cfg = upstream_init_then_pretrained_cfg(self, super().init_weights)
        if init_cfg is None:
            return
        self.pretrain_report = load_pretrained_encoder(
            self, init_cfg.get('checkpoint'), prefix=init_cfg.get('prefix', 'backbone.'),
            pos_grid=self.patch_shape, num_extra_tokens=1)
