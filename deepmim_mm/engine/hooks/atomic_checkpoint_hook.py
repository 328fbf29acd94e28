"""Crash-safe checkpoints: atomic local writes, the new file before the old one is removed."""
import os
import os.path as osp
from typing import Union

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from ...checkpoint import atomic_write_bytes, stale_temporary_files

#: Name of the file backend the hook selects for local checkpoint directories.
ATOMIC_BACKEND = 'deepmim_atomic_local'


@register_backend(ATOMIC_BACKEND)
class AtomicLocalBackend(LocalBackend):
    """mmengine's ``LocalBackend`` whose writes are atomic.

    Adds over ``LocalBackend``: ``put`` / ``put_text`` write a temporary file next to the target,
    ``fsync`` it and rename it onto the target (:func:`deepmim_mm.checkpoint.atomic_write`), so a
    process killed mid-write leaves the previous file (or none), never a truncated one; the mode
    honours the umask as ``open()`` does; a full disk is an ``OSError`` naming the file.
    """

    def put(self, obj: bytes, filepath: Union[str, os.PathLike]) -> None:
        atomic_write_bytes(str(filepath), obj)

    def put_text(self, obj: str, filepath: Union[str, os.PathLike],
                 encoding: str = 'utf-8') -> None:
        atomic_write_bytes(str(filepath), obj.encode(encoding))


def _is_local(path: str) -> bool:
    return '://' not in str(path) or str(path).startswith('file://')


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` that never leaves a run without a complete checkpoint.

    Adds over ``CheckpointHook`` (mmengine 0.10.7), for local checkpoint directories:

    - checkpoint files are written atomically through :class:`AtomicLocalBackend` (upstream
      writes in place: a process killed during the write leaves a truncated file);
    - the new checkpoint is written first, then the ``last_checkpoint`` pointer is replaced
      atomically, and only then are checkpoints beyond ``max_keep_ckpts`` removed (upstream
      removes the oldest first and rewrites the pointer in place: a crash in between can leave
      no complete checkpoint, a pointer to a deleted file, or an empty pointer that makes
      ``--resume`` start from scratch);
    - temporary files left by a killed save are removed (and logged) when training starts.

    Remote directories (``backend_args`` / ``file_client_args`` given, or a URI) keep upstream's
    writes; the order of save, pointer and removal is this hook's for every backend. Select it in
    a config with ``default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', ...))``;
    it takes ``CheckpointHook``'s arguments, and an unknown one is an error when it is built
    (upstream passes it on to ``save_checkpoint`` and fails at the first save). (mmengine's
    ``FlexibleRunner`` strategies, e.g. FSDP, write the file themselves without backend
    arguments: there only the order applies.)
    """

    def __init__(self, *args, **kwargs) -> None:
        from ..config_checks import checkpoint_hook_arg_errors
        errors = checkpoint_hook_arg_errors(kwargs)
        if errors:  # upstream keeps them and fails at the first save, after a whole epoch
            raise ValueError(f'AtomicCheckpointHook: unknown argument(s) {", ".join(errors)}')
        super().__init__(*args, **kwargs)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if (self.backend_args is None and self.file_client_args is None
                and _is_local(self.out_dir)):
            self.backend_args = dict(backend=ATOMIC_BACKEND)
            self.file_backend = AtomicLocalBackend()
        if is_main_process() and _is_local(self.out_dir):
            stale = [p for d in {self.out_dir, runner.work_dir}
                     for p in stale_temporary_files(d)]
            for path in stale:
                os.remove(path)
            if stale:
                print_log(f'AtomicCheckpointHook: removed {len(stale)} temporary file(s) left by '
                          f'an interrupted checkpoint save: {", ".join(stale)}',
                          logger='current', level=30)

    def _save_checkpoint_with_step(self, runner, step, meta):
        # mmengine 0.10.7's steps in a crash-safe order: save, replace the pointer, then remove.
        to_remove = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                to_remove.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
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
        atomic_write_bytes(osp.join(runner.work_dir, 'last_checkpoint'),
                           str(self.last_ckpt).encode('utf-8'))
        for old in to_remove:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):
                self.file_backend.rmtree(path)  # DeepSpeed checkpoints are folders
