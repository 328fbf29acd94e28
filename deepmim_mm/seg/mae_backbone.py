"""mmseg's ``MAE`` backbone that loads this plugin's pretraining checkpoints."""
from mmseg.models.backbones import MAE
from mmseg.registry import MODELS

from ..checkpoint import DENSE_NEW_KEYS, PretrainedEncoderMixin


@MODELS.register_module()
class PretrainedMAE(PretrainedEncoderMixin, MAE):
    """mmseg's :class:`~mmseg.models.backbones.MAE` whose ``Pretrained`` init honours ``prefix``
    (mmseg's ignores it and loads nothing from a pretraining checkpoint) and is checked: only
    relative position tables and layer scale may be new; ``pos_embed`` resized by mmseg."""

    def encoder_load_policy(self) -> dict:
        return dict(allow_new=DENSE_NEW_KEYS, prepare=self.resize_abs_pos_embed)
