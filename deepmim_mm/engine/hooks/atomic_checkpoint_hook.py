"""Crash-safe checkpoints: atomic local writes, the new file before the old one is removed."""
import os
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
    """mmengine's ``LocalBackend`` whose ``put`` / ``put_text`` write a temporary file, ``fsync``
    it and rename it onto the target: a killed write leaves the previous file, never a truncated
    one."""

    def put(self, obj: bytes, filepath: Union[str, os.PathLike]) -> None:
        atomic_write_bytes(str(filepath), obj)

    def put_text(self, obj: str, filepath: Union[str, os.PathLike],
                 encoding: str = 'utf-8') -> None:
        atomic_write_bytes(str(filepath), obj.encode(encoding))


class _RemoveLater:
    """The wrapped file backend, whose ``remove`` / ``rmtree`` wait for :meth:`flush`."""

    def __init__(self, backend):
        self.backend, self.pending = backend, []

    def remove(self, path) -> None:
        self.pending.append((self.backend.remove, path))

    def rmtree(self, path) -> None:  # DeepSpeed checkpoints are folders
        self.pending.append((self.backend.rmtree, path))

    def flush(self) -> None:
        for remove, path in self.pending:
            remove(path)
        self.pending = []

    def __getattr__(self, name):
        return getattr(self.backend, name)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` that never leaves a run without a complete checkpoint.

    Adds over ``CheckpointHook`` (same arguments): local checkpoints are written atomically
    (:class:`AtomicLocalBackend`); old checkpoints are removed only after the new one and the
    ``last_checkpoint`` pointer are written; a killed save's temporary files are removed when
    training starts.
    """

    def before_train(self, runner) -> None:
        local = '://' not in str(self.out_dir) or str(self.out_dir).startswith('file://')
        if local and self.backend_args is None and self.file_client_args is None:
            self.backend_args = dict(backend=ATOMIC_BACKEND)
        super().before_train(runner)
        self.file_backend = _RemoveLater(self.file_backend)
        if is_main_process() and local:
            stale = [p for d in {self.out_dir, runner.work_dir}
                     for p in stale_temporary_files(d)]
            for path in stale:
                os.remove(path)
            if stale:
                print_log(f'AtomicCheckpointHook: removed {len(stale)} temporary file(s) left by '
                          f'an interrupted checkpoint save: {", ".join(stale)}',
                          logger='current', level=30)

    # The removals CheckpointHook asked for (on the main process) once its save has returned.
    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        self.file_backend.flush()

    def after_train_epoch(self, runner) -> None:
        super().after_train_epoch(runner)
        self.file_backend.flush()

    def after_val_epoch(self, runner, metrics) -> None:
        super().after_val_epoch(runner, metrics)
        self.file_backend.flush()
