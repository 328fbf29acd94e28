"""Frozen target generators (teachers)."""
from .clip_teacher import CLIPTeacher, load_clip_visual_state_dict
from .frozen_teacher import FrozenTeacher
from .mae_hybrid_target import MAEHybridTarget

__all__ = ['CLIPTeacher', 'load_clip_visual_state_dict', 'FrozenTeacher', 'MAEHybridTarget']
