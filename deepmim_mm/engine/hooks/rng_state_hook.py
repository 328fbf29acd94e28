"""Exact resume: every rank's RNG states saved in each checkpoint and restored on resume."""
import random
from typing import List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop


def get_rng_state() -> dict:  # numpy's state as plain values: weights-only loading reads them
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = dict(torch=torch.get_rng_state(),
                 numpy=(name, keys.tolist(), int(pos), int(has_gauss), float(gauss)),
                 python=random.getstate())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state['torch'].cpu())  # (a resume may map tensors to the GPU)
    name, keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    random.setstate(state['python'])
    cuda = state.get('cuda')
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


class _RestoreWhileResumed:
    """The IterBasedTrainLoop's data iterator, drawing every batch from the interrupted run's RNG
    states while the runner is at the resumed iteration; unwraps itself at the next one."""

    def __init__(self, runner, iterator, state: dict):
        self._runner, self._it, self._state = runner, iterator, state
        self._at = runner.iter

    def __next__(self):
        if self._runner.iter == self._at:
            set_rng_state(self._state)
        else:
            self._runner.train_loop.dataloader_iterator = self._it
        return next(self._it)

    def skip_iter(self, num_iters: int) -> None:
        """Skip by drawing, as upstream's loop does (onedl-mmengine's would skip in the sampler)."""
        for _ in range(num_iters):
            next(self)


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Saves every rank's RNG states in each checkpoint and restores them on resume.

    Adds over mmengine (which re-seeds on resume but saves no RNG state): torch, numpy, python
    (and CUDA) states under ``checkpoint['rng_state']``, one per rank, restored for the first
    batch an ``IterBasedTrainLoop`` trains on after a resume, or at once at an epoch end.
    """

    # Before CheckpointHook (VERY_LOW), so the states are gathered before it saves.
    priority = 'LOW'

    def __init__(self) -> None:
        self._gathered: Optional[List[dict]] = None
        self._pending: Optional[List[dict]] = None
        self._saved_per_epoch: Optional[int] = None

    def _gather_if_saving(self, runner, by_epoch: bool) -> None:
        """Gather the states on every rank (a collective) when the CheckpointHook will save."""
        hook = next((h for h in runner.hooks if isinstance(h, CheckpointHook)), None)
        if hook is None or hook.by_epoch != by_epoch or get_dist_info()[1] == 1:
            return
        if by_epoch:
            saves = hook.every_n_epochs(runner, hook.interval, hook.save_begin) or (
                hook.save_last and hook.is_last_train_epoch(runner))
        else:
            saves = hook.every_n_train_iters(runner, hook.interval, hook.save_begin) or (
                hook.save_last and hook.is_last_train_iter(runner))
        if saves:
            self._gathered = all_gather_object(get_rng_state())

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self._gather_if_saving(runner, by_epoch=False)

    def after_train_epoch(self, runner) -> None:
        self._gather_if_saving(runner, by_epoch=True)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        states = [get_rng_state()] if get_dist_info()[1] == 1 else self._gathered
        if states is not None:  # None: a save this hook did not foresee (a best-checkpoint save)
            checkpoint['rng_state'] = states
        self._gathered = None

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._pending = checkpoint.get('rng_state')
        # mmengine's RuntimeInfoHook saved the run's max_iters = max_epochs x batches per epoch
        info = checkpoint.get('message_hub', {}).get('runtime_info', {})
        self._saved_per_epoch = (info['max_iters'] // info['max_epochs']
                                 if info.get('max_iters') and info.get('max_epochs') else None)

    def before_train(self, runner) -> None:
        # Called for load_from too: only a resume has restored the iteration counter.
        states, self._pending = self._pending, None
        if not states or runner.iter == 0:
            return
        rank, world = get_dist_info()
        if len(states) != world:
            print_log(f'RNGStateHook: the checkpoint holds RNG states of {len(states)} ranks, '
                      f'this run has {world}: RNG states are not restored', logger='current',
                      level=30)
            return
        state = states[rank]
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop):
            loop.dataloader_iterator = _RestoreWhileResumed(runner, loop.dataloader_iterator,
                                                            state)
            return
        per_epoch = len(loop.dataloader) if hasattr(loop, 'dataloader') else 0
        saved = self._saved_per_epoch
        if per_epoch and saved and saved != per_epoch and loop.iter == loop.epoch * saved:
            print_log(f'RNGStateHook: the dataloader length changed from {saved} to {per_epoch} '
                      'batches per epoch since the checkpoint (the dataset or batch size '
                      f'changed?); resumed after the complete epoch {loop.epoch} (iteration '
                      f'{loop.iter}), so epoch {loop.epoch + 1} starts at its first batch',
                      logger='current', level=30)
        elif per_epoch and loop.iter != loop.epoch * per_epoch:
            print_log(f'RNGStateHook: resumed at iteration {loop.iter}, inside epoch '
                      f'{loop.epoch + 1}; {type(loop).__name__} restarts that epoch from its '
                      'first batch, so this run will not repeat the interrupted one exactly '
                      '(use IterBasedTrainLoop or epoch checkpoints for exact resume)',
                      logger='current', level=30)
        set_rng_state(state)
