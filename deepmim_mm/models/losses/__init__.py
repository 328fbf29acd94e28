"""Reconstruction losses (mmpretrain ``MODELS``)."""
