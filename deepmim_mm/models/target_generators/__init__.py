"""Frozen target generators (teachers)."""
from .clip_teacher import CLIPTeacher, load_clip_visual_state_dict

__all__ = ['CLIPTeacher', 'load_clip_visual_state_dict']
