"""Stop at the first non-finite loss, naming the level and the iteration."""
import math

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names the level(s) and the iteration."""


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stops training at a non-finite loss, naming the level and the iteration.

    Adds over mmengine (which keeps training on NaN): every ``interval`` iterations the logged
    ``loss*`` values are checked, before the ``CheckpointHook`` saves; under a dynamic AMP loss
    scale (``amp_skip``) only ``max_amp_skips`` consecutive non-finite steps stop the run. A
    ``mean``/``std`` of the data preprocessor that makes every input non-finite is a
    ``ValueError`` before training (upstream's preprocessors accept it).
    """

    priority = 'HIGH'  # after RuntimeInfoHook (VERY_HIGH), before LoggerHook / CheckpointHook

    def __init__(self, interval: int = 1, amp_skip: bool = True, max_amp_skips: int = 20):
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f'NonFiniteLossHook: interval must be a positive int, '
                             f'got {interval!r}')
        self.interval = interval
        self.amp_skip = amp_skip
        self.max_amp_skips = max_amp_skips
        self._amp_skips = 0

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        pre = getattr(model, 'data_preprocessor', None)
        mean, std = getattr(pre, 'mean', None), getattr(pre, 'std', None)
        if isinstance(std, torch.Tensor) and isinstance(mean, torch.Tensor) and not (
                std.ne(0).all() and std.isfinite().all() and mean.isfinite().all()):
            std, mean = ([round(float(v), 3) for v in t.flatten()] for t in (std, mean))
            raise ValueError(
                f'model.data_preprocessor: std={std}, mean={mean} make every normalised input '
                'non-finite ((x - mean) / std); give finite values and a non-zero std per channel '
                '(ImageNet, 0-255 scale: std=[58.395, 57.12, 57.375])')

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if outputs is None or not self.every_n_train_iters(runner, self.interval):
            return
        bad = {}
        for key in outputs:
            if 'loss' in key:  # RuntimeInfoHook's host copy, if it ran
                buf = runner.message_hub.log_scalars.get(f'train/{key}')
                value = float(buf.current() if buf is not None else outputs[key])
                if not math.isfinite(value):
                    bad[key] = value
        if not bad:
            self._amp_skips = 0
            return
        if len(bad) > 1:  # name the levels, not the total they make non-finite
            bad.pop('loss', None)
        msg = (f'non-finite loss at iteration {runner.iter + 1} (epoch {runner.epoch + 1}): '
               + ', '.join(f'{k}={v}' for k, v in bad.items()))
        wrapper = getattr(runner, 'optim_wrapper', None)
        # Private: mmengine keeps loss_scale='dynamic' only as _scale_update_param=None; its
        # GradScaler is built alike for a static scale, so no public attribute tells them apart.
        dynamic = getattr(wrapper, 'loss_scaler', None) is not None and getattr(
            wrapper, '_scale_update_param', 0) is None
        if self.amp_skip and dynamic:
            self._amp_skips += 1
            if self._amp_skips < self.max_amp_skips:
                print_log(f'{msg}; AMP dynamic loss scale skips this step '
                          f'({self._amp_skips}/{self.max_amp_skips} in a row)',
                          logger='current', level=30)
                return
            msg += f'; {self._amp_skips} consecutive steps skipped by the AMP loss scaler'
        last = runner.message_hub.get_info('last_ckpt')
        msg += ('. Training stopped before saving this iteration; the last good checkpoint is '
                f'{last}' if last else '. Training stopped; no checkpoint was saved yet')
        msg += ' (lower the learning rate, clip gradients or check the data, then resume).'
        raise NonFiniteLossError(msg)
