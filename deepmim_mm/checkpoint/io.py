"""The plugin's one checkpoint reader (weights-only, scoped allowlist) and its atomic writer."""
import contextlib
import errno
import io
import os
import os.path as osp
import pickle
import re
import shutil
import zipfile
from collections import OrderedDict
from typing import Any, List

import numpy as np
import torch

#: ``1``/``true``/``yes``/``on`` reads checkpoints with full pickle.
TRUST_ENV = 'DEEPMIM_TRUST_CHECKPOINTS'
_TMP_SUFFIX = '.tmp'


class NotACheckpointError(ValueError):
    """The file exists but holds no checkpoint; the message names it and what it holds."""


def _restricted_getattr(obj, name):
    """``getattr(HistoryBuffer, 'min')`` etc., as ``HistoryBuffer.__getstate__`` pickles them."""
    from mmengine.logging import HistoryBuffer
    if obj is HistoryBuffer and name in ('current', 'max', 'mean', 'min'):
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'Unsupported global: GLOBAL builtins.getattr with arguments ({obj!r}, {name!r}): only '
        "HistoryBuffer's statistics methods (current, max, mean, min) are allowed in weights-only "
        'loads.')


def checkpoint_safe_globals() -> torch.serialization.safe_globals:
    """``torch.serialization.safe_globals`` with what mmengine checkpoints hold besides tensors
    (``HistoryBuffer``, numpy arrays, scalars and dtypes under numpy 2 and 1 names)."""
    from mmengine.logging import HistoryBuffer
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    dtype_classes = sorted({type(np.dtype(code)) for code in '?bBhHiIlLqQefdgFDG'}, key=repr)
    return torch.serialization.safe_globals([
        HistoryBuffer, (_restricted_getattr, 'builtins.getattr'),
        np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar,
        (multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
        (multiarray.scalar, 'numpy.core.multiarray.scalar'), *dtype_classes
    ])


def _describe(head: bytes, size: int) -> str:
    """What a file that is not a checkpoint looks like, for the error message."""
    text = head.decode('utf-8', errors='replace')
    if '\ufffd' not in text and all(c.isprintable() or c in '\r\n\t' for c in text):
        return f'a text file of {size} bytes starting {text[:40]!r}'
    return f'{size} bytes of an unknown format (starting 0x{head[:8].hex()})'


#: torch.save's legacy (non-zip) format starts with its pickled magic number.
_LEGACY_MAGIC = b'\x8a\x0a' + torch.serialization.MAGIC_NUMBER.to_bytes(10, 'little')


def _field(field_name: str) -> str:
    return f'{field_name}: ' if field_name else ''


def _is_torchscript(path: str) -> bool:
    with zipfile.ZipFile(path) as zf:
        return any(n == 'constants.pkl' or n.endswith('/constants.pkl') for n in zf.namelist())


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_file(path: str, field_name: str = '', map_location: Any = 'cpu') -> Any:
    """The object a ``torch.save``, TorchScript (its ``state_dict()``) or ``.safetensors`` file
    holds, read weights-only inside :func:`checkpoint_safe_globals` (full pickle with
    ``DEEPMIM_TRUST_CHECKPOINTS=1``); URLs go through mmengine's ``CheckpointLoader``.

    Raises:
        FileNotFoundError: no such file (``field_name`` names the config field or argument).
        NotACheckpointError: an empty file, text, or bytes no reader understands.
        pickle.UnpicklingError: a torch file holding an object outside the allowlist; the
            message names it and how to allow it.
    """
    where = _field(field_name)
    if not isinstance(path, (str, os.PathLike)) or not str(path):
        raise ValueError(f'{where}expected the path of a checkpoint file, got {path!r}')
    path = str(path)
    if '://' in path and not path.startswith('file://'):
        from mmengine.runner.checkpoint import CheckpointLoader
        with checkpoint_safe_globals():
            return CheckpointLoader.load_checkpoint(path, map_location=map_location)
    path = path[len('file://'):] if path.startswith('file://') else path
    if not osp.isfile(path):
        raise FileNotFoundError(f'{where}checkpoint not found: {path}')
    with open(path, 'rb') as f:
        head = f.read(64)
    if not head:
        raise NotACheckpointError(f'{where}not a checkpoint: {path} (an empty file, 0 bytes)')
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file as load_safetensors
        try:
            return load_safetensors(path, device='cpu')
        except Exception as e:  # noqa: BLE001  (safetensors raises its own error types)
            raise NotACheckpointError(f'{where}not a checkpoint: {path} (not a readable '
                                      f'safetensors file: {_first_line(e)})') from e
    is_zip = head.startswith(b'PK\x03\x04')
    if not is_zip and not head.startswith(b'\x80'):  # torch files are zip archives or pickles
        raise NotACheckpointError(f'{where}not a checkpoint: {path} (found '
                                  f'{_describe(head, osp.getsize(path))})')
    if not is_zip and _LEGACY_MAGIC not in head[:32]:
        raise NotACheckpointError(f'{where}not a checkpoint: {path} (a Python pickle, not a '
                                  'torch.save file; it is not unpickled)')
    if is_zip and zipfile.is_zipfile(path) and _is_torchscript(path):
        import warnings
        with warnings.catch_warnings():  # torch.jit is deprecated; OpenAI's files are not
            warnings.simplefilter('ignore', FutureWarning)
            return torch.jit.load(path, map_location='cpu').state_dict()
    trusted = os.environ.get(TRUST_ENV, '').strip().lower() in ('1', 'true', 'yes', 'on')
    try:
        with checkpoint_safe_globals():
            return torch.load(path, map_location=map_location, weights_only=not trusted)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, KeyError, TypeError,
            AttributeError, zipfile.BadZipFile) as e:
        if isinstance(e, pickle.UnpicklingError) and not trusted:
            raise pickle.UnpicklingError(
                f'{where}checkpoint {path} holds an object torch.load(weights_only=True) refuses '
                f'({_first_line(e.__context__ or e)}); allowed are tensors and what mmengine '
                f'checkpoints hold. If you trust this file, set {TRUST_ENV}=1 to read it with full '
                'pickle (which can run arbitrary code).') from e
        raise NotACheckpointError(f'{where}not a checkpoint: {path} (a '
                                  f'{"zip archive" if is_zip else "pickle"} torch cannot read: '
                                  f'{type(e).__name__}: {_first_line(e)})') from e


def read_checkpoint(path: str, field_name: str = '', map_location: Any = 'cpu') -> dict:
    """:func:`load_file`, insisting on a dict (an mmengine checkpoint or a state dict)."""
    obj = load_file(path, field_name, map_location)
    if not isinstance(obj, dict):
        raise NotACheckpointError(f'{_field(field_name)}not a checkpoint: {path} (it holds a '
                                  f'{type(obj).__name__}, not a dict of tensors)')
    return obj


def state_dict_of(ckpt: dict) -> 'OrderedDict[str, torch.Tensor]':
    """The tensors of a checkpoint dict: its ``state_dict`` (mmengine), ``model`` (official
    MAE / DeepMIM / DeiT), ``module``, or the dict itself; a ``module.`` prefix stripped."""
    for key in ('state_dict', 'model', 'module'):
        if isinstance(ckpt.get(key), dict):
            ckpt = ckpt[key]
            break
    return OrderedDict((k[len('module.'):] if k.startswith('module.') else k, v)
                       for k, v in ckpt.items() if isinstance(v, torch.Tensor))


def read_state_dict(path: str, field_name: str = '') -> 'OrderedDict[str, torch.Tensor]':
    """:func:`state_dict_of` a checkpoint file; an error naming the file when it has no tensors."""
    ckpt = read_checkpoint(path, field_name)
    state = state_dict_of(ckpt)
    if not state:
        raise NotACheckpointError(f'{_field(field_name)}not a checkpoint: {path} (a dict with '
                                  f'no tensors; its keys: {sorted(map(str, ckpt))[:10]})')
    return state


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it onto ``path``: a
    killed process never leaves a truncated file, only a ``<name>.<random>.tmp`` one (see
    :func:`stale_temporary_files`)."""
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = f'{osp.abspath(path)}.{os.urandom(4).hex()}{_TMP_SUFFIX}'
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 & ~umask, as open()
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            free = shutil.disk_usage(directory).free / 2**20
            raise OSError(errno.ENOSPC, f'cannot write {path}: no space left on device ({free:.0f} '
                          'MiB free); the previous file, if any, is intact') from error
        raise
    with contextlib.suppress(OSError):  # not every file system syncs directories
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def torch_bytes(obj: Any) -> bytes:
    """What ``torch.save(obj, f)`` writes."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save(obj, path)`` through :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, torch_bytes(obj))


def stale_temporary_files(directory: str) -> List[str]:
    """``*.tmp`` files :func:`atomic_write_bytes` left in ``directory`` by a killed process."""
    if not osp.isdir(directory):
        return []
    pattern = re.compile(r'.+\.[a-z0-9_]{8}' + re.escape(_TMP_SUFFIX))  # mkstemp's names too
    return sorted(osp.join(directory, n) for n in os.listdir(directory)
                  if pattern.fullmatch(n) and osp.isfile(osp.join(directory, n)))
