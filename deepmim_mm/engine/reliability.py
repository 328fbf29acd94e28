"""Reliability for long pretraining runs: exact resume, crash-safe checkpoints, early clear errors.

Importing this module (``custom_imports=dict(imports=['deepmim_mm.engine.reliability'])``)
applies :func:`apply`, which makes mmengine's checkpoint writing atomic, and registers three hooks
in mmpretrain's ``HOOKS``:

- :class:`RNGStateHook`: saves the torch / numpy / python RNG states of every rank in each
  checkpoint and restores them on resume at the point where the interrupted run stood, so a run
  resumed from an iteration checkpoint draws the same masks and augmentations as one that was
  never interrupted.
- :class:`NonFiniteLossHook`: stops the run at the first non-finite ``loss*`` value, naming the
  level and the iteration, before that iteration's checkpoint is written (or, under AMP's dynamic
  loss scale, lets the scaler skip the step, up to a limit).
- :class:`CheckpointMatchHook`: a ``load_from`` / resume checkpoint of another architecture is a
  ``ValueError`` naming the file and the mismatching keys, instead of mmengine's warning and a
  silently half-initialised model.
"""
import math
import os
import os.path as osp
import random
import tempfile
from typing import Dict, List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_dist_info, is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import IterBasedTrainLoop
from mmengine.runner import checkpoint as _ckpt_module
from mmpretrain.registry import HOOKS

__all__ = ['apply', 'atomic_save', 'atomic_write_text', 'RNGStateHook', 'NonFiniteLossHook',
           'NonFiniteLossError', 'CheckpointMatchHook']

_TMP_SUFFIX = '.tmp'


# --------------------------------------------------------------------------------------------
# Atomic checkpoint writing
# --------------------------------------------------------------------------------------------
def _is_local(path: str) -> bool:
    return '://' not in path or path.startswith('file://')


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory or '.', os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write(path: str, write) -> None:
    """Call ``write(f)`` on a temporary file next to ``path``, then rename it onto ``path``.

    A process killed at any point leaves either the old ``path`` (or none) or the complete new
    one, never a truncated file; only a ``*.tmp`` file may remain, which nothing reads.
    """
    if path.startswith('file://'):
        path = path[len('file://'):]
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=osp.basename(path) + '.', suffix=_TMP_SUFFIX,
                               dir=directory)
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(directory)


def atomic_save(obj, path: str) -> None:
    """``torch.save(obj, path)`` that never leaves a truncated ``path`` behind."""
    _atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (e.g. mmengine's ``last_checkpoint`` pointer)."""
    _atomic_write(path, lambda f: f.write(text.encode('utf-8')))


_upstream_save_checkpoint = _ckpt_module.save_checkpoint


def save_checkpoint(checkpoint: dict, filename: str, file_client_args=None,
                    backend_args=None) -> None:
    """mmengine's ``save_checkpoint``, atomic for local files.

    Upstream serialises into memory and then writes the file in place, so a process killed
    during the write leaves a truncated checkpoint. Local files here go through
    :func:`atomic_save` (which also streams instead of holding a second copy in memory); other
    backends (pavi, petrel, ...) keep upstream's behaviour.
    """
    if file_client_args is None and backend_args is None and _is_local(filename):
        atomic_save(checkpoint, filename)
    else:
        _upstream_save_checkpoint(checkpoint, filename, file_client_args=file_client_args,
                                  backend_args=backend_args)


def _save_checkpoint_with_step(self, runner, step, meta):
    """``CheckpointHook._save_checkpoint_with_step`` in a crash-safe order.

    Upstream (mmengine 0.10.7) first deletes the oldest checkpoint, then writes the new one, then
    rewrites ``last_checkpoint`` in place: a crash in between can leave no complete checkpoint
    (``max_keep_ckpts=1``), a pointer to a deleted file, or an empty pointer (resume would then
    silently start from scratch). Here the new checkpoint is written (atomically), then the
    pointer is replaced atomically, and only then are outdated checkpoints removed.
    """
    ckpt_filename = self.filename_tmpl.format(step)
    self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
    runner.message_hub.update_info('last_ckpt', self.last_ckpt)
    to_remove = []
    if self.max_keep_ckpts > 0:
        if not (len(self.keep_ckpt_ids) > 0 and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                to_remove.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

    runner.save_checkpoint(
        self.out_dir,
        ckpt_filename,
        self.file_client_args,
        save_optimizer=self.save_optimizer,
        save_param_scheduler=self.save_param_scheduler,
        meta=meta,
        by_epoch=self.by_epoch,
        backend_args=self.backend_args,
        **self.args)

    if not is_main_process():
        return
    atomic_write_text(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
    for old in to_remove:
        ckpt_path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
        if self.file_backend.isfile(ckpt_path):
            self.file_backend.remove(ckpt_path)
        elif self.file_backend.isdir(ckpt_path):
            self.file_backend.rmtree(ckpt_path)  # DeepSpeed checkpoints are folders


# --------------------------------------------------------------------------------------------
# Distributed training without GPUs (gloo)
# --------------------------------------------------------------------------------------------
def _patch_cpu_distributed() -> None:
    """Let ``--launcher pytorch`` / ``slurm`` runs train on CPUs with the gloo backend.

    mmengine 0.10.7 calls ``torch.cuda.set_device(local_rank)`` unconditionally when it
    initialises the process group, and wraps the model in DDP with ``device_ids=[local_rank]``,
    which DDP rejects for a CPU module. On a machine without CUDA the first is skipped and the
    second passes ``device_ids=None`` (FSDP: ``device_id=cpu``); with GPUs nothing changes.
    """
    from mmengine.dist import utils as dist_utils
    from mmengine.model.wrappers import distributed as ddp_module

    if not getattr(dist_utils._init_dist_pytorch, '_deepmim_cpu', False):
        upstream_init = dist_utils._init_dist_pytorch
        upstream_slurm = dist_utils._init_dist_slurm

        def _no_cuda_set_device(fn):
            def wrapped(*args, **kwargs):
                if torch.cuda.is_available():
                    return fn(*args, **kwargs)
                real = torch.cuda.set_device
                torch.cuda.set_device = lambda *a, **k: None
                try:
                    return fn(*args, **kwargs)
                finally:
                    torch.cuda.set_device = real
            wrapped._deepmim_cpu = True
            return wrapped

        dist_utils._init_dist_pytorch = _no_cuda_set_device(upstream_init)
        dist_utils._init_dist_slurm = _no_cuda_set_device(upstream_slurm)

    cls = ddp_module.MMDistributedDataParallel
    if not getattr(cls.__init__, '_deepmim_cpu', False):
        upstream_ddp_init = cls.__init__

        def __init__(self, module, detect_anomalous_params=False, **kwargs):
            devices = {p.device.type for p in module.parameters()}
            if devices == {'cpu'}:
                kwargs['device_ids'] = None
                kwargs.pop('output_device', None)
            upstream_ddp_init(self, module=module,
                              detect_anomalous_params=detect_anomalous_params, **kwargs)

        __init__._deepmim_cpu = True
        cls.__init__ = __init__

    from mmengine.model.wrappers import fully_sharded_distributed as fsdp_module
    fsdp_cls = fsdp_module.MMFullyShardedDataParallel
    if not getattr(fsdp_cls.__init__, '_deepmim_cpu', False):
        upstream_fsdp_init = fsdp_cls.__init__

        def fsdp_init(self, module, *args, **kwargs):
            # FSDPStrategy passes device_id=LOCAL_RANK, i.e. a CUDA device.
            if not torch.cuda.is_available() and isinstance(kwargs.get('device_id'), int):
                kwargs['device_id'] = torch.device('cpu')
            upstream_fsdp_init(self, module, *args, **kwargs)

        fsdp_init._deepmim_cpu = True
        fsdp_cls.__init__ = fsdp_init


_APPLIED = False


def apply() -> None:
    """Make mmengine's checkpoint writing crash-safe and CPU-distributed runs work (idempotent)."""
    global _APPLIED
    if _APPLIED:
        return
    _patch_cpu_distributed()
    from mmengine.runner import runner as _runner_module
    _ckpt_module.save_checkpoint = save_checkpoint
    _runner_module.save_checkpoint = save_checkpoint  # Runner.save_checkpoint's global
    CheckpointHook._save_checkpoint_with_step = _save_checkpoint_with_step
    _APPLIED = True


# --------------------------------------------------------------------------------------------
# RNG state
# --------------------------------------------------------------------------------------------
def _get_rng_state() -> dict:
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state = dict(torch=torch.get_rng_state(),
                 numpy=(name, keys.tolist(), int(pos), int(has_gauss), float(gauss)),
                 python=random.getstate())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state['torch'].cpu() if hasattr(state['torch'], 'cpu')
                        else torch.as_tensor(state['torch'], dtype=torch.uint8))
    name, keys, pos, has_gauss, gauss = state['numpy']
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    py = state['python']
    random.setstate((py[0], tuple(py[1]), py[2]))
    if 'cuda' in state and torch.cuda.is_available():
        cuda = state['cuda']
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])


class _RestoreAfterSkip:
    """Wraps the IterBasedTrainLoop's data iterator: after ``skip`` batches, restore the RNG.

    mmengine's ``IterBasedTrainLoop`` resumes by drawing (and discarding) the batches the
    interrupted run had consumed; that replays the data order and the data-pipeline randomness
    but also consumes RNG the interrupted run did not. Restoring the saved state right after the
    last discarded batch puts the resumed run where the interrupted one stood.
    """

    def __init__(self, loop, iterator, skip: int, state: dict):
        self._loop, self._it, self._left, self._state = loop, iterator, skip, state

    def __next__(self):
        batch = next(self._it)
        self._left -= 1
        if self._left <= 0:
            self._loop.dataloader_iterator = self._it
            _set_rng_state(self._state)
        return batch

    def __iter__(self):
        return self

    def __getattr__(self, name):
        return getattr(self._it, name)


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Saves every rank's RNG states in each checkpoint and restores them on resume.

    Adds over mmengine (which re-seeds on resume but does not save RNG state): the torch, numpy
    and python RNG states (and CUDA's, when used) under ``checkpoint['rng_state']``, one entry
    per rank (gathered only at iterations where the ``CheckpointHook`` saves). On resume:

    - ``IterBasedTrainLoop``: restored after the loop has skipped the already-trained batches,
      so the next batch, its augmentation and its mask are those of the uninterrupted run;
    - ``EpochBasedTrainLoop`` resumed at an epoch end: restored at once. (mmengine restarts an
      epoch from its first batch when resumed from a mid-epoch iteration checkpoint; that case
      is logged as not exactly reproducible.)

    With a different world size than the checkpoint's, nothing is restored (warning).
    """

    # Before CheckpointHook (VERY_LOW), so the states are gathered before it saves.
    priority = 'LOW'

    def __init__(self) -> None:
        self._gathered: Optional[List[dict]] = None
        self._pending: Optional[dict] = None

    def _ckpt_hook(self, runner) -> Optional[CheckpointHook]:
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook):
                return hook
        return None

    def _gather(self, runner) -> None:
        # A collective on every rank, only when a checkpoint is about to be saved.
        world = get_dist_info()[1]
        state = _get_rng_state()
        self._gathered = all_gather_object(state) if world > 1 else [state]

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        hook = self._ckpt_hook(runner)
        if hook is None or hook.by_epoch or get_dist_info()[1] == 1:
            return
        if hook.every_n_train_iters(runner, hook.interval, hook.save_begin) or (
                hook.save_last and hook.is_last_train_iter(runner)):
            self._gather(runner)

    def after_train_epoch(self, runner) -> None:
        hook = self._ckpt_hook(runner)
        if hook is None or not hook.by_epoch or get_dist_info()[1] == 1:
            return
        if hook.every_n_epochs(runner, hook.interval, hook.save_begin) or (
                hook.save_last and hook.is_last_train_epoch(runner)):
            self._gather(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if get_dist_info()[1] == 1:
            states = [_get_rng_state()]
        elif self._gathered is not None:
            states = self._gathered
        else:  # a save this hook did not foresee (e.g. a best-checkpoint save)
            return
        checkpoint['rng_state'] = states
        self._gathered = None

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        states = checkpoint.get('rng_state')
        if not getattr(runner, '_resume', False) or not states:
            return
        rank, world = get_dist_info()
        if len(states) != world:
            print_log(f'RNGStateHook: the checkpoint holds RNG states of {len(states)} ranks, '
                      f'this run has {world}: RNG states are not restored', logger='current',
                      level=30)
            return
        self._pending = states[rank]

    def before_train(self, runner) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop) and loop.iter > 0:
            loop.dataloader_iterator = _RestoreAfterSkip(loop, loop.dataloader_iterator,
                                                         loop.iter, state)
            return
        per_epoch = len(loop.dataloader) if hasattr(loop, 'dataloader') else 0
        if per_epoch and loop.iter != loop.epoch * per_epoch:
            print_log(f'RNGStateHook: resumed at iteration {loop.iter}, inside epoch '
                      f'{loop.epoch + 1}; {type(loop).__name__} restarts that epoch from its '
                      'first batch, so this run will not repeat the interrupted one exactly '
                      '(use IterBasedTrainLoop or epoch checkpoints for exact resume)',
                      logger='current', level=30)
        _set_rng_state(state)


# --------------------------------------------------------------------------------------------
# Non-finite losses
# --------------------------------------------------------------------------------------------
class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; the message names the level(s) and the iteration."""


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stops training at a non-finite loss, naming the level and the iteration.

    Adds over mmengine (which keeps training on NaN): after every ``interval`` iterations the
    ``loss*`` values that ``RuntimeInfoHook`` has already copied to the host for logging are
    checked (no extra device sync). A non-finite value raises :class:`NonFiniteLossError`
    before the ``CheckpointHook`` of that iteration runs, so the last checkpoint on disk is the
    last good one. Under ``AmpOptimWrapper`` with a dynamic loss scale the scaler already skips
    steps whose gradients overflow: with ``amp_skip=True`` such iterations only warn, and the run
    stops after ``max_amp_skips`` consecutive ones.
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

    @staticmethod
    def _dynamic_amp(runner) -> bool:
        wrapper = getattr(runner, 'optim_wrapper', None)
        scaler = getattr(wrapper, 'loss_scaler', None)
        return scaler is not None and getattr(wrapper, '_scale_update_param', 0) is None

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if outputs is None or not self.every_n_train_iters(runner, self.interval):
            return
        values: Dict[str, float] = {}
        hub = runner.message_hub
        for key in outputs:
            if 'loss' not in key:
                continue
            buf = hub.get_scalar(f'train/{key}') if f'train/{key}' in hub.log_scalars else None
            values[key] = float(buf.current()) if buf is not None else float(outputs[key])
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if not bad:
            self._amp_skips = 0
            return
        if len(bad) > 1:  # name the levels, not the total they make non-finite
            bad.pop('loss', None)
        iteration = runner.iter + 1
        levels = [k[len('loss_'):] for k in bad if k.startswith('loss_')]
        msg = (f'non-finite loss at iteration {iteration} (epoch {runner.epoch + 1}): '
               + ', '.join(f'{k}={v}' for k, v in bad.items())
               + (f' (level {", ".join(levels)})' if levels else ''))
        if self.amp_skip and self._dynamic_amp(runner):
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
        msg += ' (lower the learning rate, clip gradients or check the data, then --resume).'
        raise NonFiniteLossError(msg)


# --------------------------------------------------------------------------------------------
# Checkpoint / model match
# --------------------------------------------------------------------------------------------
@HOOKS.register_module()
class CheckpointMatchHook(Hook):
    """A checkpoint of another architecture is an error, not a warning.

    Adds over mmengine's ``load_from`` / ``resume`` (which load with ``strict=False`` and only
    log mismatches): before the weights are copied, the checkpoint's ``state_dict`` is compared
    with the model's. A ``ValueError`` names the file and the keys when

    - a parameter has a different shape (another width, patch size or image size), or
    - the checkpoint shares no encoder (``backbone.``) parameter with the model (a checkpoint of
      another model, or a fine-tune checkpoint that lacks the encoder weights).

    Missing auxiliary keys (e.g. an MAE checkpoint loaded into a DeepMIM model, whose extra
    decoders start from scratch) remain allowed, as in mmengine.
    """

    priority = 'VERY_HIGH'

    def __init__(self, encoder_prefix: str = 'backbone.', max_listed: int = 8) -> None:
        self.encoder_prefix = encoder_prefix
        self.max_listed = max_listed

    @staticmethod
    def _filename(runner) -> str:
        name = getattr(runner, '_load_from', None)
        if not name and getattr(runner, '_resume', False):
            from mmengine.runner.checkpoint import find_latest_checkpoint
            name = find_latest_checkpoint(runner.work_dir)
        return str(name or 'the checkpoint')

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('state_dict', checkpoint)
        if not isinstance(state, dict):
            return
        state = {(k[len('module.'):] if k.startswith('module.') else k): v
                 for k, v in state.items()}
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        own = model.state_dict()
        fname = self._filename(runner)
        n = self.max_listed
        shapes = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
                  for k, v in state.items()
                  if k in own and hasattr(v, 'shape') and tuple(v.shape) != tuple(own[k].shape)]
        if shapes:
            raise ValueError(f'{fname} does not fit {type(model).__name__}: {len(shapes)} '
                             'parameters have other shapes (a checkpoint of another '
                             'architecture, patch size or image size?): '
                             + '; '.join(shapes[:n]) + (' ...' if len(shapes) > n else ''))
        p = self.encoder_prefix
        own_enc = [k for k in own if k.startswith(p)]
        if own_enc and not any(k in state for k in own_enc):
            listed = sorted(state)[:n]
            raise ValueError(f'{fname} holds no encoder weights for {type(model).__name__}: '
                             f'none of its {len(state)} keys matches the model\'s '
                             f'{len(own_enc)} {p}* parameters (e.g. {own_enc[0]}); its keys '
                             f'start {listed}. Expected a pretraining checkpoint with '
                             f'{p}* keys')


apply()
