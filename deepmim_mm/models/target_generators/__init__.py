"""Frozen target generators (teachers)."""
