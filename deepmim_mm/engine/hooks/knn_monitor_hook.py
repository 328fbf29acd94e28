"""kNN top-1 of every supervised level on a small labelled set, logged while pretraining runs."""
import time
from typing import Dict, List, Optional

import numpy as np
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop

from ...analysis.features import (BLOCKS, FEATURES, extract_features, labelled_splits, labels_of,
                                  model_input_size, unwrap)
from ...analysis.probe import knn_probe
from .rng_state_hook import get_rng_state, set_rng_state


@HOOKS.register_module()
class KNNMonitorHook(Hook):
    """Every ``interval`` epochs (``by_epoch=False``: iterations), the kNN top-1 of every
    supervised level (``blocks='all'``: every block).

    Adds what mmengine's validation loop cannot run on a pretraining model (it predicts no
    labels): DINO's weighted kNN (arXiv 2104.14294: ``k=20``, ``temperature=0.07``) of the
    unmasked ``feature`` (``'avg'``, our choice, or ``'cls'``) of ``data_root/val/<class>/*``
    against ``data_root/train/<class>/*`` (at most ``max_per_class`` each, chosen by ``seed``),
    logged through ``runner.visualizer`` (docs/en/user_guides/hooks.md#knn-monitoring-per-level).
    Training is unchanged (eval mode, no gradients, RNG states and mode restored).
    """

    priority = 'LOW'

    def __init__(self,
                 data_root: Optional[str] = None,
                 enable: bool = False,
                 interval: int = 1,
                 by_epoch: bool = True,
                 blocks: str = 'supervised',
                 feature: str = 'avg',
                 k: int = 20,
                 temperature: float = 0.07,
                 max_per_class: Optional[int] = None,
                 batch_size: int = 64,
                 seed: int = 0) -> None:
        name = type(self).__name__
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'{name}: interval must be a positive int, got {interval!r}')
        if blocks not in BLOCKS:
            raise ValueError(f'{name}: blocks must be one of {BLOCKS}, got {blocks!r}')
        if feature not in FEATURES:
            raise ValueError(f'{name}: feature must be one of {FEATURES}, got {feature!r}')
        if not isinstance(k, int) or k < 1:
            raise ValueError(f'{name}: k must be a positive int, got {k!r}')
        if not temperature > 0:
            raise ValueError(f'{name}: temperature must be > 0, got {temperature!r}')
        if enable and not data_root:
            raise ValueError(f'{name}: data_root is required when enable=True: a folder with '
                             'train/<class>/ and val/<class>/ image subfolders')
        self.data_root = data_root
        self.enable = bool(enable)
        self.interval = interval
        self.by_epoch = by_epoch
        self.blocks = blocks
        self.feature = feature
        self.k = k
        self.temperature = temperature
        self.max_per_class = max_per_class
        self.batch_size = batch_size
        self.seed = seed
        self.history: List[dict] = []
        self._data: Optional[List[tuple]] = None
        self._num_classes = 0
        self._since = (0.0, 0)  # (time, iterations done) at the last evaluation's end

    # -- schedule --------------------------------------------------------------------------
    def before_train(self, runner) -> None:
        if self.enable and self.by_epoch and isinstance(runner.train_loop, IterBasedTrainLoop):
            raise ValueError(f'{type(self).__name__}: by_epoch=True, but the train loop is '
                             'iteration based; set by_epoch=False (interval in iterations)')
        self._since = (time.perf_counter(), runner.iter)

    def after_train_epoch(self, runner) -> None:
        if self.enable and self.by_epoch and self.every_n_epochs(runner, self.interval):
            self.evaluate(runner, runner.iter)

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if self.enable and not self.by_epoch and self.every_n_train_iters(runner, self.interval):
            self.evaluate(runner, runner.iter + 1)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.history:
            checkpoint['knn_monitor'] = dict(history=list(self.history))

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self.history = list(checkpoint.get('knn_monitor', {}).get('history', []))

    # -- work ------------------------------------------------------------------------------
    def _load_images(self, model) -> None:
        """``self._data``: per split, the collated batches (decoded once) and the labels."""
        from mmengine.dataset import default_collate
        splits = labelled_splits(self.data_root, model_input_size(model), self.max_per_class,
                                 self.seed, field_name=f'{type(self).__name__}.data_root')
        self._data, bs = [], self.batch_size
        for ds in splits:
            batches = [default_collate([ds[i] for i in range(s, min(s + bs, len(ds)))])
                       for s in range(0, len(ds), bs)]
            self._data.append((batches, labels_of(ds)))
        self._num_classes = len(splits[0].metainfo['classes'])

    def evaluate(self, runner, step: int) -> Dict[str, float]:
        """Score every level now and log it at ``step``; returns ``{'block{n}': top1}``."""
        t0 = time.perf_counter()
        state = get_rng_state()
        model = unwrap(runner.model)
        was_training = model.training
        model.eval()
        try:
            if self._data is None:
                self._load_images(model)
            (train, train_y), (val, val_y) = [
                (extract_features(model, batches, self.blocks, pools=(self.feature, )), labels)
                for batches, labels in self._data]
            device = next(model.parameters()).device
            top1 = {name: knn_probe(train[name][self.feature], train_y, val[name][self.feature],
                                    val_y, self._num_classes, k=self.k,
                                    temperature=self.temperature, device=device)['top1']
                    for name in train}
        finally:
            model.train(was_training)
            set_rng_state(state)
        self.history.append(dict(step=step, top1=top1))
        image = self._plot()
        seconds = time.perf_counter() - t0  # all of the hook's work but writing the logs
        epoch = self._epoch_seconds(runner, t0, step)
        scalars = {f'knn_top1/{name}': v for name, v in top1.items()}
        scalars['knn_monitor/seconds'] = seconds
        if epoch:
            scalars['knn_monitor/epoch_fraction'] = seconds / epoch
        runner.visualizer.add_scalars(scalars, step=step)
        runner.visualizer.add_image('knn_top1', image, step=step)
        cost = f', {seconds / epoch:.3f} of an epoch' if epoch else ''
        n_train, n_val = len(train_y), len(val_y)
        runner.logger.info(
            f'kNN top-1 (k={min(self.k, n_train)}, T={self.temperature}, {self.feature}; '
            f'{n_train} train / {n_val} val images) at iteration {step}: '
            + ', '.join(f'{n} {v:.2f}' for n, v in top1.items()) + f' ({seconds:.2f} s{cost})')
        self._since = (time.perf_counter(), step)
        return top1

    def _epoch_seconds(self, runner, now: float, step: int) -> Optional[float]:
        """Mean iteration time since the last evaluation x iterations per epoch, or ``None``."""
        t, done = self._since
        try:
            return (now - t) / (step - done) * len(runner.train_dataloader)
        except (TypeError, ZeroDivisionError):
            return None

    def _plot(self) -> np.ndarray:
        """RGB image: top-1 per level against the training step, one line per level."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from mmengine.visualization.utils import img_from_canvas
        fig = Figure(figsize=(5, 3.2), dpi=100)
        ax = fig.subplots()
        steps = [h['step'] for h in self.history]
        for name in self.history[-1]['top1']:
            ax.plot(steps, [h['top1'].get(name, np.nan) for h in self.history], marker='o',
                    label=name)
        ax.set(xlabel='iteration', ylabel=f'kNN top-1 (%), k={self.k}')
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        return img_from_canvas(FigureCanvasAgg(fig))
