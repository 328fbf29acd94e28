"""mmseg backbones that load this plugin's pretraining checkpoints; importing it imports mmseg."""
from .mae_backbone import PretrainedMAE

__all__ = ['PretrainedMAE']
