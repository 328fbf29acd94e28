"""Training hooks, one per file, registered in mmengine's root ``HOOKS`` (found from every
scope).

- :mod:`.knn_monitor_hook`: ``KNNMonitorHook``, kNN top-1 of every supervised level on a small
  labelled folder while pretraining runs.
"""
from .knn_monitor_hook import KNNMonitorHook

__all__ = ['KNNMonitorHook']
