"""Shared command-line plumbing of the converters: load, report dropped keys, check, save.

The key mappings themselves live in :mod:`deepmim_mm.checkpoint`. What every converter
guarantees (one implementation here, so each tool behaves the same):

- it never overwrites its input: the destination may not be the source file, by path or
  through a symbolic or hard link (``os.path.samefile``), and replaces another existing file
  only with ``--force``; the destination is checked before anything is read;
- a missing or unreadable input is one ``error:`` line naming it;
- it never writes an empty or near-empty result (:data:`SAFETY_RULE`);
- it writes atomically: a temporary file next to the destination, ``fsync``, then
  ``os.replace``, so an interrupted run leaves the old destination (or none), never a truncated
  one. The file's mode honours the umask, as ``torch.save`` does (``0o666 & ~umask``).
"""
import io
import os.path as osp
import pickle
import sys

import torch

from deepmim_mm.checkpoint import (NotACheckpointError, atomic_write_bytes, fold_keys,
                                   read_state_dict)

#: What reading a missing or unreadable input raises (each message names the file).
READ_ERRORS = (FileNotFoundError, NotACheckpointError, pickle.UnpicklingError)

#: The near-empty rule, shown in every converter's ``--help``.
SAFETY_RULE = ('Nothing is written (exit code 1) when DST is SRC (also through a symbolic or '
               'hard link), when DST exists (unless --force), or when the result would hold no '
               "tensor or fewer than half of the input's encoder tensors, --allow-drop or not.")


def add_common_args(parser):
    parser.add_argument('src', help='input checkpoint')
    parser.add_argument('dst', help='output checkpoint (.pth; .safetensors writes safetensors)')
    parser.add_argument('--allow-drop', action='store_true',
                        help='write the output even when some keys could not be mapped (they '
                        'are listed and left out); by default that is an error (exit code 1)')
    parser.add_argument('--force', action='store_true',
                        help='replace DST when it exists (never when it is SRC)')
    parser.epilog = SAFETY_RULE


def refuse_overwriting_input(src, dst):
    """Exit with an error when ``dst`` is ``src`` itself (same path, symlink or hard link)."""
    same = osp.abspath(src) == osp.abspath(dst)
    if not same and osp.exists(src) and osp.exists(dst):
        same = osp.samefile(src, dst)
    if same:
        raise SystemExit(f'error: the output {dst} is the input {src}; a converter never '
                         'overwrites its input: choose another output path')


def check_destination(src, dst, force=False):
    """Exit with an error, before anything is read, when ``dst`` is ``src``, a directory, or
    an existing file without ``force``."""
    refuse_overwriting_input(src, dst)
    if osp.isdir(dst) or dst.endswith(('/', osp.sep)):
        raise SystemExit(f'error: dst: {dst} is a directory; give the output file path, e.g. '
                         f'{osp.join(dst, osp.basename(src))}')
    if osp.exists(dst) and not force:
        raise SystemExit(f'error: dst: {dst} exists; pass --force to replace it (or choose '
                         'another output path)')


def read_or_exit(read, *args):
    """``read(*args)``; a missing or unreadable input (:data:`READ_ERRORS`, whose messages name
    the file) ends the tool with one ``error:`` line."""
    try:
        return read(*args)
    except READ_ERRORS as e:
        raise SystemExit(f'error: {e}') from None


def load(src, dst, force=False):
    """The state dict of ``src``, after :func:`check_destination`, read by
    :func:`read_or_exit`."""
    check_destination(src, dst, force)
    return read_or_exit(read_state_dict, src, 'src')


def report_and_check(dropped, allow_drop, what):
    """Print every dropped key with its reason; unmapped keys are an error unless allowed."""
    by_reason = {}
    for key, reason in dropped.items():
        by_reason.setdefault(reason, []).append(key)
    for reason, keys in by_reason.items():
        print(f'dropped ({reason}, {len(keys)} keys): ' + ', '.join(fold_keys(keys)))
    unmapped = by_reason.get('unmapped', [])
    if unmapped and not allow_drop:
        print(f'error: {len(unmapped)} keys of the {what} checkpoint could not be mapped (see '
              'above); nothing written. Pass --allow-drop to write the output without them.',
              file=sys.stderr)
        sys.exit(1)


def check_not_near_empty(num_out, num_in, src, expected):
    """Refuse a result with no tensor or fewer than half of the input's ``num_in`` encoder
    tensors (:data:`SAFETY_RULE`); ``expected`` says what an encoder key of the input format
    looks like."""
    if num_in == 0:
        raise SystemExit(f'error: {src} has no encoder keys ({expected}): not a checkpoint of '
                         'the format this converter reads; nothing written')
    if num_out == 0 or 2 * num_out < num_in:
        raise SystemExit(f'error: only {num_out} of the {num_in} encoder tensors of {src} were '
                         f'converted (at least half are required; expected {expected}); '
                         'nothing written')


def serialize(obj):
    """``torch.save(obj)`` into bytes."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save(state, dst, meta=None, wrap=True, layout=None):
    """Save ``state`` atomically: as an mmengine checkpoint (``state_dict`` + ``meta``), bare, or
    under ``layout`` (e.g. ``'model'``, the key the official MAE / DeepMIM scripts read)."""
    state = {k: v.contiguous() for k, v in state.items()}
    if dst.endswith('.safetensors'):
        if layout is not None:
            raise SystemExit(f'error: {dst}: safetensors files hold a flat dict of tensors; '
                             f'the {layout!r} layout needs a .pth output')
        from safetensors.torch import save as safetensors_bytes
        data = safetensors_bytes(state, metadata={k: str(v) for k, v in (meta or {}).items()})
    elif layout is not None:
        data = serialize({layout: state})
    elif wrap:
        data = serialize({'state_dict': state, 'meta': dict(meta or {})})
    else:
        data = serialize(state)
    atomic_write_bytes(dst, data)
    print(f'wrote {len(state)} tensors to {dst}')
