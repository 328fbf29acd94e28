"""Reconstruction figures per supervised level, logged while pretraining runs."""
from typing import Optional, Sequence

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ...analysis import level_grids, masked_predictions, unwrap


@HOOKS.register_module()
class DeepMIMReconstructionHook(Hook):
    """Every ``interval`` training iterations (if ``enable``), log one reconstruction figure
    per level.

    Adds to mmpretrain's ``VisualizationHook`` (classification predictions) what masked image
    modeling needs to watch: one grid per supervised level, ``reconstruction_block{n}``
    (:func:`~deepmim_mm.analysis.level_grids`), of the first ``num_images`` images of the first
    training batch with the same mask (``seed``) every time, through
    ``runner.visualizer.add_image``. Eval mode, no gradients, RNG state restored.
    """

    priority = 'LOW'

    def __init__(self,
                 enable: bool = False,
                 interval: int = 1000,
                 num_images: int = 4,
                 seed: int = 0) -> None:
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'DeepMIMReconstructionHook: interval must be a positive int '
                             f'(iterations), got {interval!r}')
        if not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f'DeepMIMReconstructionHook: num_images must be a positive int, '
                             f'got {num_images!r}')
        self.enable = bool(enable)
        self.interval = interval
        self.num_images = num_images
        self.seed = seed
        self._inputs: Optional[torch.Tensor] = None

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Optional[Sequence[dict]] = None,
                         outputs: Optional[dict] = None) -> None:
        if not self.enable or not self.every_n_train_iters(runner, self.interval):
            return
        model = unwrap(runner.model)
        if self._inputs is None:
            inputs = model.data_preprocessor(data_batch, False)['inputs']
            self._inputs = inputs[:self.num_images].detach().cpu()
        inputs = self._inputs.to(next(model.parameters()).device)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                result = masked_predictions(model, inputs, seed=self.seed)
                grids = level_grids(model, inputs, result)
        finally:
            model.train(was_training)
        for name, grid in zip(result.names, grids):
            runner.visualizer.add_image(f'reconstruction_{name}', grid, step=runner.iter + 1)
