"""Utilities: compatibility fixes for the pinned stack, checkpoint helpers."""
